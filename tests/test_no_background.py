"""Projects without a background class (``init --no-background``, e.g. MSRC-21): import and its
refusals, pseudo-labels and their uncertainty, DecoupledNet labels, evaluation (no background row,
mean class accuracy), round metrics, corrections, export, and the annotator's class lists — each on
a hand-built 3-image data set against hand-computed answers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from spn_napari.errors import DatasetError
from spn_napari.evaluate import evaluate_labels
from spn_napari.evidence import pseudo_labels as inference
from spn_napari.pipeline import init_project, run
from spn_napari.project.db import DB_NAME
from spn_napari.project.format import FORMAT_VERSION
from spn_napari.project.store import Project

from conftest import assert_user_error, cli

H, W = 6, 8
CLASSES = ("sky", "grass", "cow")  # values 1, 2, 3


def _masks() -> dict[str, np.ndarray]:
    a = np.full((H, W), 2, np.uint8)  # sky over grass
    a[:2] = 1
    a[5, 7] = 255
    b = np.full((H, W), 2, np.uint8)  # grass with a cow block
    b[2:4, 2:6] = 3
    c = np.ones((H, W), np.uint8)  # sky only
    c[0, 0] = 255
    return {"im_a": a, "im_b": b, "im_c": c}


TAGS = {"im_a": "sky;grass", "im_b": "grass;cow", "im_c": "sky"}


def write_dataset(root: Path, masks: dict[str, np.ndarray] | None = None) -> Path:
    """A generic-layout data set whose masks hold 1..3 and 255 (no 0) unless ``masks`` says otherwise."""
    masks = masks or _masks()
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "labels.csv").write_text("image,labels\n" + "".join(f"{n}.png,{t}\n" for n, t in TAGS.items()))
    rng = np.random.default_rng(0)
    for name, mask in masks.items():
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


@pytest.fixture
def nb_project(tmp_path) -> Project:
    return init_project(tmp_path / "project", write_dataset(tmp_path / "data"), background=False)


# ---------------------------------------------------------------- import

def test_init_no_background_records_it(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    code, _, err = cli(capsys, "init", tmp_path / "p", "--from", data, "--no-background", "--progress", "none")
    assert code == 0, err
    assert "no background class" in err
    with sqlite3.connect(tmp_path / "p" / DB_NAME) as db:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    assert meta["background"] is False and meta["format_version"] == FORMAT_VERSION
    p = Project(tmp_path / "p")
    assert not p.has_background and p.label_names() == list(CLASSES)
    np.testing.assert_array_equal(p.ground_truth(1), _masks()["im_b"])
    code, _, err = cli(capsys, "init", tmp_path / "q", "--from", data, "--progress", "none")
    assert code == 0 and Project(tmp_path / "q").has_background  # the default


def test_init_no_background_refuses_a_mask_with_value_0(tmp_path, capsys):
    masks = _masks()
    masks["im_b"][0, :3] = 0
    data = write_dataset(tmp_path / "data", masks)
    code, _, err = cli(capsys, "init", tmp_path / "p", "--from", data, "--no-background", "--progress", "none")
    assert_user_error(code, err, str(data / "masks" / "im_b.png"), "value 0 (background)", "3 pixels",
                      "--no-background", "255 (void)")
    assert not (tmp_path / "p").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind
    with pytest.raises(DatasetError, match="im_b.png: value 0"):
        init_project(tmp_path / "p", data, background=False)
    assert Project.create(tmp_path / "p", _read(data)).has_background  # with background: fine


def _read(data: Path):
    from spn_napari.data.readers import read_dataset
    return read_dataset(data)


# ---------------------------------------------------------------- pseudo-labels (SPN stubbed)

# SP-CAM scores of each row-superpixel (6 per image; columns sky, grass, cow):
SCORES = {
    # sky norm [1, .75, .5, 0, .25, 0], grass norm [.5, .6, .9, 1, .2, 1]; cow is not a tag
    0: np.array([[4, 5, 99], [3, 6, 99], [2, 9, 99], [0, 10, 99], [1, 2, 99], [0, 10, 99]], np.float32),
    # grass has no positive score: cow everywhere
    1: np.array([[9, -1, 1], [9, -1, 2], [9, -1, 3], [9, -1, 4], [9, -1, 5], [9, -1, 6]], np.float32),
    # one tag (sky), negative evidence: still sky everywhere
    2: -np.ones((6, 3), np.float32),
}
ROWS = np.repeat(np.arange(H), W).reshape(H, W).astype(np.int32)  # superpixel = image row


@pytest.fixture
def labelled(nb_project, monkeypatch) -> Project:
    """nb_project with row superpixels, a stub SPN and SP-CAM pseudo-labels from SCORES."""
    with nb_project.writer("superpixels") as w:
        for i in range(len(nb_project)):
            w.put(i, ROWS)
    nb_project.commit_file("spn", b"stub", suffix=".pt", depends=("superpixels",))
    calls = iter(range(len(nb_project)))

    def no_feature_cache(*args):  # a generator, like the real one: no cached encoder maps
        return {}
        yield

    monkeypatch.setattr(inference, "load_spn", lambda project, device: (
        SimpleNamespace(encoder=None), {"scales": [W], "config": {"encoder": "small"}}))
    monkeypatch.setattr(inference, "feature_cache", no_feature_cache, raising=False)
    monkeypatch.setattr(inference, "compute_descriptors", lambda *a, **kw: iter(()))  # a stub SPN has no features
    monkeypatch.setattr(inference, "image_evidence", lambda *a, **kw: inference.Evidence(
        sp_scores=SCORES[next(calls)], cam=np.zeros((3, 2, 2), np.float32), probs=np.zeros(3, np.float32)))
    run(inference.make_pseudo_labels(nb_project, inference.PseudoLabelConfig(device="cpu", method="sp-cam")))
    return nb_project


def test_pseudo_labels_and_unsure_pixels_without_background(labelled):
    from spn_napari.labels import unsure_pixels
    np.testing.assert_array_equal(labelled.read("pseudo/sp-cam", 0)[:, 0], [1, 1, 2, 2, 1, 2])  # row 4: no 0
    np.testing.assert_array_equal(labelled.read("pseudo/sp-cam", 1), np.full((H, W), 3))
    np.testing.assert_array_equal(labelled.read("pseudo/sp-cam", 2), np.full((H, W), 1))
    # best - second best normalised score by row: .5, .15, .4, 1, .05, 1
    np.testing.assert_array_equal(unsure_pixels(labelled, 0, "sp-cam", 0.2)[:, 0], [0, 1, 0, 0, 1, 0])
    assert not unsure_pixels(labelled, 1, "sp-cam", 0.2).any()  # grass has no positive score: never second
    assert not unsure_pixels(labelled, 2, "sp-cam", 0.9).any()  # one tag: sure


# ---------------------------------------------------------------- evaluation

def _hand_predictions() -> list[np.ndarray]:
    a = np.full((H, W), 2, np.uint8)
    a[:3] = 1  # row 2's 8 grass pixels predicted sky
    b = np.full((H, W), 2, np.uint8)
    b[2:4, 3:6] = 3  # 6 of the 8 cow pixels
    b[2:4, 2] = 0  # the other 2: "no label", an error for cow
    return [a, b, np.ones((H, W), np.uint8)]


# rows = truth, columns = prediction (0..3), 255 skipped:
#   sky   16 (a) + 47 (c) -> sky                        [0, 63,  0, 0]
#   grass 31 (a): 8 sky, 23 grass; 40 (b) grass         [0,  8, 63, 0]
#   cow    8 (b): 2 "no label", 6 cow                    [2,  0,  0, 6]
# columns: 2, 71, 63, 6
IOU = {"sky": 63 / 71, "grass": 63 / 71, "cow": 6 / 8}
ACC = {"sky": 1.0, "grass": 63 / 71, "cow": 6 / 8}


def test_evaluate_has_no_background_row_and_a_mean_class_accuracy(labelled, capsys):
    with labelled.writer("pseudo/cam") as w:
        for i, pred in enumerate(_hand_predictions()):
            w.put(i, pred)
    r = evaluate_labels(labelled, "pseudo/cam")
    assert list(r["per_class"]) == list(CLASSES)
    for name in CLASSES:
        assert r["per_class"][name] == pytest.approx(IOU[name], rel=1e-12)
    assert r["miou"] == pytest.approx(sum(IOU.values()) / 3, rel=1e-12)
    assert r["mean_class_accuracy"] == pytest.approx(sum(ACC.values()) / 3, rel=1e-12)
    assert r["pixel_accuracy"] == pytest.approx(132 / 142, rel=1e-12)
    code, out, err = cli(capsys, "evaluate", labelled.root, "--method", "cam", "--json")
    assert code == 0, err
    j = json.loads(out)
    assert {"method", "labels", "miou", "per_class", "pixel_accuracy", "mean_class_accuracy", "images"} <= set(j)
    assert j["mean_class_accuracy"] == pytest.approx(r["mean_class_accuracy"]) and j["images"] == 3
    code, out, _ = cli(capsys, "evaluate", labelled.root, "--method", "cam")
    assert code == 0 and f"mean class accuracy {sum(ACC.values()) / 3:.3f}" in out and "background" not in out


def test_evaluate_keeps_the_background_row_with_background(tmp_path, capsys):
    """The same masks and predictions in a project with background: label 0 is a class (IoU 0: 2
    false positives, no truth), counted in mIoU; not in the class accuracy (not in the truth)."""
    p = init_project(tmp_path / "p", write_dataset(tmp_path / "data"))
    with p.writer("pseudo/cam") as w:
        for i, pred in enumerate(_hand_predictions()):
            w.put(i, pred)
    r = evaluate_labels(p, "pseudo/cam")
    assert list(r["per_class"]) == ["background", *CLASSES] and r["per_class"]["background"] == 0.0
    assert r["miou"] == pytest.approx(sum(IOU.values()) / 4, rel=1e-12)
    assert r["mean_class_accuracy"] == pytest.approx(sum(ACC.values()) / 3, rel=1e-12)


def test_round_metrics_without_background(labelled):
    from spn_napari.evaluate import round_metrics
    from spn_napari.project.kinds import round_labels
    with labelled.writer(round_labels(0)) as w:
        for i, pred in enumerate(_hand_predictions()):
            w.put(i, pred)
    fix, set_mask = np.zeros((H, W), np.uint8), np.zeros((H, W), bool)
    fix[2:4, 2], set_mask[2:4, 2] = 3, True  # a person paints the 2 "no label" pixels cow
    labelled.save_correction(1, fix, set_mask)
    m = round_metrics(labelled, 0, None)
    assert set(m) == {"corrected", "miou", "per_class", "miou_unreviewed", "miou_model", "mean_class_accuracy",
                      "mean_class_accuracy_model"}
    assert m["mean_class_accuracy_model"] == pytest.approx(sum(ACC.values()) / 3, rel=1e-12)
    assert list(m["per_class"]) == list(CLASSES) and m["corrected"] == 1
    assert m["per_class"]["cow"] == pytest.approx(1.0)  # 8/8 with the correction
    assert m["miou"] == pytest.approx((63 / 71 + 63 / 71 + 1) / 3, rel=1e-12)
    assert m["miou_model"] == pytest.approx(sum(IOU.values()) / 3, rel=1e-12)
    # images a and c only: sky 63/(63+71-63), grass 23/(31+23-23); cow in neither truth nor labels
    assert m["miou_unreviewed"] == pytest.approx((63 / 71 + 23 / 31) / 2, rel=1e-12)


# ---------------------------------------------------------------- DecoupledNet labels

class FakeNet:
    """segment(): rows (background, class a, class b) = (.5, .3, .2) left half, (.1, .3, .6) right."""

    def segment(self, x, classes):
        side = x.shape[-1]
        if not classes:
            return torch.ones(1, side, side)
        out = torch.empty(3, side, side)
        out[:, :, : side // 2] = torch.tensor([0.5, 0.3, 0.2])[:, None, None]
        out[:, :, side // 2:] = torch.tensor([0.1, 0.3, 0.6])[:, None, None]
        return out


def test_predict_labels_drops_the_background_row():
    from spn_napari.rounds.predict import predict_labels
    image = np.zeros((H, W, 3), np.uint8)
    left, right = np.s_[:, : W // 2], np.s_[:, W // 2:]
    labels, u = predict_labels(FakeNet(), image, [2, 0], W, torch.device("cpu"))
    assert (labels[left] == 0).all() and (labels[right] == 3).all()  # background, cow
    assert u == pytest.approx(1 - (0.5 + 0.6) / 2, abs=1e-6)
    labels, u = predict_labels(FakeNet(), image, [2, 0], W, torch.device("cpu"), background=False)
    assert (labels[left] == 1).all() and (labels[right] == 3).all()  # sky (.3/.5), cow (.6/.9)
    assert u == pytest.approx(1 - (0.6 + 2 / 3) / 2, abs=1e-6)
    labels, u = predict_labels(FakeNet(), image, [], W, torch.device("cpu"), background=False)
    assert (labels == 0).all() and u == pytest.approx(0.0)  # no class possible: "no label"


def test_predict_labels_flips_a_mirrored_view_back_and_averages_views():
    """A mirrored view's maps flip back: the halves swap. Averaged with the plain view every pixel
    is (.3, .3, .4) — cow, winning probability .4."""
    from spn_napari.rounds.predict import predict_labels
    image = np.zeros((H, H, 3), np.uint8)  # square: the canvas is the image
    left, right = np.s_[:, : H // 2], np.s_[:, H // 2:]
    labels, _ = predict_labels(FakeNet(), image, [2, 0], [(H, True)], torch.device("cpu"))
    assert (labels[left] == 3).all() and (labels[right] == 0).all()
    labels, u = predict_labels(FakeNet(), image, [2, 0], [(H, False), (H, True)], torch.device("cpu"))
    assert (labels == 3).all() and u == pytest.approx(0.6, abs=1e-6)


def test_round_views_default_to_the_middle_training_side():
    from spn_napari.rounds.predict import round_views
    scales = (208, 256, 304, 336, 384, 432)
    assert round_views(scales) == [(336, False)]
    assert round_views(scales, sides=(512, 416), flip=True) == [(512, False), (512, True), (416, False), (416, True)]
