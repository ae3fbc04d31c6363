"""SP-CAM / CAM post-processing against hand-built masks, loops and a float64 bilinear reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spn_napari.evidence.cam import paint_superpixels, threshold_maps, uncertain_pixels, upsample_cam

# ---------------------------------------------------------------- threshold_maps, hand cases

def test_single_class_half_of_max_inclusive():
    m = np.array([[[0.0, 1.0, 2.0],
                   [4.0, 1.9, 3.0],
                   [-1.0, 2.0, 0.5]]])  # max 4 -> threshold 2 (2.0 exactly passes)
    want = np.array([[0, 0, 1],
                     [1, 0, 1],
                     [0, 1, 0]], np.uint8)
    out = threshold_maps(m, [0])
    assert out.dtype == np.uint8 and out.shape == (3, 3)
    np.testing.assert_array_equal(out, want)


def test_uncertain_pixels_hand_case():
    c0 = np.array([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]])  # max 4 -> norm [1, .75, .5, .25, 0, -.25]
    c1 = np.array([[0.0, 0.0, 0.0, 0.0, 6.5, 0.0]])  # max 6.5 -> norm [0, 0, 0, 0, 1, 0]
    c2 = np.full((1, 6), -2.0)  # no positive value: never counts
    m = np.stack([c0, c1, c2])
    # best normalised score [1, .75, .5, .25, 1, 0]; |best - .5| < .2 -> only the .5
    np.testing.assert_array_equal(uncertain_pixels(m, [0, 1, 2], band=0.2), [[0, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(uncertain_pixels(m, [0, 1, 2], band=0.3), [[0, 1, 1, 1, 0, 0]])
    # class 1 not listed: pixel 4's best is c0's 0, far from the threshold
    np.testing.assert_array_equal(uncertain_pixels(m, [0], band=0.26), [[0, 1, 1, 1, 0, 0]])
    assert not uncertain_pixels(m, [0, 1], band=0.0).any()


def test_overlap_highest_normalised_score_wins():
    c0 = np.array([[4.0, 3.0, 2.0, 0.0]])  # max 4  -> norm [1, .75, .5, 0]
    c1 = np.array([[5.0, 6.0, 9.0, 10.0]])  # max 10 -> norm [.5, .6, .9, 1]
    out = threshold_maps(np.stack([c0, c1]), [0, 1])
    # px0: 1 vs .5 -> class 0; px1: .75 vs .6 -> class 0 (though its raw score 3 < 6);
    # px2: .5 vs .9 -> class 1; px3: class 0 fails -> class 1
    np.testing.assert_array_equal(out, [[1, 1, 2, 2]])
    # the order in which classes are listed does not matter
    np.testing.assert_array_equal(threshold_maps(np.stack([c0, c1]), [1, 0]), out)


def test_class_not_listed_is_ignored():
    m = np.zeros((3, 2, 3))
    m[0] = [[0.9, 2, 0], [0, 0, 0]]  # threshold 1
    m[1] = 1000.0  # huge, but not in the list
    m[2] = [[0, 0, 0], [0, 3, 6]]  # threshold 3
    want = np.array([[0, 1, 0],
                     [0, 3, 3]], np.uint8)
    np.testing.assert_array_equal(threshold_maps(m, [0, 2]), want)
    np.testing.assert_array_equal(threshold_maps(m, np.array([2, 0, 2])), want)  # numpy ints, duplicates


def test_non_positive_map_marks_nothing():
    m = np.zeros((3, 2, 2))
    m[0] = [[-1, -0.5], [-3, -2]]  # all negative: max -0.5, "50% of max" must not mark -0.5
    m[1] = 0.0  # all zero
    m[2] = [[0, 0], [0, 2]]
    np.testing.assert_array_equal(threshold_maps(m, [0, 1]), np.zeros((2, 2), np.uint8))
    np.testing.assert_array_equal(threshold_maps(m, [0, 1, 2]), [[0, 0], [0, 3]])


def test_background_where_no_class_passes():
    m = np.zeros((2, 2, 3))
    m[0] = [[8, 3, 0], [0, 0, 1]]  # threshold 4
    m[1] = [[0, 0, 1], [2, 3, 0]]  # threshold 1.5
    np.testing.assert_array_equal(threshold_maps(m, [0, 1]), [[1, 0, 0], [2, 2, 0]])
    np.testing.assert_array_equal(threshold_maps(m, []), np.zeros((2, 3), np.uint8))


@pytest.mark.parametrize("frac, want", [
    (0.25, [[1, 1, 1, 0, 0]]),  # >= 2
    (0.5, [[1, 1, 0, 0, 0]]),  # >= 4
    (0.75, [[1, 1, 0, 0, 0]]),  # >= 6
    (0.8, [[1, 0, 0, 0, 0]]),  # >= 6.4
    (1.0, [[1, 0, 0, 0, 0]]),  # only the peak
])
def test_other_fractions(frac, want):
    m = np.array([[[8.0, 6.0, 2.0, 1.9, -5.0]]])
    np.testing.assert_array_equal(threshold_maps(m, [0], frac=frac), want)


def threshold_loop(maps: np.ndarray, classes, frac: float):
    """float64 per-pixel reference; also returns where the winner is a tie (unspecified)."""
    c_all, h, w = maps.shape
    out, tie = np.zeros((h, w), np.uint8), np.zeros((h, w), bool)
    peaks = {c: maps[c].max() for c in set(classes)}
    for y in range(h):
        for x in range(w):
            cand = [(maps[c, y, x] / peaks[c], c) for c in sorted(peaks)
                    if peaks[c] > 0 and maps[c, y, x] / peaks[c] >= frac]
            if cand:
                best = max(s for s, _ in cand)
                winners = [c for s, c in cand if s == best]
                out[y, x] = winners[0] + 1
                tie[y, x] = len(winners) > 1
    return out, tie


@pytest.mark.parametrize("frac", [0.3, 0.5, 0.7])
def test_threshold_matches_loop_random(frac):
    rng = np.random.default_rng(3)
    maps = rng.integers(-6, 21, (5, 13, 11)).astype(np.float64)  # small integers: float32-exact
    maps[3] = -np.abs(maps[3])  # one non-positive class
    classes = [0, 1, 3, 4]
    ref, tie = threshold_loop(maps, classes, frac)
    out = threshold_maps(maps, classes, frac=frac)
    np.testing.assert_array_equal(out[~tie], ref[~tie])
    assert (out[tie] > 0).all()
    assert (ref > 0).any() and (ref == 0).any()


# ---------------------------------------------------------------- paint_superpixels

def test_paint_superpixels_matches_loop():
    rng = np.random.default_rng(4)
    n, c, h, w = 6, 3, 7, 9
    scores = rng.standard_normal((n, c))
    sp = rng.integers(0, n, (h, w))
    ref = np.zeros((c, h, w))
    for y in range(h):
        for x in range(w):
            for k in range(c):
                ref[k, y, x] = scores[sp[y, x], k]
    out = paint_superpixels(scores, sp)
    assert out.shape == (c, h, w) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6)


# ---------------------------------------------------------------- upsample_cam

def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """float64 (out, in) matrix of 1-D bilinear resizing with half-pixel centres (align_corners=False)."""
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        i0 = min(int(np.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        t = src - i0
        m[i, i0] += 1 - t
        m[i, i1] += t
    return m


@pytest.mark.parametrize("h, w", [(37, 20), (20, 37), (16, 16), (23, 5)])
def test_upsample_cam_square_canvas_then_crop(h, w):
    rng = np.random.default_rng(h * 100 + w)
    cam = rng.standard_normal((3, 4, 4)).astype(np.float32)  # CAM over the square canvas
    side = max(h, w)
    out = upsample_cam(cam, h, w)
    assert out.shape == (3, h, w)
    # against torch on the square canvas, then crop top-left (images sit at the canvas' top-left)
    ref_t = F.interpolate(torch.from_numpy(cam)[None], size=(side, side), mode="bilinear",
                          align_corners=False)[0, :, :h, :w].numpy()
    np.testing.assert_allclose(out, ref_t, rtol=1e-6, atol=1e-6)
    # against an independent float64 separable bilinear reference
    a = bilinear_matrix(side, cam.shape[1])
    ref = np.einsum("yi,cij,xj->cyx", a, cam.astype(np.float64), a)[:, :h, :w]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # not a direct (aspect-distorting) resize to (h, w) when h != w
    if h != w:
        direct = F.interpolate(torch.from_numpy(cam)[None], size=(h, w), mode="bilinear",
                               align_corners=False)[0].numpy()
        assert not np.allclose(out, direct, atol=1e-3)


# ---------------------------------------------------------------- without a background class

C0 = np.array([[4.0, 3.0, 2.0, 0.0, 1.0]])  # max 4  -> norm [1, .75, .5, 0, .25]
C1 = np.array([[5.0, 6.0, 9.0, 10.0, 2.0]])  # max 10 -> norm [.5, .6, .9, 1, .2]
C2 = np.array([[-1.0, -1.0, -1.0, -1.0, -0.5]])  # no positive value
C3 = np.array([[-2.0, 0.0, -3.0, -0.1, -0.6]])  # no positive value (peak 0)
NO_BG = np.stack([C0, C1, C2, C3])


def test_no_background_every_pixel_takes_the_best_normalised_class():
    # px4: .25 vs .2 -> class 0, though neither passes 50% (with background: 0)
    np.testing.assert_array_equal(threshold_maps(NO_BG, [0, 1], background=False), [[1, 1, 2, 2, 1]])
    np.testing.assert_array_equal(threshold_maps(NO_BG, [0, 1]), [[1, 1, 2, 2, 0]])
    # a class without a positive value loses to any class with one
    np.testing.assert_array_equal(threshold_maps(NO_BG, [2, 1, 0], background=False), [[1, 1, 2, 2, 1]])
    np.testing.assert_array_equal(threshold_maps(NO_BG, [2, 1], background=False), [[2, 2, 2, 2, 2]])
    # none has one: the raw scores decide (-1 vs -2, -1 vs 0, -1 vs -3, -1 vs -.1, -.5 vs -.6)
    np.testing.assert_array_equal(threshold_maps(NO_BG, [3, 2], background=False), [[3, 4, 3, 4, 3]])
    # one class labels every pixel, whatever its map; none leaves 0 ("no label")
    for c in range(4):
        out = threshold_maps(NO_BG, [c], background=False)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.full((1, 5), c + 1))
    np.testing.assert_array_equal(threshold_maps(NO_BG, [], background=False), np.zeros((1, 5)))


def test_no_background_ties_go_to_the_lower_class():
    m = np.stack([np.array([[2.0, 1.0]]), np.array([[4.0, 2.0]])])  # norms [1, .5] both
    np.testing.assert_array_equal(threshold_maps(m, [1, 0], background=False), [[1, 1]])


def test_no_background_uncertain_is_a_close_second_best():
    # gaps best - second: [.5, .15, .4, 1, .05]
    np.testing.assert_array_equal(uncertain_pixels(NO_BG, [0, 1], band=0.2, background=False), [[0, 1, 0, 0, 1]])
    np.testing.assert_array_equal(uncertain_pixels(NO_BG, [0, 1], band=0.45, background=False), [[0, 1, 1, 0, 1]])
    np.testing.assert_array_equal(uncertain_pixels(NO_BG, [0, 1, 2], band=0.45, background=False),
                                  [[0, 1, 1, 0, 1]])  # class 2 (no positive value) is never second
    assert not uncertain_pixels(NO_BG, [0, 2], band=5.0, background=False).any()  # second best: none
    assert not uncertain_pixels(NO_BG, [1], band=5.0, background=False).any()  # one class: sure
    assert not uncertain_pixels(NO_BG, [], band=5.0, background=False).any()
    assert uncertain_pixels(NO_BG, [2, 3], band=0.0, background=False).all()  # no evidence at all


def no_background_loop(maps: np.ndarray, classes) -> np.ndarray:
    """float64 per-pixel reference of the no-background rule (maps with a positive peak each)."""
    cs = sorted(set(classes))
    out = np.zeros(maps.shape[1:], np.uint8)
    for y, x in np.ndindex(out.shape):
        scores = [maps[c, y, x] / maps[c].max() for c in cs]
        out[y, x] = cs[int(np.argmax(scores))] + 1
    return out


def test_no_background_matches_loop_random():
    rng = np.random.default_rng(5)
    maps = rng.integers(-6, 21, (5, 13, 11)).astype(np.float64)
    maps[:, 0, 0] = 20  # every class has a positive peak
    classes = [0, 2, 3, 4]
    np.testing.assert_array_equal(threshold_maps(maps, classes, background=False), no_background_loop(maps, classes))


@pytest.mark.parametrize("c,h,w,height,width", [(3, 20, 20, 213, 320), (2, 32, 32, 400, 512), (1, 16, 16, 15, 9)])
def test_upsample_cam_is_torchs_bilinear_resize_cropped(c, h, w, height, width):
    """The numpy resize equals torch's ``interpolate(bilinear, align_corners=False)`` to the square
    canvas, cropped to the photo (the reference the evidence was made with)."""
    cam = np.random.default_rng(h + height).standard_normal((c, h, w)).astype(np.float32)
    side = max(height, width)
    ref = F.interpolate(torch.from_numpy(cam)[None], size=(side, side), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(upsample_cam(cam, height, width), ref[0, :, :height, :width].numpy(), atol=1e-5)
