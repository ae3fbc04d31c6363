"""The sample data (File › Open Sample › SPN demo project): a pretrained project shipped as package
data (scripts/make_sample_project.py), unpacked into a writable folder and opened as a project's
layers, with nothing trained in the viewer's process."""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spn_napari.errors import SpnError
from spn_napari.napari_io import SAMPLE_ARCHIVE, unpack_sample
from spn_napari.project.store import Project

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["image", "superpixels", "SP-CAM", "CAM", "Unsure", "labels"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Project:
    """The shipped archive unpacked by zipfile alone: what the package holds."""
    root = tmp_path_factory.mktemp("shipped") / "project"
    with zipfile.ZipFile(SAMPLE_ARCHIVE) as zf:
        zf.extractall(root)
    return Project(root)


def test_shipped_sample_is_small_and_pretrained(shipped):
    """Under 2 MB, with the demo's encoder, superpixels, both kinds of evidence and pseudo-labels."""
    from spn_napari.pipeline import DEMO_ENCODER
    assert SAMPLE_ARCHIVE.stat().st_size < 2_000_000
    assert len(shipped) >= 8 and shipped.has_ground_truth
    for kind in ("superpixels", "spn", "cams/cam", "cams/sp-cam", "pseudo/cam", "pseudo/sp-cam"):
        assert shipped.artifact(kind) is not None, kind
    assert shipped.artifact("spn")["meta"]["encoder"] == DEMO_ENCODER


def test_package_data_carries_the_archive():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["spn_napari"].split(",")]
    rel = SAMPLE_ARCHIVE.relative_to(ROOT / "spn_napari").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns), (rel, patterns)


def test_sample_opens_in_a_viewer_without_training(tmp_path, shipped):
    """In a fresh process (so sys.modules tells what opening imported): napari opens the sample
    through the plugin's manifest, shows the project's layers, imports no training module, and
    its labels are the shipped pseudo-labels of the shown image."""
    pytest.importorskip("napari")
    code = f"""
import json, sys
import numpy as np
import napari
viewer = napari.Viewer(show=False)
viewer.open_sample("spn-napari", "demo-project")
labels = viewer.layers["labels"]
np.save(r"{tmp_path / 'labels.npy'}", np.asarray(labels.data))
np.save(r"{tmp_path / 'image.npy'}", np.asarray(viewer.layers["image"].data))
print(json.dumps({{"layers": [layer.name for layer in viewer.layers], "meta": labels.metadata,
                  "loaded": sorted(m for m in sys.modules if m.startswith("spn_napari"))}}))
viewer.close()
"""
    env = {**os.environ, "SPN_NAPARI_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["layers"] == LAYERS
    training = {"spn_napari.train", "spn_napari.batches", "spn_napari.rounds.refine", "spn_napari.review.simulate",
                "spn_napari.pipeline"}  # the training loops, their batches and the recipes that call them
    assert not training & set(out["loaded"]), out["loaded"]
    root, i = tmp_path / "cache" / "sample-project", out["meta"]["spn_image"]
    assert out["meta"]["spn_project"] == str(root)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), shipped.read("pseudo/sp-cam", i))
    np.testing.assert_array_equal(np.load(tmp_path / "image.npy"), shipped.image(i))


def test_unpacking_keeps_the_users_copy_until_the_archive_changes(tmp_path):
    root = tmp_path / "sample-project"
    p = Project(unpack_sample(root))
    i, labels = 0, p.read("pseudo/sp-cam", 0)
    set_mask = np.zeros_like(labels, bool)
    set_mask[:4, :4] = True
    p.save_correction(i, np.where(set_mask, 1, labels).astype(np.uint8), set_mask)
    p.close()
    unpack_sample(root)  # the same archive: the user's correction stays
    assert Project(root).has_correction(i)

    other = tmp_path / "other.zip"  # a newer package's archive: a fresh copy of it
    with zipfile.ZipFile(SAMPLE_ARCHIVE) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("NOTE", "another sample\n")
    unpack_sample(root, other)
    assert (root / "NOTE").is_file() and not Project(root).has_correction(i)
    assert not list(tmp_path.glob(".sample-project.unpacking-*"))


def test_a_missing_archive_names_the_script(tmp_path):
    with pytest.raises(SpnError, match="make_sample_project.py"):
        unpack_sample(tmp_path / "sample-project", tmp_path / "absent.zip")
