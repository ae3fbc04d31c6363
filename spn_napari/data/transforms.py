"""Geometry shared by training and inference: fit an image into a square canvas of a given side.

The image is resized (aspect kept) so its longer side equals ``side`` and placed at the top-left
of a ``side × side`` canvas; the rest is padding (zero after normalisation, superpixel label -1,
left out of every pooling). This is the paper's "pad to square, resize to a random side".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "fit_to_canvas", "fit_mask_to_canvas", "superpixel_canvas", "normalise", "auto_scales", "compact_labels"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_SCALES = (250, 300, 350, 400, 450, 500)


def normalise(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32, ImageNet mean/std (what VGG weights expect)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def compact_labels(sp: Tensor) -> tuple[Tensor, int]:
    """Relabel non-negative labels to 0..N-1 (resizing can drop tiny superpixels); -1 stays."""
    valid = sp >= 0
    if not bool(valid.any()):
        return torch.full_like(sp, -1), 0
    present = torch.zeros(int(sp.max()) + 1, dtype=torch.bool)
    present[sp[valid]] = True  # a table over the labels instead of torch.unique's sort (O(n))
    remap = torch.cumsum(present, 0) - 1  # old label -> rank among the present ones
    return torch.where(valid, remap[sp.clamp(min=0)], -1), int(present.sum())


def _resize_nearest(a: np.ndarray, size: tuple[int, int], flip: bool) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a)).long()
    if flip:
        t = t.flip(-1)
    return F.interpolate(t[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()


def _fitted_size(h: int, w: int, side: int) -> tuple[int, int]:
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_mask_to_canvas(mask: np.ndarray, side: int, *, flip: bool = False, fill: int = 255) -> Tensor:
    """mask (H, W) class values -> (side, side) int64, placed as fit_to_canvas places its image;
    the padding gets ``fill``."""
    nh, nw = _fitted_size(*mask.shape[:2], side)
    out = torch.full((side, side), fill, dtype=torch.long)
    out[:nh, :nw] = _resize_nearest(mask, (nh, nw), flip)
    return out


def fit_to_canvas(image: np.ndarray, sp: np.ndarray | None, side: int, *, flip: bool = False
                  ) -> tuple[Tensor, Tensor | None, int]:
    """image (H, W, 3) uint8, sp (H, W) int -> x (3, side, side), sp (side, side) int64, N."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    nh, nw = _fitted_size(h, w, side)
    x = normalise(image)
    if flip:
        x = x.flip(-1)
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)[0]
    canvas = x.new_zeros(3, side, side)
    canvas[:, :nh, :nw] = x
    if sp is None:
        return canvas, None, 0
    return (canvas, *superpixel_canvas(sp, side, flip=flip))


def superpixel_canvas(sp: np.ndarray, side: int, *, flip: bool = False) -> tuple[Tensor, int]:
    """sp (H, W) int -> (side, side) int64 labels 0..N-1 placed as fit_to_canvas places the image
    (-1 padding), and N (resizing can drop tiny superpixels)."""
    nh, nw = _fitted_size(*sp.shape[:2], side)
    sp_canvas = torch.full((side, side), -1, dtype=torch.long)
    sp_canvas[:nh, :nw] = _resize_nearest(sp, (nh, nw), flip)
    return compact_labels(sp_canvas)


def auto_scales(sides: list[int], *, base: tuple[int, ...] = PAPER_SCALES, multiple: int = 16) -> tuple[int, ...]:
    """The paper's sides, scaled down for small images so the median image maps to the middle.

    VOC-sized images (longer side ~500) keep 250..500; 160-pixel images get roughly 110..225.
    """
    median = float(np.median(sides)) if sides else 500.0
    factor = min(1.0, median / (0.5 * (base[0] + base[-1])))
    if factor == 1.0:
        return tuple(base)
    out = sorted({max(2 * multiple, int(round(s * factor / multiple)) * multiple) for s in base})
    return tuple(out)
