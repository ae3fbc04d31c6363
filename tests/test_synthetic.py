"""The demo data generator: determinism, layout on disk, tags vs. masks, and the shape of the data
(small discriminative parts, shared body appearance, mixed sizes, multi-object rate)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spn_napari.data.synthetic import (
    CLASSES,
    PART_SHARE_RANGE,
    SIZE_RANGE,
    generate_demo_image,
    generate_demo_sample,
    write_demo_dataset,
)
from spn_napari.errors import DatasetError

SIZE = 160


@pytest.fixture(scope="module")
def samples():
    return [generate_demo_sample(np.random.default_rng((0, i)), SIZE) for i in range(100)]


def _read_labels(root):
    lines = (root / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image,labels"
    rows = [ln.split(",") for ln in lines[1:]]
    return [(name, labels.split(";") if labels else []) for name, labels in rows]


def test_generate_is_deterministic():
    a = generate_demo_image(np.random.default_rng((3, 7)), SIZE)
    b = generate_demo_image(np.random.default_rng((3, 7)), SIZE)
    c = generate_demo_image(np.random.default_rng((4, 7)), SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_image_and_mask_layout(samples):
    for s in samples:
        h, w = s.mask.shape
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.mask.dtype == np.uint8
        assert s.tags == sorted(int(v) - 1 for v in np.unique(s.mask) if v)
        assert len(s.tags) >= 1 and (s.mask > 0).any()
        assert set(np.unique(s.mask)) <= set(range(len(CLASSES) + 1))


def test_sizes_vary_within_range(samples):
    lo, hi = round(SIZE * SIZE_RANGE[0]), round(SIZE * SIZE_RANGE[1])
    shapes = [s.mask.shape for s in samples]
    assert all(lo <= h <= hi and lo <= w <= hi for h, w in shapes)
    assert len(set(shapes)) > 50
    assert sum(h != w for h, w in shapes) > 80
    hs, ws = np.array(shapes).T
    for side in (hs, ws):
        assert side.min() < 0.9 * SIZE and side.max() > 1.1 * SIZE


def test_mask_is_objects_drawn_in_order_and_parts_stay_visible(samples):
    for s in samples:
        expect = np.zeros_like(s.mask)
        for obj in s.objects:
            expect[obj.body | obj.part] = obj.label + 1
        np.testing.assert_array_equal(s.mask, expect)
        for obj in s.objects:
            assert (s.mask[obj.part] == obj.label + 1).all()  # never covered by a later object


def test_discriminative_part_is_small_but_visible(samples):
    lo, hi = PART_SHARE_RANGE
    assert 0.05 <= lo < hi <= 0.2
    shares, part_areas = [], []
    for s in samples:
        for obj in s.objects:
            area = (obj.body | obj.part).sum()
            shares.append(obj.part.sum() / area)
            part_areas.append(obj.part.sum())
            # The body is big: about 30-45 % of the image side long, so >= 3 % of the image.
            assert area >= 0.03 * s.mask.size
    assert lo <= min(shares) and max(shares) <= hi, (min(shares), max(shares))
    assert min(part_areas) >= 0.75 * np.pi * 5**2  # at least ~10 px across at size 160


def test_part_lies_inside_the_body_near_its_centre(samples):
    # The part sits in the body's interior, so everything around it is body: the layout in which
    # CAM marks only the part and SP-CAM can reach the whole object (see synthetic.py).
    offsets = []
    for s in samples:
        for obj in s.objects:
            assert not (obj.part & ~obj.body).any()
            whole = obj.body | obj.part
            radius = np.sqrt(whole.sum() / np.pi)  # of the disc with the object's area
            offset = np.argwhere(obj.part).mean(0) - np.argwhere(whole).mean(0)
            offsets.append(np.hypot(*offset) / radius)
    assert max(offsets) <= 0.4, max(offsets)  # generated: at most 0.3 semi-major axes off-centre
    assert np.mean(offsets) >= 0.1  # off-centre, not always in the middle


def test_multi_object_rate_and_class_balance(samples):
    counts = np.array([len(s.objects) for s in samples])
    assert counts.min() >= 1 and counts.max() <= 3
    assert 0.3 <= (counts > 1).mean() <= 0.6
    for s in samples:
        assert 1 <= len(s.tags) <= 2
    freq = np.bincount([t for s in samples for t in s.tags], minlength=len(CLASSES))
    assert freq.min() >= 0.6 * freq.mean(), freq


def test_body_appearance_does_not_depend_on_class(samples):
    # Mean colour of the visible body (without the part) per object, grouped by class.
    per_class = [[] for _ in CLASSES]
    for s in samples:
        for obj in s.objects:
            sel = obj.body & ~obj.part & (s.mask == obj.label + 1)
            if sel.sum() > 50:
                per_class[obj.label].append(s.image[sel].mean(0))
    means = np.array([np.mean(v, 0) for v in per_class])  # (C, 3)
    assert np.abs(means - means.mean(0)).max() < 15, means
    # ... and parts differ between classes far more than bodies do.
    parts = [[] for _ in CLASSES]
    for s in samples:
        for obj in s.objects:
            parts[obj.label].append(s.image[obj.part].mean(0))
    pmeans = np.array([np.mean(v, 0) for v in parts])
    d = np.linalg.norm(pmeans[:, None] - pmeans[None], axis=-1)
    assert d[np.triu_indices(len(CLASSES), 1)].min() > 40, d


def test_write_demo_dataset_layout_and_tags(tmp_path):
    calls = []
    root = write_demo_dataset(
        tmp_path / "demo", n=8, size=64, seed=1, progress=lambda i, n: calls.append((i, n))
    )
    assert calls == [(i, 8) for i in range(1, 9)]
    assert (root / "classes.txt").read_text(encoding="utf-8").splitlines() == list(CLASSES)
    rows = _read_labels(root)
    assert [name for name, _ in rows] == [f"demo_{i:05d}.png" for i in range(8)]
    for name, labels in rows:
        image = np.asarray(Image.open(root / "images" / name))
        mask = np.asarray(Image.open(root / "masks" / name))
        assert image.ndim == 3 and image.shape[:2] == mask.shape and mask.dtype == np.uint8
        assert labels and set(labels) <= set(CLASSES)
        assert {CLASSES.index(c) + 1 for c in labels} == {int(v) for v in np.unique(mask) if v}


def test_write_is_deterministic_and_independent_of_n(tmp_path):
    a = write_demo_dataset(tmp_path / "a", n=4, size=64, seed=5)
    b = write_demo_dataset(tmp_path / "b", n=2, size=64, seed=5)
    c = write_demo_dataset(tmp_path / "c", n=2, size=64, seed=6)
    for i in range(2):
        for sub in ("images", "masks"):
            name = f"{sub}/demo_{i:05d}.png"
            assert (a / name).read_bytes() == (b / name).read_bytes()
        name = f"images/demo_{i:05d}.png"
        assert (a / name).read_bytes() != (c / name).read_bytes()
    assert _read_labels(a)[:2] == _read_labels(b)


def test_write_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        write_demo_dataset(out, n=1, size=64)
    msg = str(err.value)
    assert str(out) in msg and "\n" not in msg
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_demo_dataset(empty, n=1, size=64) == empty  # an empty folder is fine


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="size"):
        generate_demo_image(np.random.default_rng(0), 16)
