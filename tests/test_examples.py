"""The scripts in examples/ run as a user runs them, on tiny data, and give what the API gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spn_napari.labels import current_labels
from spn_napari.project.kinds import round_labels
from spn_napari.project.store import Project

ROOT = Path(__file__).resolve().parents[1]


def _example(script: str, *args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def own(tmp_path_factory, demo_dir) -> Project:
    """examples/own_dataset.py on the 10-image demo data set (small encoder, one epoch each)."""
    root = tmp_path_factory.mktemp("own") / "project"
    out = _example("own_dataset.py", demo_dir, root, "--encoder", "small", "--epochs", "1", "--round-epochs", "1",
                   "--device", "cpu")
    assert "masks written to" in out and "mIoU" in out
    return Project(root)


def test_own_dataset_ends_with_a_round_and_its_masks(own):
    assert own.current_round() == 1
    masks = own.root.parent / "project-masks"
    for i, info in enumerate(own.images):
        exported = np.asarray(Image.open(masks / f"{info.name}.png"))
        np.testing.assert_array_equal(exported, current_labels(own, i))


def test_labels_to_numpy_equals_the_projects_labels(own, tmp_path):
    out = tmp_path / "labels.npz"
    _example("labels_to_numpy.py", own.root, out)
    _example("labels_to_numpy.py", own.root, tmp_path / "sp.npz", "--kind", "pseudo/sp-cam")
    current, pseudo = np.load(out), np.load(tmp_path / "sp.npz")
    assert list(current["__classes__"]) == own.label_names()
    for i, info in enumerate(own.images):
        np.testing.assert_array_equal(current[info.name], own.read(round_labels(1), i))  # no corrections
        np.testing.assert_array_equal(pseudo[info.name], own.read("pseudo/sp-cam", i))


def test_show_evidence_draws_one_row_per_image(own, tmp_path):
    out = tmp_path / "evidence.png"
    _example("show_evidence.py", own.root, out, "--images", "0", "1")
    from spn_napari.predict.export import label_palette
    panel = np.asarray(Image.open(out))
    pal = np.array(label_palette(own.colors), np.uint8).reshape(256, 3)
    h0, w0 = own.images[0].height, own.images[0].width
    assert panel.shape[0] == h0 + own.images[1].height
    np.testing.assert_array_equal(panel[:h0, :w0], own.image(0))  # image | SP-CAM | CAM | labels | truth
    np.testing.assert_array_equal(panel[:h0, 3 * w0:4 * w0], pal[own.read("pseudo/sp-cam", 0)])
    np.testing.assert_array_equal(panel[:h0, 4 * w0:5 * w0], pal[own.ground_truth(0)])


def test_predict_folder_writes_what_the_segmenter_predicts(own, tmp_path):
    """Photos of other sizes in a folder (a non-image file beside them is passed over): one palette
    mask each, equal to Segmenter.predict in this process."""
    import spn_napari as spn
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in (0, 3):
        Image.fromarray(own.image(i)[: 40 - i, : 50 - 2 * i]).save(photos / f"p{i}.png")
    Image.fromarray(own.image(5)).save(photos / "p5.jpg", quality=95)
    (photos / "notes.txt").write_text("not a photo")
    out = _example("predict_folder.py", own.root, photos, tmp_path / "masks", "--device", "cpu")
    assert "3 masks" in out
    seg = spn.Segmenter.from_project(own.root, device="cpu")
    from spn_napari.data.images import load_image
    for name in ("p0.png", "p3.png", "p5.jpg"):
        mask = Image.open(tmp_path / "masks" / f"{Path(name).stem}.png")
        assert mask.mode == "P" and mask.getpalette()[:6] == seg.palette[:6]
        np.testing.assert_array_equal(np.asarray(mask), seg.predict(load_image(photos / name)))
