"""Class activation maps to masks: SP-CAM, the CAM baseline, and the shared thresholding rule.

Rule (SPN paper): each class map considered is thresholded at ``frac`` (50%) of its own maximum;
a pixel takes the passing class with the highest *normalised* score (score / that class's max,
so classes with larger raw activations do not win by scale alone); background where no class
passes. A class whose map has no positive value marks no pixels.

Without a background class (a project made with ``init --no-background``, e.g. MSRC-21, where
every pixel belongs to a class) nothing is thresholded: every pixel takes the considered class
with the highest normalised score (see :func:`threshold_maps`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["threshold_maps", "uncertain_pixels", "paint_superpixels", "upsample_cam", "METHODS"]

METHODS = ("sp-cam", "cam")


def threshold_maps(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5, *,
                   background: bool = True) -> np.ndarray:
    """maps (C, H, W) scores, classes to consider (0-based) -> (H, W) uint8: 0 bg, c+1 class c.

    ``background=False``: every pixel takes the considered class with the highest normalised
    score (``frac`` is unused). Classes whose map has no positive value cannot be normalised and
    lose to any class that has one; when none has, the raw score decides. One considered class
    labels every pixel; none leaves every pixel 0 (no class is possible). Ties go to the lower
    class index.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if not background:
        cs, score, _ = _normalised(maps, classes)
        lut = np.array([0] + [c + 1 for c in cs], np.uint8)
        if len(cs) < 2:
            return np.full(maps.shape[1:], lut[-1], np.uint8)
        return lut[1 + score.argmax(0)]
    labels = np.zeros(maps.shape[1:], np.uint8)
    best = np.zeros(maps.shape[1:], np.float32)
    for c in sorted(set(int(c) for c in classes)):
        peak = float(maps[c].max())
        if peak <= 0:
            continue
        norm = maps[c] / peak  # (H, W), 1 at the peak
        win = (norm >= frac) & (norm > best)
        labels[win] = c + 1
        best = np.where(win, norm, best)
    return labels


def _normalised(maps: np.ndarray, classes: Iterable[int]) -> tuple[list[int], np.ndarray, bool]:
    """The no-background rule's scores: the sorted considered classes, their (K, H, W) scores —
    map / peak for classes with a positive peak, -inf for the others — and True; or the raw maps
    and False when no considered class has a positive peak."""
    cs = sorted(set(int(c) for c in classes))
    sub = maps[cs]  # (K, H, W)
    peaks = sub.reshape(len(cs), -1).max(1) if cs else np.zeros(0, np.float32)  # (K,)
    pos = peaks > 0
    if not pos.any():
        return cs, sub, False
    scale = np.where(pos, peaks, 1.0).astype(np.float32)[:, None, None]
    return cs, np.where(pos[:, None, None], sub / scale, -np.inf), True


def uncertain_pixels(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5, band: float = 0.2, *,
                     background: bool = True) -> np.ndarray:
    """(H, W) bool: pixels whose label under :func:`threshold_maps` is a near coin flip — their best
    normalised score (0 where no class map is positive) lies less than ``band`` from ``frac``.

    ``background=False``: a pixel is unsure when its best and second-best normalised scores (see
    :func:`threshold_maps`) differ by less than ``band``; with fewer than two considered classes
    never; when no considered class has a positive map (the label is a guess), always.

    Why: a refinement round trained on pseudo-labels learns their errors too; most errors sit
    where the evidence is close to the threshold, so leaving those pixels out of the loss (ignore)
    trains on the labels the evidence is sure of.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if not background:
        cs, score, normalised = _normalised(maps, classes)
        if len(cs) < 2:
            return np.zeros(maps.shape[1:], bool)
        if not normalised:
            return np.ones(maps.shape[1:], bool)  # no positive evidence: the label is a guess
        top2 = -np.partition(-score, 1, axis=0)[:2]  # (2, H, W): best (finite), second best
        return (top2[0] - top2[1]) < band  # a -inf second best (no positive peak) is never close
    best = np.zeros(maps.shape[1:], np.float32)
    for c in set(int(c) for c in classes):
        peak = float(maps[c].max())
        if peak > 0:
            best = np.maximum(best, maps[c] / peak)
    return np.abs(best - frac) < band


def paint_superpixels(scores: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """SP-CAM map: scores (N, C) of each superpixel, sp (H, W) labels -> (C, H, W)."""
    return np.ascontiguousarray(np.asarray(scores, np.float32)[sp].transpose(2, 0, 1))


def upsample_cam(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """CAM (C, h, w) over the square canvas of side max(H, W) -> (C, H, W), bilinear, cropped."""
    side = max(height, width)
    t = torch.from_numpy(np.asarray(cam, np.float32))[None]
    up = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0]
    return up[:, :height, :width].numpy()
