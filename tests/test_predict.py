"""Predicting new images: ``Segmenter`` (the project's model, set up once) and ``spn-napari predict``.

References: the labels a round (or the SPN's pseudo-labels) stored for the project's own images,
pseudo-labels made with the SPN's predicted classes, classifiers forced to known answers, and the
image decoder's own conversions. Bad inputs: one line naming the file or flag, exit 2, nothing
written for that input, the others still written and counted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spn_napari.data.images import as_rgb, load_image
from spn_napari.data.transforms import fit_to_canvas
from spn_napari.errors import SpnError
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
from spn_napari.labels import base_kind
from spn_napari.pipeline import run
from spn_napari.predict.export import label_palette
from spn_napari.predict.segmenter import Segmenter
from spn_napari.project.history import rollback
from spn_napari.project.kinds import round_labels
from spn_napari.project.store import Project
from spn_napari.rounds.refine import RoundConfig, run_round
from spn_napari.train import TrainConfig, train_spn

from conftest import assert_user_error, cli

FAST = RoundConfig(epochs=1, batch_size=4, device="cpu", scales=(48, 64))


@pytest.fixture(scope="module")
def _lite_project(tmp_path_factory, _sp_project) -> Path:
    """A lite0 project (its frozen encoder's maps cached in float16) with SP-CAM labels and one round;
    the evidence and the round's labels averaged over a cached side, an uncached one and their
    mirror images."""
    root = tmp_path_factory.mktemp("predict-lite") / "project"
    shutil.copytree(_sp_project, root)
    p = Project(root)
    run(train_spn(p, TrainConfig(epochs=1, batch_size=4, device="cpu", encoder="lite0", scales=(64, 96))))
    run(make_pseudo_labels(p, PseudoLabelConfig(device="cpu", sides=(80, 96), flip=True)))
    shutil.copytree(root, root.with_name("spn-only"))
    run(run_round(p, RoundConfig(epochs=1, batch_size=4, device="cpu", predict_sides=(64, 80), predict_flip=True)))
    return root


@pytest.fixture(scope="module")
def _nb_project(tmp_path_factory, demo_dir) -> Path:
    """The demo images as a project without a background class (every pixel one of its tags),
    with a 1-epoch SPN, the default (fused) labels and one round; "spn-only" beside it before the round."""
    from spn_napari.data.readers import read_dataset
    from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
    base = tmp_path_factory.mktemp("predict-nb")
    shutil.copytree(demo_dir, base / "data", ignore=shutil.ignore_patterns("masks"))
    p = Project.create(base / "project", read_dataset(base / "data"), background=False)
    run(compute_superpixels(p, SuperpixelConfig(n_segments=40), workers=1))
    run(train_spn(p, TrainConfig(epochs=1, batch_size=4, device="cpu", encoder="small")))
    run(make_pseudo_labels(p, PseudoLabelConfig(device="cpu")))
    shutil.copytree(p.root, base / "spn-only")
    run(run_round(p, FAST))
    return p.root


def _copy(src: Path, tmp_path: Path, name: str = "project") -> Project:
    shutil.copytree(src, tmp_path / name)
    return Project(tmp_path / name)


def _tag_names(p: Project, i: int) -> list[str]:
    return [p.classes[c] for c in p.images[i].tags]


# ---- a project's own images get the labels its model gave them ---------------------------------
@pytest.mark.parametrize("which", ["spn", "round", "lite0 spn", "lite0 round", "no background spn",
                                   "no background round"])
def test_predictions_equal_the_stored_labels(which, request):
    """With its tags, each project image is labelled exactly as the current model labelled it:
    the pseudo-labels before any round (superpixels recomputed with the project's SLIC settings,
    the views and normalisation its project.db records), the round's labels after one; lite0
    through its float16 feature cache, mirrored views too; in a project without a background
    class, each pixel one of the tags (the fused evidence)."""
    fixture = {"spn": "_labelled_project", "round": "_round_project"}.get(
        which, "_lite_project" if "lite0" in which else "_nb_project")
    root = request.getfixturevalue(fixture)
    if which.endswith(" spn"):
        root = root.with_name("spn-only")
    p = Project(root)
    kind = round_labels(1) if which.endswith("round") else base_kind(p)
    assert kind == ("pseudo/fused" if which == "no background spn" else "pseudo/sp-cam" if which.endswith("spn")
                    else kind)
    seg = Segmenter.from_project(root, device="cpu")
    assert seg.round == (1 if which.endswith("round") else None)
    assert seg.classes == p.classes and seg.colors == p.colors
    assert seg.has_background == ("no background" not in which) == p.has_background
    assert seg.cached == ("lite0" in which)
    if which.endswith("round"):  # the views the round recorded: lite0's asked for two sides, mirrored
        mirrored = which == "lite0 round"
        assert [list(v) for v in seg.views] == p.rounds()[-1]["config"]["views"] == p.artifact(kind)["meta"]["views"]
        assert any(m for _, m in seg.views) == mirrored and len(seg.views) == (4 if mirrored else 1)
    for i in range(len(p)):
        got = seg.predict(p.image(i), tags=_tag_names(p, i))
        assert got.dtype == np.uint8 and got.shape == p.image(i).shape[:2]
        np.testing.assert_array_equal(got, p.read(kind, i), err_msg=f"image {i}")


def test_round_zero_and_an_earlier_round_predict_with_their_own_model(_round_project, tmp_path):
    """--round 0 (and round 0 made current by a rollback) is the SPN giving round 0's labels;
    --round 1 stays round 1's DecoupledNet after the rollback."""
    p = _copy(_round_project, tmp_path)
    rollback(p, 0)
    current, r0, r1 = (Segmenter.from_project(p.root, round_no=r, device="cpu") for r in (None, 0, 1))
    assert (current.round, r0.round, r1.round) == (0, 0, 1) and r0.method == "sp-cam" and r1.method == "decoupled"
    for i in (0, 3, 7):
        img, tags = p.image(i), p.images[i].tags
        np.testing.assert_array_equal(current.predict(img, tags), p.read(round_labels(0), i))
        np.testing.assert_array_equal(r0.predict(img, tags), p.read(round_labels(0), i))
        np.testing.assert_array_equal(r1.predict(img, tags), p.read(round_labels(1), i))


def test_cam_method_gives_the_cam_pseudo_labels(labelled_project):
    spn = Segmenter.from_project(labelled_project.root, device="cpu")
    cam = Segmenter(model=spn.model, classes=spn.classes, colors=spn.colors, sides=spn.sides, method="cam",
                    superpixels=spn.superpixels, device="cpu")
    for i in range(len(labelled_project)):
        np.testing.assert_array_equal(cam.predict(labelled_project.image(i), labelled_project.images[i].tags),
                                      labelled_project.read("pseudo/cam", i))


# ---- without tags the model's classifier picks the classes ------------------------------------
def test_without_tags_the_spn_gives_its_predicted_class_pseudo_labels(labelled_project):
    """Before any round: what `pseudo-labels --classes predicted` stores, image for image."""
    p = labelled_project
    run(make_pseudo_labels(p, PseudoLabelConfig(classes="predicted", device="cpu")))
    p.reload()
    seg = Segmenter.from_project(p.root, device="cpu")
    for i in range(len(p)):
        np.testing.assert_array_equal(seg.predict(p.image(i)), p.read("pseudo/sp-cam", i), err_msg=f"image {i}")


def test_without_tags_the_decoupled_net_uses_its_classifier_above_one_half(_round_project):
    p = Project(_round_project)
    seg = Segmenter.from_project(p.root, device="cpu")
    net, side = seg.model, seg.sides[0]
    img = p.image(4)
    x, _, _ = fit_to_canvas(img, None, side)
    with torch.no_grad():  # reference: the frozen classification net by hand
        p5, _ = net.encoder.encode(x[None])
        ref = torch.sigmoid(net.cls(net.encoder.extra(p5).mean((2, 3))))[0].numpy()
    np.testing.assert_allclose(seg.class_probabilities(img), ref, rtol=1e-5, atol=1e-6)
    # force the classifier's answer: classes 0 and 2 for every image, whatever it shows
    with torch.no_grad():
        net.cls.weight.zero_()
        net.cls.bias.copy_(torch.tensor([6.0, -6.0, 6.0, -6.0]))
    for i in (1, 4, 6):
        want = seg.predict(p.image(i), tags=[0, 2])
        np.testing.assert_array_equal(seg.predict(p.image(i)), want)
        assert set(np.unique(want)) <= {0, 1, 3}
    with torch.no_grad():
        net.cls.bias.fill_(-6.0)  # nothing identified: all background
    assert not seg.predict(p.image(1)).any()


# ---- tags ---------------------------------------------------------------------------------------
def test_tags_by_name_any_case_or_by_index(_round_project):
    p = Project(_round_project)
    seg = Segmenter.from_project(p.root, device="cpu")
    i = next(i for i in range(len(p)) if len(p.images[i].tags) == 2)
    names, idx = _tag_names(p, i), list(p.images[i].tags)
    ref = p.read(round_labels(1), i)
    np.testing.assert_array_equal(seg.predict(p.image(i), idx), ref)
    np.testing.assert_array_equal(seg.predict(p.image(i), [n.upper() for n in reversed(names)]), ref)
    np.testing.assert_array_equal(seg.predict(p.image(i), [np.int64(idx[0]), names[1]]), ref)
    assert seg.class_indices(p.classes[1]) == [1]  # one name on its own
    assert not seg.predict(p.image(i), []).any()  # no tags: background only


@pytest.mark.parametrize("tag, needles", [("zebra", ["'zebra'", "not a class"]),
                                          ("background", ["'background'", "no tags"]),
                                          (9, ["tag 9", "0..3"]), (-1, ["tag -1"])])
def test_an_unknown_tag_is_one_line_naming_it(labelled_project, tag, needles):
    seg = Segmenter.from_project(labelled_project.root, device="cpu")
    with pytest.raises(SpnError) as exc:
        seg.predict(labelled_project.image(0), [labelled_project.classes[0], tag])
    msg = str(exc.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    assert all(c in msg for c in labelled_project.classes)  # the fix: the classes there are


# ---- any image layout ---------------------------------------------------------------------------
def test_arrays_are_converted_as_image_files_are(tmp_path):
    """as_rgb (what the napari dock hands the model) equals load_image of the same pixels saved."""
    rng = np.random.default_rng(0)
    arrays = {"gray.png": rng.integers(0, 256, (5, 7), dtype=np.uint8),
              "rgba.png": rng.integers(0, 256, (5, 7, 4), dtype=np.uint8),
              "rgb.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
              "deep.png": rng.integers(0, 65536, (5, 7), dtype=np.uint16),
              "unit.tif": rng.random((5, 7), dtype=np.float32),
              "wide.tif": rng.random((5, 7), dtype=np.float32) * 1000}
    for name, a in arrays.items():
        Image.fromarray(a).save(tmp_path / name)
        np.testing.assert_array_equal(as_rgb(a), load_image(tmp_path / name), err_msg=name)
    np.testing.assert_array_equal(as_rgb(arrays["gray.png"][..., None]), as_rgb(arrays["gray.png"]))
    with pytest.raises(ValueError, match=r"\(2, 5, 7\)"):
        as_rgb(np.zeros((2, 5, 7), np.uint8))


# ---- the command line -------------------------------------------------------------------------------
def _mixed_folder(p: Project, folder: Path) -> dict[str, Path]:
    """Project images and new sizes as PNG, JPEG, TIFF; RGBA, gray, 16-bit; and a text file."""
    folder.mkdir()
    img = [p.image(i) for i in range(4)]
    big = np.asarray(Image.fromarray(img[1]).resize((90, 70)))
    files = {"own": folder / "own.png", "big": folder / "big.jpg", "rgba": folder / "rgba.tif",
             "gray": folder / "gray.png", "deep": folder / "deep.tif"}
    Image.fromarray(img[0]).save(files["own"])
    Image.fromarray(big).save(files["big"], quality=90)
    Image.fromarray(np.dstack([img[2], np.full(img[2].shape[:2], 200, np.uint8)])).save(files["rgba"])
    Image.fromarray(img[3][:40, :50]).convert("L").save(files["gray"])
    Image.fromarray(img[3][..., 1].astype(np.uint16) * 257).save(files["deep"])
    (folder / "notes.txt").write_text("not an image, and not named like one: left alone\n")
    return files


def _read_mask(path: Path) -> np.ndarray:
    im = Image.open(path)
    assert im.mode == "P"
    return np.asarray(im)


def test_cli_predicts_a_folder_of_mixed_sizes_and_formats(labelled_project, tmp_path, capsys):
    p = labelled_project
    files = _mixed_folder(p, tmp_path / "in")
    code, _, err = cli(capsys, "predict", p.root, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu",
                       "--progress", "none")
    assert code == 0, err
    assert err.strip() == f"wrote 5 masks to {tmp_path / 'out'}"
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(f"{k}.png" for k in files)
    seg = Segmenter.from_project(p.root, device="cpu")
    palette = label_palette(p.colors)
    for key, path in files.items():
        image = load_image(path)
        im = Image.open(tmp_path / "out" / f"{key}.png")
        assert im.size == Image.open(path).size and im.getpalette()[:len(palette)] == palette
        np.testing.assert_array_equal(_read_mask(tmp_path / "out" / f"{key}.png"), seg.predict(image), err_msg=key)


def test_cli_tags_from_a_labels_csv_and_bad_inputs_are_skipped(_round_project, tmp_path, capsys):
    """Each image is segmented for its row's tags. A non-image, a folder without images, a missing
    path, an image without a row and a row naming an unknown class: one line each naming the file,
    nothing written for them; the others are written and the summary counts both; exit 2."""
    p = Project(_round_project)
    files = _mixed_folder(p, tmp_path / "in")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_text("this is text")
    csv = tmp_path / "tags.csv"
    csv.write_text("image,labels\n"
                   f"own.png,{';'.join(_tag_names(p, 0))}\n"
                   f"big,{p.classes[1].upper()}\n"
                   f"rgba,{p.classes[0]};zebra\n"
                   "gray,\n"
                   "someone_else.png,whatever\n")  # a row for an image not predicted here: fine
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", p.root, files["own"], tmp_path / "in", tmp_path / "empty",
                       tmp_path / "broken.png", tmp_path / "nowhere", "--out", out, "--tags", csv, "--device", "cpu",
                       "--progress", "none")
    assert code == 2, err
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("spn-napari: error: ")]
    assert len(errors) == 5 and len(lines) == 6 and "Traceback" not in err, err
    for needle in (f"{csv}:4 (rgba.tif)", "'zebra'", str(files["deep"]), f"no row in {csv}",
                   str(tmp_path / "empty"), "no image files", str(tmp_path / "broken.png"),
                   str(tmp_path / "nowhere"), "no such file"):
        assert any(needle in ln for ln in errors), (needle, err)
    assert lines[-1] == f"wrote 3 masks to {out} (5 inputs skipped: see above)"
    assert sorted(f.name for f in out.iterdir()) == ["big.png", "gray.png", "own.png"]
    seg = Segmenter.from_project(p.root, device="cpu")
    np.testing.assert_array_equal(_read_mask(out / "own.png"), p.read(round_labels(1), 0))  # its own labels
    np.testing.assert_array_equal(_read_mask(out / "big.png"), seg.predict(load_image(files["big"]), [1]))
    assert not _read_mask(out / "gray.png").any()  # no tags: background only


