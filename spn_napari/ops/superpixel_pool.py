"""Superpixel pooling: the mean feature of every superpixel, for a batch of images at once.

The SPN layer (Kwak et al., AAAI 2017). Features may be at a lower resolution than the
superpixel map; the result then equals bilinearly upsampling the features to the map
(``F.interpolate(..., mode="bilinear", align_corners=False)``) and averaging per superpixel,
without ever materialising the upsampled (B, K, H, W) tensor: each pixel spreads its four
bilinear weights over the coarse grid, giving a small (B, N_max, h*w) pooling matrix.

Images of a batch may have different superpixel counts ``n_sp``; rows are indexed by the flat
``b * N_max + label``, so there is no Python loop over images or superpixels, and a label
absent from an image gives a zero row instead of a division by zero. Everything is built from
differentiable torch ops, so autograd, CPU and CUDA come for free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["superpixel_pool", "segment_mean", "valid_rows", "label_canvas"]


def _as_counts(n_sp: Sequence[int] | Tensor, device: torch.device) -> Tensor:
    return torch.as_tensor(n_sp, dtype=torch.long, device=device).reshape(-1)


def valid_rows(n_sp: Sequence[int] | Tensor, n_max: int, device: torch.device) -> Tensor:
    """Bool mask (B * n_max,) of the padded rows that are real superpixels."""
    counts = _as_counts(n_sp, device)
    return (torch.arange(n_max, device=device)[None, :] < counts[:, None]).reshape(-1)


def _bilinear_taps(out_size: int, in_size: int, device: torch.device, dtype: torch.dtype):
    """Source indices (2, out) and weights (2, out) of 1-D bilinear resizing, align_corners=False."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    w1 = (src - i0.to(torch.float64)).to(dtype)
    return torch.stack([i0, i1]), torch.stack([1 - w1, w1])


def superpixel_pool(feat: Tensor, sp: Tensor, n_sp: Sequence[int] | Tensor) -> Tensor:
    """Mean of ``feat`` over each superpixel of each image.

    Args:
        feat: (B, K, h, w) features, at the superpixel map's resolution or lower.
        sp: (B, H, W) int superpixel labels, image b using 0..n_sp[b]-1 (H >= h, W >= w);
            negative labels (padding) are left out of every mean.
        n_sp: B superpixel counts.
    Returns:
        (sum(n_sp), K): image 0's superpixels in label order, then image 1's, ...
        A label that covers no pixel gets a zero row. Half-precision input is pooled (and
        returned) in float32.
    """
    if feat.dim() != 4 or sp.dim() != 3 or feat.shape[0] != sp.shape[0]:
        raise ValueError(f"superpixel_pool: feat (B,K,h,w) and sp (B,H,W) expected, got "
                         f"{tuple(feat.shape)} and {tuple(sp.shape)}")
    b, k, h, w = feat.shape
    _, hh, ww = sp.shape
    if h > hh or w > ww:
        raise ValueError(f"superpixel_pool: features {h}x{w} larger than superpixel map {hh}x{ww}")
    counts_sp = _as_counts(n_sp, feat.device)
    n_max = int(counts_sp.max()) if counts_sp.numel() else 0
    sp = sp.long()
    if bool((sp.amax(dim=(1, 2)) >= counts_sp).any()):
        raise ValueError(f"superpixel_pool: a label is >= its image's count n_sp={counts_sp.tolist()}")
    if feat.dtype in (torch.float16, torch.bfloat16):
        feat = feat.float()  # sums and pixel counts overflow or round in half precision
    dump = b * n_max  # one extra row collects ignored (negative-label) pixels
    rows = torch.arange(b, device=feat.device)[:, None, None] * n_max + sp  # (B, H, W)
    rows = torch.where(sp < 0, dump, rows).reshape(-1)
    pix_count = torch.zeros(dump + 1, device=feat.device, dtype=feat.dtype)
    pix_count.index_add_(0, rows, torch.ones_like(rows, dtype=feat.dtype))
    pix_count = pix_count[:dump]
    if (h, w) == (hh, ww):
        flat = feat.permute(0, 2, 3, 1).reshape(-1, k)  # (B*H*W, K)
        sums = feat.new_zeros(dump + 1, k).index_add(0, rows, flat)[:dump]  # (B*N_max, K)
    else:
        # Pooling matrix A (B*N_max, h*w): the summed bilinear weight of each coarse cell
        # over the superpixel's pixels; separable taps keep this at 4 scatters of B*H*W.
        ry, wy = _bilinear_taps(hh, h, feat.device, feat.dtype)  # (2, H)
        rx, wx = _bilinear_taps(ww, w, feat.device, feat.dtype)  # (2, W)
        a = feat.new_zeros((dump + 1) * h * w)
        base = rows.view(b, hh, ww) * (h * w)
        for ty in range(2):
            for tx in range(2):
                cell = ry[ty][:, None] * w + rx[tx][None, :]  # (H, W)
                wt = (wy[ty][:, None] * wx[tx][None, :]).expand(b, hh, ww)  # (B, H, W)
                a.index_add_(0, (base + cell).reshape(-1), wt.reshape(-1))
        a = a[: dump * h * w].view(b, n_max, h * w)
        sums = torch.bmm(a, feat.reshape(b, k, h * w).transpose(1, 2)).reshape(b * n_max, k)
    mean = sums / pix_count.clamp(min=1)[:, None]
    return mean[valid_rows(counts_sp, n_max, feat.device)]


def segment_mean(x: Tensor, n_sp: Sequence[int] | Tensor) -> Tensor:
    """Mean of consecutive row segments: (sum(n_sp), K) -> (B, K); the top branch's pooling."""
    counts = _as_counts(n_sp, x.device)
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=x.device), counts)
    out = x.new_zeros(counts.numel(), x.shape[1]).index_add(0, seg, x)
    return out / counts.clamp(min=1).to(x.dtype)[:, None]


def label_canvas(sp: np.ndarray, device: torch.device) -> tuple[torch.Tensor, int]:
    """sp (H, W) labels 0..N-1 -> (1, L, L) int64 on ``device``, L = max(H, W), -1 as padding; N.

    The square canvas the network's features cover at full resolution (image at the top-left).
    """
    h, w = sp.shape
    canvas = torch.full((1, max(h, w), max(h, w)), -1, dtype=torch.long)
    canvas[0, :h, :w] = torch.from_numpy(sp.astype(np.int64))
    return canvas.to(device), int(sp.max()) + 1
