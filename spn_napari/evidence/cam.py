"""Class activation maps to masks: SP-CAM, the CAM baseline, and the shared thresholding rule.

Rule (SPN paper): each class map considered is thresholded at ``frac`` (50%) of its own maximum;
a pixel takes the passing class with the highest *normalised* score (score / that class's max,
so classes with larger raw activations do not win by scale alone); background where no class
passes. A class whose map has no positive value marks no pixels.

Without a background class (a project made with ``init --no-background``, e.g. MSRC-21, where
every pixel belongs to a class) nothing is thresholded: every pixel takes the considered class
with the highest normalised score (see :func:`threshold_maps`). How the scores are normalised
first is a choice (``normalise``), measured on real photos (docs/real-photos.md):

- ``"max"``: each class's map divided by its own peak over the image (the rule above);
- ``"shared"``: every class divided by one peak, the highest over the considered classes, so the
  raw scores decide (the choice is the raw argmax) while the scores stay fractions, for the
  uncertainty band;
- ``"none"``: the maps as they are (already normalised: the ``fused`` evidence of
  :func:`fuse_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["threshold_maps", "uncertain_pixels", "paint_superpixels", "upsample_cam", "tag_scores", "fuse_scores",
           "METHODS", "NORMALISE", "DEFAULT_NORMALISE"]

METHODS = ("fused", "sp-cam", "cam")
"""Pseudo-label methods: ``fused`` (SP-CAM and CAM evidence averaged, each normalised by its own
rule), ``sp-cam`` (the paper's), ``cam`` (the baseline). The first is the default
(benchmarks/real_photos.py: the cross-validated table in docs/real-photos.md)."""

NORMALISE = ("max", "shared", "none")
DEFAULT_NORMALISE = {"sp-cam": "max", "cam": "shared"}
"""Each method's normalisation before the per-pixel choice, chosen on held-out folds of msrc-dev
(docs/real-photos.md). Projects made before the choice existed used "max" for both."""


def threshold_maps(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5, *,
                   background: bool = True, normalise: str = "max") -> np.ndarray:
    """maps (C, H, W) scores, classes to consider (0-based) -> (H, W) uint8: 0 bg, c+1 class c.

    ``background=False``: every pixel takes the considered class with the highest score after
    ``normalise`` (see :func:`tag_scores`; ``frac`` is unused). With "max", classes whose map has
    no positive value cannot be normalised and lose to any class that has one; when none has,
    the raw score decides. One considered class labels every pixel; none leaves every pixel 0
    (no class is possible). Ties go to the lower class index. With a background class the
    paper's rule holds whatever ``normalise`` says.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if not background:
        cs, score, _ = tag_scores(maps, classes, normalise)
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


def tag_scores(maps: np.ndarray, classes: Iterable[int], normalise: str = "max") -> tuple[list[int], np.ndarray, bool]:
    """The no-background rule's scores: the sorted considered classes, their (K, H, W) scores and
    whether they are normalised (fractions of a peak, the scale of the uncertainty band).

    "max": map / its own peak for classes with a positive peak, -inf for the others. "shared":
    every map / the highest peak of the considered classes. Either gives the raw maps and False
    when no considered class has a positive peak. "none": the maps as they are, and True.
    """
    if normalise not in NORMALISE:
        raise ValueError(f"normalise={normalise!r}: use one of {', '.join(NORMALISE)}")
    maps = np.asarray(maps, dtype=np.float32)
    cs = sorted(set(int(c) for c in classes))
    sub = maps[cs]  # (K, H, W)
    if normalise == "none":
        return cs, sub, True
    peaks = sub.reshape(len(cs), -1).max(1) if cs else np.zeros(0, np.float32)  # (K,)
    pos = peaks > 0
    if not pos.any():
        return cs, sub, False
    if normalise == "shared":
        return cs, sub / peaks.max(), True
    scale = np.where(pos, peaks, 1.0).astype(np.float32)[:, None, None]
    return cs, np.where(pos[:, None, None], sub / scale, -np.inf), True


def fuse_scores(sp_maps: np.ndarray, cam_maps: np.ndarray, classes: Iterable[int], *,
                sp_normalise: str = DEFAULT_NORMALISE["sp-cam"],
                cam_normalise: str = DEFAULT_NORMALISE["cam"]) -> np.ndarray:
    """The ``fused`` evidence: (C, H, W) with the considered classes' rows the mean of SP-CAM's and
    CAM's normalised scores (:func:`tag_scores`), the other rows -inf; label it with
    ``normalise="none"``. A class that one method cannot normalise (no positive peak) takes the
    other's score alone; one that neither can is -inf (it loses to any class with evidence).

    Why: the two branches err in different places — SP-CAM follows the superpixels, CAM the
    classifier on z — and their average beats either on held-out photos (docs/real-photos.md)."""
    sp_maps, cam_maps = np.asarray(sp_maps, np.float32), np.asarray(cam_maps, np.float32)
    out = np.full(sp_maps.shape, -np.inf, np.float32)
    cs, a, ok_a = tag_scores(sp_maps, classes, sp_normalise)
    _, b, ok_b = tag_scores(cam_maps, classes, cam_normalise)
    if not cs:
        return out
    if not (ok_a or ok_b):  # no positive evidence anywhere: the raw sum decides
        out[cs] = a + b
        return out
    a = a if ok_a else np.full_like(a, -np.inf)
    b = b if ok_b else np.full_like(b, -np.inf)
    both = np.isfinite(a) & np.isfinite(b)
    out[cs] = np.where(both, 0.5 * (a + b), np.maximum(a, b))
    return out


def uncertain_pixels(maps: np.ndarray, classes: Iterable[int], frac: float = 0.5, band: float = 0.2, *,
                     background: bool = True, normalise: str = "max") -> np.ndarray:
    """(H, W) bool: pixels whose label under :func:`threshold_maps` is a near coin flip — their best
    normalised score (0 where no class map is positive) lies less than ``band`` from ``frac``.

    ``background=False``: a pixel is unsure when its best and second-best scores after
    ``normalise`` (see :func:`threshold_maps`) differ by less than ``band``; with fewer than two considered classes
    never; when no considered class has a positive map (the label is a guess), always.

    Why: a refinement round trained on pseudo-labels learns their errors too; most errors sit
    where the evidence is close to the threshold, so leaving those pixels out of the loss (ignore)
    trains on the labels the evidence is sure of.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if not background:
        cs, score, normalised = tag_scores(maps, classes, normalise)
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


def _bilinear_weights(n_in: int, n_out: int, keep: int) -> np.ndarray:
    """(keep, n_in) float32: row j weighs the inputs of output j of a bilinear resize from n_in to
    n_out samples (half-pixel centres, as torch's ``interpolate(..., align_corners=False)``: a
    source position below 0 is clamped to 0), for the first ``keep`` outputs."""
    src = np.maximum((np.arange(keep) + 0.5) * (n_in / n_out) - 0.5, 0.0)  # (keep,)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    m = np.zeros((keep, n_in), np.float32)
    np.add.at(m, (np.arange(keep), i0), 1.0 - w1)
    np.add.at(m, (np.arange(keep), i1), w1)
    return m


def upsample_cam(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """CAM (C, h, w) over the square canvas of side max(H, W) -> (C, H, W), bilinear, cropped.

    Two small matrix products (rows, then columns) in numpy: the viewer's process reads the CAM
    layer without importing torch."""
    cam = np.asarray(cam, np.float32)
    side = max(height, width)
    rows = _bilinear_weights(cam.shape[1], side, height)  # (H, h)
    cols = _bilinear_weights(cam.shape[2], side, width)  # (W, w)
    return np.ascontiguousarray(np.einsum("yh,chw,xw->cyx", rows, cam, cols, optimize=True), np.float32)