@pytest.mark.parametrize("case", ["round", "untrained", "tags file", "out is a file", "bad header"])
def test_cli_whole_command_errors_write_nothing(case, labelled_project, sp_project, tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(labelled_project.image(0)).save(img)
    out, root, extra = tmp_path / "out", labelled_project.root, []
    if case == "round":
        extra, needles = ["--round", "3"], ["--round 3", "no round 3", "rounds: none yet", "history"]
    elif case == "untrained":
        root, needles = sp_project.root, [str(sp_project.root), "train-spn"]
    elif case == "tags file":
        extra, needles = ["--tags", tmp_path / "missing.csv"], [str(tmp_path / "missing.csv"), "no such file"]
    elif case == "bad header":
        (tmp_path / "t.csv").write_text("file;tags\na.png;x\n")
        extra, needles = ["--tags", tmp_path / "t.csv"], [f"{tmp_path / 't.csv'}:1", "image,labels"]
    else:
        out.write_text("")
        needles = ["--out", str(out), "is a file"]
    code, _, err = cli(capsys, "predict", root, img, "--out", out, "--device", "cpu", "--progress", "none", *extra)
    assert_user_error(code, err, *needles)
    assert not out.is_dir()


def test_cli_progress_jsonl_names_each_mask(labelled_project, tmp_path, capsys):
    import json
    img = tmp_path / "a.png"
    Image.fromarray(labelled_project.image(2)).save(img)
    code, out, err = cli(capsys, "predict", labelled_project.root, img, tmp_path / "b.png", "--out", tmp_path / "o",
                         "--device", "cpu", "--progress", "jsonl")
    events = [json.loads(ln) for ln in out.splitlines()]
    assert code == 2 and [e["event"] for e in events] == ["image", "skipped", "done"], err
    assert events[0]["mask"] == str(tmp_path / "o" / "a.png") and events[0]["step"] == 1 and events[0]["total"] == 2
    assert str(tmp_path / "b.png") in events[1]["error"]
    assert (events[2]["written"], events[2]["skipped"]) == (1, 1)


def test_single_tag_photos_confidence_is_the_classifiers_agreement(_nb_project):
    """Without background a one-tag photo's labels are certain, so its round uncertainty is
    1 - the classifier's probability of its tag (the dock's confidence column), not 0."""
    from spn_napari.project.history import round_uncertainty
    p = Project(_nb_project)
    seg = Segmenter.from_project(p.root, device="cpu")
    unc = round_uncertainty(p)
    single = [i for i in range(len(p)) if len(p.images[i].tags) == 1]
    assert single, "the demo has one-tag photos"
    for i in single:
        agreement = seg.class_probabilities(p.image(i))[p.images[i].tags[0]]
        assert unc[i] == pytest.approx(1.0 - agreement, abs=2e-5), f"image {i}"
    assert len({round(float(unc[i]), 5) for i in single}) > 1
