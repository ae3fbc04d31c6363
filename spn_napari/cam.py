"""Class activation maps to masks: SP-CAM, the CAM baseline, and the shared thresholding rule.

Rule (SPN paper): each class map considered is thresholded at ``frac`` (50%) of its own maximum;
a pixel takes the passing class with the highest *normalised* score (score / that class's max,
so classes with larger raw activations do not win by scale alone); background where no class
passes. A class whose map has no positive value marks no pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["threshold_maps", "uncertain_pixels", "paint_superpixels", "upsample_cam", "METHODS"]

METHODS = ("sp-cam", "cam")


def threshold_maps(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5) -> np.ndarray:
    """maps (C, H, W) scores, classes to consider (0-based) -> (H, W) uint8: 0 bg, c+1 class c."""
    maps = np.asarray(maps, dtype=np.float32)
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


def uncertain_pixels(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5, band: float = 0.2) -> np.ndarray:
    """(H, W) bool: pixels whose label under :func:`threshold_maps` is a near coin flip — their best
    normalised score (0 where no class map is positive) lies less than ``band`` from ``frac``.

    Why: a refinement round trained on pseudo-labels learns their errors too; most errors sit
    where the evidence is close to the threshold, so leaving those pixels out of the loss (ignore)
    trains on the labels the evidence is sure of.
    """
    maps = np.asarray(maps, dtype=np.float32)
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
