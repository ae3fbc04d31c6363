"""superpixel_pool / segment_mean against float64 references.

References: a per-superpixel numpy loop (mask and mean) over the features, bilinearly upsampled
with ``F.interpolate(..., align_corners=False)`` when they are coarser than the superpixel map;
and a dense one-hot autograd implementation for gradients on shapes too large for gradcheck.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spn_napari.ops.superpixel_pool import segment_mean, superpixel_pool


def pool_loop(feat: np.ndarray, sp: np.ndarray, n: int) -> np.ndarray:
    """float64 loop: feat (K, H, W), sp (H, W) -> (n, K); absent labels give zero rows."""
    out = np.zeros((n, feat.shape[0]))
    for i in range(n):
        mask = sp == i
        if mask.any():
            out[i] = feat[:, mask].astype(np.float64).mean(axis=1)
    return out


def upsample(feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(feat.shape[-2:]) == tuple(size):
        return feat
    return F.interpolate(feat, size=size, mode="bilinear", align_corners=False)


def reference(feat: torch.Tensor, sp: torch.Tensor, n_sp) -> np.ndarray:
    """(B,K,h,w), (B,H,W), B counts -> (sum n_sp, K) float64, via the numpy loop."""
    up = upsample(feat.detach().double(), tuple(sp.shape[-2:])).numpy()
    return np.concatenate([pool_loop(up[b], sp[b].numpy(), int(n)) for b, n in enumerate(n_sp)])


def dense_reference(feat: torch.Tensor, sp: torch.Tensor, n_sp) -> torch.Tensor:
    """Differentiable one-hot version (a second implementation, for gradients)."""
    up = upsample(feat, tuple(sp.shape[-2:]))
    rows = []
    for b, n in enumerate(n_sp):
        lab = sp[b].reshape(-1).long()
        onehot = (lab[:, None] == torch.arange(int(n))[None, :]).to(feat.dtype)  # (HW, n)
        sums = onehot.T @ up[b].reshape(up.shape[1], -1).T  # (n, K)
        rows.append(sums / onehot.sum(0).clamp(min=1)[:, None])
    return torch.cat(rows)


def random_case(seed: int, b: int, k: int, h: int, w: int, hh: int, ww: int,
                dtype=torch.float64, neg_frac: float = 0.1):
    """Random features and superpixel maps; some labels absent, some pixels ignored (-1)."""
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(b, k, h, w, dtype=dtype, generator=g)
    n_sp = [int(torch.randint(1, 12, (1,), generator=g)) for _ in range(b)]
    maps = []
    for n in n_sp:
        lab = torch.randint(0, n, (hh, ww), generator=g)
        lab[torch.rand(hh, ww, generator=g) < neg_frac] = -1
        maps.append(lab)
    return feat, torch.stack(maps), n_sp


# (B, K, h, w, H, W): same resolution, non-square, odd, non-integer ratios, one axis only.
SHAPES = [
    (2, 3, 9, 13, 9, 13),
    (3, 4, 7, 5, 23, 19),
    (2, 5, 4, 6, 17, 11),
    (1, 2, 16, 16, 64, 48),
    (2, 3, 1, 1, 5, 7),
    (2, 3, 5, 3, 5, 10),
    (4, 1, 11, 2, 12, 31),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}K{}_{}x{}to{}x{}".format(*s))
def test_matches_loop_random_shapes(seed, shape):
    feat, sp, n_sp = random_case(seed, *shape)
    out = superpixel_pool(feat, sp, n_sp)
    assert out.shape == (sum(n_sp), shape[1]) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), reference(feat, sp, n_sp), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}K{}_{}x{}to{}x{}".format(*s))
def test_gradient_matches_dense_reference(seed, shape):
    feat, sp, n_sp = random_case(seed, *shape)
    weight = torch.randn(sum(n_sp), shape[1], dtype=torch.float64,
                         generator=torch.Generator().manual_seed(seed + 100))
    f1 = feat.clone().requires_grad_()
    (superpixel_pool(f1, sp, n_sp) * weight).sum().backward()
    f2 = feat.clone().requires_grad_()
    (dense_reference(f2, sp, n_sp) * weight).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 5, 7), (2, 2, 3, 4, 7, 9), (2, 2, 3, 2, 7, 5)],
                         ids=["same_res", "low_res", "low_res_ratio_7_3"])
def test_gradcheck(shape):
    feat, sp, n_sp = random_case(3, *shape)
    n_sp = [n + 1 for n in n_sp]  # the last label of each image is absent: zero rows
    feat.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: superpixel_pool(f, sp, n_sp), (feat,))


def test_gradcheck_segment_mean():
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: segment_mean(t, [4, 0, 5]), (x,))


@pytest.mark.parametrize("size", [(6, 5), (3, 2)], ids=["same_res", "low_res"])
def test_single_pixel_superpixel(size):
    g = torch.Generator().manual_seed(4)
    feat = torch.randn(1, 3, *size, dtype=torch.float64, generator=g)
    sp = torch.zeros(1, 6, 5, dtype=torch.long)
    sp[0, 4, 2] = 1  # superpixel 1 is exactly one pixel
    out = superpixel_pool(feat, sp, [2])
    up = upsample(feat, (6, 5))
    torch.testing.assert_close(out[1], up[0, :, 4, 2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), reference(feat, sp, [2]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fsize", [(40, 40), (10, 10), (9, 7)], ids=["same_res", "low_res", "low_res_odd"])
@pytest.mark.parametrize("order", [(1, 1000), (1000, 1)], ids=["1_then_1000", "1000_then_1"])
def test_batch_one_and_thousand_superpixels(fsize, order):
    g = torch.Generator().manual_seed(5)
    feat = torch.randn(2, 4, *fsize, dtype=torch.float64, generator=g, requires_grad=True)
    maps = {1: torch.zeros(40, 40, dtype=torch.long),
            1000: (torch.arange(1600) % 1000).view(40, 40)}
    sp = torch.stack([maps[n] for n in order])
    out = superpixel_pool(feat, sp, list(order))
    assert out.shape == (1001, 4)
    np.testing.assert_allclose(out.detach().numpy(), reference(feat, sp, order), rtol=1e-12, atol=1e-12)
    one = 0 if order[0] == 1 else 1000
    torch.testing.assert_close(out[one], upsample(feat, (40, 40))[order.index(1)].mean((1, 2)))
    out.square().sum().backward()
    assert torch.isfinite(feat.grad).all()


@pytest.mark.parametrize("fsize", [(8, 6), (3, 4)], ids=["same_res", "low_res"])
def test_label_absent_from_one_image(fsize):
    g = torch.Generator().manual_seed(6)
    feat = torch.randn(2, 3, *fsize, dtype=torch.float64, generator=g, requires_grad=True)
    sp = torch.stack([torch.arange(48).view(8, 6) % 5, torch.arange(48).view(8, 6) % 4])
    sp[1][sp[1] == 2] = 3  # image 1 lacks labels 2 and 4 (n_sp = 5 for both)
    out = superpixel_pool(feat, sp, [5, 5])
    assert torch.isfinite(out).all()
    assert (out[5 + 2] == 0).all() and (out[5 + 4] == 0).all()
    np.testing.assert_allclose(out.detach().numpy(), reference(feat, sp, [5, 5]), rtol=1e-12, atol=1e-12)
    out.sum().backward(retain_graph=True)
    assert torch.isfinite(feat.grad).all()
    # a per-image loss on image 1 only: its gradient must not leak into image 0 (batch index)
    feat.grad = None
    out[5:].sum().backward()
    assert (feat.grad[0] == 0).all() and (feat.grad[1] != 0).any()


@pytest.mark.parametrize("fsize", [(8, 6), (3, 4)], ids=["same_res", "low_res"])
def test_negative_labels_ignored(fsize):
    g = torch.Generator().manual_seed(7)
    feat = torch.randn(2, 3, *fsize, dtype=torch.float64, generator=g)
    sp = torch.randint(0, 4, (2, 8, 6), generator=g)
    sp[:, :3] = -1
    sp[1, 5:, :] = -7  # any negative value is padding
    sp[0, 7, 5] = 0  # label 0 present in image 0 even when random
    out = superpixel_pool(feat, sp, [4, 4])
    np.testing.assert_allclose(out.numpy(), reference(feat, sp, [4, 4]), rtol=1e-12, atol=1e-12)
    if fsize == (8, 6):  # same resolution: ignored pixels' features cannot matter at all
        poisoned = feat.clone()
        poisoned[:, :, :3] = 1e6
        poisoned[1, :, 5:] = float("nan")
        torch.testing.assert_close(superpixel_pool(poisoned, sp, [4, 4]), out, rtol=1e-12, atol=1e-12)
    # an image that is all padding: zero rows, not NaN
    sp[1] = -1
    out = superpixel_pool(feat, sp, [4, 4])
    assert torch.isfinite(out).all() and (out[4:] == 0).all()


@pytest.mark.parametrize("label_dtype", [torch.int32, torch.int16, torch.long])
def test_label_dtypes(label_dtype):
    feat, sp, n_sp = random_case(8, 2, 3, 5, 4, 11, 9)
    out = superpixel_pool(feat, sp.to(label_dtype), n_sp)
    np.testing.assert_allclose(out.numpy(), reference(feat, sp, n_sp), rtol=1e-12, atol=1e-12)


def test_n_sp_as_tensor():
    feat, sp, n_sp = random_case(9, 3, 2, 6, 6, 6, 6)
    torch.testing.assert_close(superpixel_pool(feat, sp, torch.tensor(n_sp)), superpixel_pool(feat, sp, n_sp))


@pytest.mark.parametrize("counts", [[3, 5, 1], [4, 0, 5], [7]])
def test_segment_mean_matches_loop(counts):
    g = torch.Generator().manual_seed(10)
    x = torch.randn(sum(counts), 4, dtype=torch.float64, generator=g)
    out = segment_mean(x, counts)
    xs, ref, start = x.numpy(), np.zeros((len(counts), 4)), 0
    for b, n in enumerate(counts):
        if n:
            ref[b] = xs[start:start + n].mean(axis=0)
        start += n
    assert out.shape == (len(counts), 4) and torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_segment_mean_of_pool_is_per_image_mean_over_superpixels():
    feat, sp, n_sp = random_case(11, 3, 4, 6, 5, 13, 10, neg_frac=0.0)
    per_img = segment_mean(superpixel_pool(feat, sp, n_sp), n_sp)
    ref = reference(feat, sp, n_sp)
    start = np.cumsum([0] + n_sp)
    np.testing.assert_allclose(per_img.numpy(),
                               np.stack([ref[start[b]:start[b + 1]].mean(0) for b in range(3)]), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(2, 8, 20, 20, 20, 20), (2, 8, 7, 5, 23, 19), (2, 8, 16, 16, 64, 64)],
                         ids=["same_res", "low_res_7x5_to_23x19", "low_res_16_to_64"])
def test_float32_agrees_with_float64(seed, shape):
    feat, sp, n_sp = random_case(seed, *shape)
    out64 = superpixel_pool(feat, sp, n_sp)
    f32 = feat.float().requires_grad_()
    out32 = superpixel_pool(f32, sp, n_sp)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)
    f64 = feat.clone().requires_grad_()
    w = torch.randn_like(out64)
    (superpixel_pool(f64, sp, n_sp) * w).sum().backward()
    (out32 * w.float()).sum().backward()
    torch.testing.assert_close(f32.grad.double(), f64.grad, rtol=1e-5, atol=1e-5)


def test_rejects_bad_shapes():
    sp = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="larger than"):
        superpixel_pool(torch.zeros(2, 3, 5, 4), sp, [1, 1])
    with pytest.raises(ValueError, match="expected"):
        superpixel_pool(torch.zeros(3, 4, 4), sp, [1, 1])
    with pytest.raises(ValueError, match="expected"):
        superpixel_pool(torch.zeros(1, 3, 4, 4), sp, [1, 1])


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="CUDA not available: CPU CI skips it; run on a CUDA machine (docs/testing.md)")
@pytest.mark.parametrize("shape", [(3, 8, 20, 20, 20, 20), (3, 8, 7, 5, 23, 19)], ids=["same_res", "low_res"])
def test_cuda_matches_cpu(shape):
    feat, sp, n_sp = random_case(12, *shape)
    w = torch.randn(sum(n_sp), shape[1], dtype=torch.float64)
    f_cpu = feat.clone().requires_grad_()
    out_cpu = superpixel_pool(f_cpu, sp, n_sp)
    (out_cpu * w).sum().backward()
    f_gpu = feat.cuda().requires_grad_()
    out_gpu = superpixel_pool(f_gpu, sp.cuda(), torch.tensor(n_sp).cuda())
    (out_gpu * w.cuda()).sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f_gpu.grad.cpu(), f_cpu.grad, rtol=1e-10, atol=1e-10)
    out32 = superpixel_pool(feat.float().cuda(), sp.cuda(), n_sp)
    torch.testing.assert_close(out32.double().cpu(), out_cpu.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_pools_in_float32(dtype):
    feat = torch.full((1, 1, 256, 256), 2.0, dtype=dtype)
    out = superpixel_pool(feat, torch.zeros(1, 256, 256, dtype=torch.long), [1])
    assert out.dtype == torch.float32 and out.item() == 2.0  # no count rounding, no overflow


def test_label_outside_its_image_count_is_refused():
    sp = torch.tensor([[[0, 0], [0, 3]], [[0, 0], [1, 1]]])
    with pytest.raises(ValueError, match="n_sp"):
        superpixel_pool(torch.ones(2, 1, 2, 2), sp, [2, 2])
