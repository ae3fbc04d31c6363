"""Canvas geometry and multi-scale batching (the paper's pad-to-square, random-side training)."""

from __future__ import annotations

import numpy as np
import torch

from spn_napari.batches import MultiScaleBatches
from spn_napari.data.transforms import IMAGENET_MEAN, IMAGENET_STD, auto_scales, compact_labels, fit_to_canvas


def test_fit_to_canvas_places_the_resized_image_top_left():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 20:] = 255  # right half white
    sp = np.zeros((20, 40), np.int32)
    sp[:, 20:] = 7  # labels 0 and 7 -> compacted to 0 and 1
    x, s, n = fit_to_canvas(img, sp, 80)
    assert x.shape == (3, 80, 80) and s.shape == (80, 80) and n == 2
    assert (s[40:] == -1).all() and (s[:40] >= 0).all()  # 20x40 -> 40x80, rest is padding
    assert (s[:40, :40] == 0).all() and (s[:40, 40:] == 1).all()
    black = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[:, 10, 10], black)
    torch.testing.assert_close(x[:, 10, 70], white)
    assert (x[:, 60] == 0).all()  # padding is the normalised mean


def test_flip_mirrors_image_and_superpixels_together():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    sp = np.arange(256, dtype=np.int32).reshape(16, 16) // 4
    x, s, _ = fit_to_canvas(img, sp, 16)
    xf, sf, _ = fit_to_canvas(img, sp, 16, flip=True)
    torch.testing.assert_close(xf, x.flip(-1))
    # same partition, mirrored (labels renumbered by compaction)
    assert len({(int(a), int(b)) for a, b in zip(s.flip(-1).ravel(), sf.ravel())}) == int(sf.max()) + 1


def test_compact_labels_keeps_padding():
    s, n = compact_labels(torch.tensor([[5, 5, -1], [9, 2, -1]]))
    assert n == 3 and s.tolist() == [[1, 1, -1], [2, 0, -1]]


def test_auto_scales():
    assert auto_scales([500, 480, 520]) == (250, 300, 350, 400, 450, 500)  # VOC-sized: the paper's
    small = auto_scales([160] * 9)
    assert len(small) == 6 and small == tuple(sorted(small)) and all(s % 16 == 0 for s in small)
    assert small[0] < 160 < small[-1]


def test_batches_are_sharded_consistently_across_ranks():
    single = MultiScaleBatches(23, batch_size=6, scales=(64, 96), seed=1)
    ranks = [MultiScaleBatches(23, batch_size=3, scales=(64, 96), seed=1, rank=r, world=2) for r in (0, 1)]
    for e in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(e)
        whole = list(single)
        parts = [list(r) for r in ranks]
        assert len(whole) == len(parts[0]) == len(parts[1]) == 4
        for gb, b0, b1 in zip(whole, *parts):
            assert {i for i, _, _ in gb} == {i for i, _, _ in b0 + b1}  # the global batch, split
            assert len({side for _, side, _ in gb + b0 + b1}) == 1  # one side per global batch
        assert sorted(i for gb in whole for i, _, _ in gb) == list(range(23))  # every image once
    single.set_epoch(0)
    e0 = [i for b in single for i, _, _ in b]
    single.set_epoch(1)
    assert e0 != [i for b in single for i, _, _ in b]  # reshuffled each epoch
