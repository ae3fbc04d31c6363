"""Class colours: one "#rrggbb" colour per class, distinct for any number of classes.

A project stores its colours at ``init`` (see :mod:`spn_napari.project.store`); exports and the viewer
use them, so a class keeps its colour everywhere.
"""

from __future__ import annotations

import colorsys

import numpy as np

__all__ = ["PALETTE", "class_colors"]

# Distinct, colour-blind-friendly colours of the first 20 classes (background is transparent in
# napari); class_colors() extends them for larger class lists.
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
           "#ffd8b1", "#000075", "#808080", "#ffe119"]
_GOLDEN = 0.381966  # 1 - 1/phi: hue step that keeps successive hues far apart on the circle
_LIGHT_SAT = ((0.50, 0.85), (0.70, 0.75), (0.35, 0.80), (0.60, 0.55), (0.42, 0.60))  # HLS, cycled
_CANDIDATES = 2048


def _candidate_colors() -> np.ndarray:
    """(_CANDIDATES, 3) float64 RGB 0..255: golden-angle hue steps over a cycle of lightness and
    saturation levels (lightness 0.35..0.7: never near black or white)."""
    rgb = [colorsys.hls_to_rgb((0.05 + k * _GOLDEN) % 1.0, *_LIGHT_SAT[k % len(_LIGHT_SAT)])
           for k in range(_CANDIDATES)]
    return np.round(np.array(rgb) * 255)


def class_colors(n: int) -> list[str]:
    """n different "#rrggbb" colours, one per class: PALETTE for the first 20 (so projects and
    their exports keep their colours), then, one at a time, the candidate colour (see
    :func:`_candidate_colors`) farthest in RGB from every colour given so far.

    Why: PALETTE repeats from class 21 on, which makes classes of MSRC-21 or COCO (80)
    indistinguishable in the viewer and in exported masks.
    """
    out = PALETTE[:n]
    if len(out) < n:
        cand = _candidate_colors()  # (M, 3)
        given = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)] for c in out], np.float64)  # (20, 3)
        dist = np.sqrt(((cand[:, None] - given[None]) ** 2).sum(-1)).min(1)  # (M,) to the nearest given
        while len(out) < n:
            j = int(dist.argmax())
            if dist[j] == 0:  # pragma: no cover - more classes than distinct candidates
                raise ValueError(f"class_colors: no more than {len(out)} distinct colours")
            out.append("#" + "".join(f"{int(v):02x}" for v in cand[j]))
            dist = np.minimum(dist, np.sqrt(((cand - cand[j]) ** 2).sum(-1)))
    return list(out)
