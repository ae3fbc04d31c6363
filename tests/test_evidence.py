"""Evidence settings: normalisation, fused scores, mirrored and larger views, and projects made
before these settings existed.

References: float64 per-pixel loops of each rule, the naive mirrored pass (the flipped canvas run
through the network and its maps flipped back, pooled by a loop), hand-computed sides, and the
labels a project stored with its own settings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spn_napari.data.transforms import fit_to_canvas
from spn_napari.errors import SpnError
from spn_napari.evidence.cam import fuse_scores, tag_scores, threshold_maps, uncertain_pixels
from spn_napari.evidence.maps import EvidenceSettings, evidence_sides
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, image_evidence, make_pseudo_labels, resolve_settings
from spn_napari.models.spn import build_spn
from spn_napari.pipeline import run
from spn_napari.predict.segmenter import Segmenter
from spn_napari.project.store import Project
from spn_napari.train import TrainConfig, train_spn


def _maps(seed: int, c: int = 4, h: int = 9, w: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    maps = rng.integers(-6, 21, (c, h, w)).astype(np.float64)  # small integers: float32-exact
    maps[:, 0, 0] = 20
    return maps


def test_shared_normalisation_is_the_raw_argmax_over_the_tags():
    maps = _maps(1)
    classes = [0, 2, 3]
    want = np.zeros(maps.shape[1:], np.uint8)
    for y, x in np.ndindex(want.shape):  # raw scores, ties to the lower class
        want[y, x] = classes[int(np.argmax([maps[c, y, x] for c in classes]))] + 1
    np.testing.assert_array_equal(threshold_maps(maps, classes, background=False, normalise="shared"), want)
    cs, s, ok = tag_scores(maps, classes, "shared")
    assert ok and cs == classes and np.isclose(s.max(), 1.0)  # fractions of the one shared peak
    # class 2 scaled up 3×: the raw argmax follows the scale, each class over its own peak does not
    scaled = maps * np.array([1, 1, 3, 1])[:, None, None]
    np.testing.assert_array_equal(threshold_maps(scaled, classes, background=False),
                                  threshold_maps(maps, classes, background=False))
    assert (threshold_maps(scaled, classes, background=False, normalise="shared") != want).any()


def test_uncertain_band_is_measured_on_the_shared_scale():
    m = np.array([[[10.0, 6.0, 2.0]], [[5.0, 5.0, 9.0]]])  # shared peak 10: gaps .5, .1, .7
    np.testing.assert_array_equal(uncertain_pixels(m, [0, 1], band=0.2, background=False, normalise="shared"),
                                  [[0, 1, 0]])
    # max-normalised: [1, .6, .2] vs [5/9, 5/9, 1]: gaps .44, .04, .8
    np.testing.assert_array_equal(uncertain_pixels(m, [0, 1], band=0.2, background=False), [[0, 1, 0]])
    np.testing.assert_array_equal(uncertain_pixels(m, [0, 1], band=0.45, background=False), [[1, 1, 0]])


def test_fused_scores_against_a_float64_loop():
    sp, cam = _maps(2), _maps(3) - 3.0
    classes = [1, 3, 0]
    out = fuse_scores(sp, cam, classes)
    cs = sorted(classes)
    shared = max(cam[c].max() for c in cs)
    for c in range(len(sp)):
        for y, x in np.ndindex(sp.shape[1:]):
            if c not in cs:
                assert out[c, y, x] == -np.inf
            else:
                want = 0.5 * (sp[c, y, x] / sp[c].max() + cam[c, y, x] / shared)
                assert abs(out[c, y, x] - want) < 1e-6
    labels = threshold_maps(out, classes, background=False, normalise="none")
    np.testing.assert_array_equal(labels, np.array(cs)[np.stack([out[c] for c in cs]).argmax(0)] + 1)


def test_fused_falls_back_to_the_method_with_evidence():
    sp = np.stack([np.full((1, 3), -1.0), np.array([[1.0, 2.0, 4.0]])])  # class 0: no positive SP-CAM peak
    cam = np.stack([np.array([[4.0, 2.0, 1.0]]), np.array([[1.0, 1.0, 1.0]])])
    out = fuse_scores(sp, cam, [0, 1])
    np.testing.assert_allclose(out[0], [[1.0, 0.5, 0.25]])  # CAM's shared-normalised score alone
    np.testing.assert_allclose(out[1], 0.5 * (sp[1] / 4 + cam[1] / 4))


def test_evidence_sides_by_hand():
    assert evidence_sides([208, 256, 304, 336, 384, 432]) == (416, 512)  # 1.25 × 336 = 420, 1.5 × 336 = 504
    assert evidence_sides([250, 300, 350, 400, 450, 500]) == (496, 608)  # mid 400: 500 → 496, 600 → 608
    assert evidence_sides([64], (1.0, 2.0)) == (64, 128)


def test_settings_resolve_by_project_kind():
    scales = (208, 256, 304, 336, 384, 432)
    photos = resolve_settings(PseudoLabelConfig(), scales, background=False)
    assert (photos.method, photos.sides, photos.flip, photos.normalise) == ("fused", (416, 512), True, None)
    paper = resolve_settings(PseudoLabelConfig(), scales, background=True)
    assert (paper.method, paper.sides, paper.flip) == ("sp-cam", (336,), False)
    assert resolve_settings(PseudoLabelConfig(multi_scale=True), scales, True).sides == scales
    with pytest.raises(SpnError, match="--normalise"):
        resolve_settings(PseudoLabelConfig(normalise="zscore"), scales, False)
    with pytest.raises(SpnError, match="--method"):
        resolve_settings(PseudoLabelConfig(method="crf"), scales, False)
    # what a project made before these settings recorded reads as what it did then
    legacy = EvidenceSettings.from_meta({"method": "sp-cam", "sides": [336], "threshold": 0.5, "multi_scale": False},
                                        "sp-cam", [])
    assert (legacy.sides, legacy.flip, legacy.normalise, legacy.aggregate) == ((336,), False, "max", "max")


def test_mirrored_view_matches_the_naive_flipped_pass():
    """image_evidence with flip: the mean of the plain pass and the mirrored canvas's pass whose
    maps are flipped back; SP-CAM pooled by a float64 loop over each superpixel's pixels."""
    torch.manual_seed(0)
    model = build_spn(3).eval()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (37, 50, 3), dtype=np.uint8)
    sp = (np.arange(37 * 50).reshape(37, 50) // 97).astype(np.int32)
    side = 64
    with torch.no_grad():
        ev = image_evidence(model, img, sp, [side], torch.device("cpu"), flip=True)
        x, _, _ = fit_to_canvas(img, None, side)
        refs_sp, refs_cam = [], []
        for mirrored in (False, True):
            xin = x.flip(-1) if mirrored else x
            z, feat = model.features(xin[None])
            if mirrored:
                z, feat = z.flip(-1), feat.flip(-1)
            up = F.interpolate(feat.double(), size=(50, 50), mode="bilinear", align_corners=False)[0, :, :37, :50]
            w = model.top.weight.double()
            refs_sp.append(np.stack([(w @ up[:, torch.from_numpy(sp == k)].mean(1)).numpy()
                                     for k in range(sp.max() + 1)]))
            refs_cam.append(torch.einsum("kyx,ck->cyx", z[0].double(), model.bottom.weight.double()).numpy())
    np.testing.assert_allclose(ev.sp_scores, np.mean(refs_sp, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ev.cam, np.mean(refs_cam, 0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(refs_sp[0], refs_sp[1], atol=1e-3)  # the mirrored pass is a different view


def test_two_sides_average_on_the_finer_grid():
    torch.manual_seed(1)
    model = build_spn(2).eval()
    img = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    sp = (np.arange(30 * 40).reshape(30, 40) // 150).astype(np.int32)
    with torch.no_grad():
        both = image_evidence(model, img, sp, [32, 64], torch.device("cpu"))
        a = image_evidence(model, img, sp, [32], torch.device("cpu"))
        b = image_evidence(model, img, sp, [64], torch.device("cpu"))
    np.testing.assert_allclose(both.sp_scores, 0.5 * (a.sp_scores + b.sp_scores), rtol=1e-5, atol=1e-5)
    a_up = F.interpolate(torch.from_numpy(a.cam)[None], size=b.cam.shape[-2:], mode="bilinear",
                         align_corners=False)[0].numpy()
    np.testing.assert_allclose(both.cam, 0.5 * (a_up + b.cam), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- projects made before the settings

def test_a_project_with_earlier_evidence_settings_keeps_its_labels_and_records_new_ones(nb_trained, capsys):
    """An existing project (pseudo-labels made the old way: middle side, max-normalised SP-CAM, its
    artifact's meta without the new keys) opens, predicts its own photos exactly as stored, and
    keeps its labels; rerunning pseudo-labels records the new settings in project.db."""
    from spn_napari.labels import base_kind

    from conftest import cli
    p = nb_trained
    old = p.artifact("pseudo/sp-cam")
    assert old is not None and "flip" not in old["meta"]  # written as the store did before
    before = [p.read("pseudo/sp-cam", i) for i in range(len(p))]
    seg = Segmenter.from_project(p.root, device="cpu")
    assert (seg.evidence.normalise, seg.evidence.flip, seg.evidence.aggregate) == ("max", False, "max")
    for i in range(len(p)):
        np.testing.assert_array_equal(seg.predict(p.image(i), p.images[i].tags), before[i])
    assert base_kind(p) == "pseudo/sp-cam"
    code, _, err = cli(capsys, "pseudo-labels", p.root, "--progress", "none", "--device", "cpu")
    assert code == 0, err
    q = Project(p.root)
    assert q.settings["evidence"]["method"] == "fused" and q.settings["evidence"]["flip"] is True
    assert q.artifact("pseudo/fused")["meta"]["sides"] == q.settings["evidence"]["sides"]
    assert base_kind(q) == "pseudo/fused"
    for i in range(len(q)):  # the old labels are still there, unchanged
        np.testing.assert_array_equal(q.read("pseudo/sp-cam", i), before[i])


@pytest.fixture
def nb_trained(tmp_path, demo_dir) -> Project:
    """The demo images as a project without background, an SPN trained for one epoch, and SP-CAM
    pseudo-labels whose meta is what projects made before the evidence settings recorded."""
    import shutil

    from spn_napari.data.readers import read_dataset
    from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
    shutil.copytree(demo_dir, tmp_path / "data", ignore=shutil.ignore_patterns("masks"))
    p = Project.create(tmp_path / "project", read_dataset(tmp_path / "data"), background=False)
    run(compute_superpixels(p, SuperpixelConfig(n_segments=40), workers=1))
    run(train_spn(p, TrainConfig(epochs=1, batch_size=4, device="cpu", encoder="small")))
    mid = sorted(torch.load(p.file("spn"), weights_only=True)["scales"])
    mid = mid[len(mid) // 2]
    run(make_pseudo_labels(p, PseudoLabelConfig(method="sp-cam", device="cpu", sides=(mid,), flip=False,
                                                normalise="max")))
    legacy = {"method": "sp-cam", "device": "cpu", "threshold": 0.5, "classes": "tags", "multi_scale": False,
              "sides": [mid]}
    _rewrite_meta(p, ("pseudo/sp-cam", "cams/sp-cam", "cams/cam"), legacy)
    p.set_settings(evidence=None)
    return Project(p.root)


def _rewrite_meta(p: Project, kinds, meta: dict) -> None:
    """Set the artifacts' meta in project.db as a store before the evidence settings wrote it."""
    import json
    import sqlite3
    con = sqlite3.connect(p.root / "project.db")
    with con:
        for kind in kinds:
            con.execute("UPDATE artifacts SET meta = ? WHERE kind = ?", (json.dumps(meta), kind))
    con.close()
