"""Packed pixel store: what goes in comes out, in any order, over shard boundaries and parts; few files."""

from __future__ import annotations

import numpy as np
import pytest

from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.project import pixels
from spn_napari.project.pixels import PackedReader, PackedWriter, merge_index
from spn_napari.project.store import Project


def _arrays(rng, n, dtype=np.uint8, channels=None):
    """n arrays of random sizes (some empty), as a naive reference dict."""
    out = {}
    for i in range(n):
        h, w = (0, 5) if i == 3 else rng.integers(1, 40, 2)
        shape = (h, w) if channels is None else (h, w, channels)
        out[i] = rng.integers(0, 200, shape).astype(dtype)
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float16])
def test_round_trip_in_any_order_over_many_shards(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(pixels, "CHUNK_BYTES", 64)  # tiny chunks and shards: every image crosses them
    monkeypatch.setattr(pixels, "SHARD_CHUNKS", 3)
    rng = np.random.default_rng(0)
    ref = _arrays(rng, 60, dtype, channels=3)
    w = PackedWriter(tmp_path / "v")
    for i in rng.permutation(60):
        w.put(int(i), ref[int(i)])
    w.close()
    assert merge_index(tmp_path / "v", 60) == []
    r = PackedReader(tmp_path / "v")
    for i in range(60):
        got = r.read(i)
        assert got.dtype == dtype and got.shape == ref[i].shape
        np.testing.assert_array_equal(got, ref[i])
    shards = list((tmp_path / "v" / "part-0" / "c").iterdir())
    assert len(shards) > 10  # the data did span many shard files


def test_parts_of_several_writers_merge_and_missing_images_are_named(tmp_path):
    rng = np.random.default_rng(1)
    ref = _arrays(rng, 20)
    for part, images in enumerate((range(0, 20, 3), range(1, 20, 3), range(2, 17, 3))):
        w = PackedWriter(tmp_path / "v", part)
        for i in images:
            w.put(i, ref[i])
        w.close()
    assert merge_index(tmp_path / "v", 20) == [17]  # nobody wrote image 17
    r = PackedReader(tmp_path / "v")
    for i in set(range(20)) - {17}:
        np.testing.assert_array_equal(r.read(i), ref[i])
    assert not r.has(17) and r.has(19)
    with pytest.raises(KeyError, match="image 17"):
        r.read(17)


def test_mixed_dtypes_in_one_part_are_refused(tmp_path):
    w = PackedWriter(tmp_path / "v")
    w.put(0, np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="image 1 is int32"):
        w.put(1, np.zeros((2, 2), np.int32))


def test_a_project_holds_few_files_per_image(tmp_path):
    """Init and superpixels of 300 images: ≤ 0.1 files per image (one array per image made 2+)."""
    from spn_napari.data.readers import read_dataset
    from spn_napari.data.synthetic import write_demo_dataset
    from spn_napari.pipeline import run
    data = write_demo_dataset(tmp_path / "data", n=300, size=32, seed=0)
    project = Project.create(tmp_path / "p", read_dataset(data))
    run(compute_superpixels(project, SuperpixelConfig(n_segments=10), workers=1))
    files = [p for p in (tmp_path / "p").rglob("*") if p.is_file()]
    assert len(files) / len(project) <= 0.1, sorted(str(p) for p in files)
    reopened = Project(tmp_path / "p")
    from spn_napari.data.images import load_image
    for i in (0, 137, 299):
        np.testing.assert_array_equal(reopened.image(i), load_image(data / "images" / f"{reopened.images[i].name}.png"))
