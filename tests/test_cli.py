"""The command line: the whole round-0 pipeline, JSON outputs, exports, and every bad input.

Bad input must give exit status 2, one line on stderr naming the file or flag, no traceback, and
leave an existing project byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spn_napari.cli import main
from spn_napari.project.store import Project

from conftest import assert_user_error, cli, tree_state


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _sp_project) -> Path:
    """A project with a 1-epoch SPN and SP-CAM + CAM pseudo-labels, made through the CLI."""
    root = tmp_path_factory.mktemp("cli") / "project"
    shutil.copytree(_sp_project, root)
    for args in (["train-spn", root, "--epochs", "1", "--batch-size", "4", "--progress", "none"],
                 ["pseudo-labels", root, "--method", "cam", "--progress", "none"],
                 ["pseudo-labels", root, "--method", "sp-cam", "--progress", "none"]):
        assert main([str(a) for a in args]) == 0
    return root


def test_pipeline_outputs_are_consistent(trained, capsys):
    project = Project(trained)
    for method in ("sp-cam", "cam"):
        code, out, _ = cli(capsys, "evaluate", trained, "--method", method, "--json")
        assert code == 0
        result = json.loads(out)
        assert result["method"] == method and set(result["per_class"]) == {"background", *project.classes}
        # recompute the mIoU by hand from the stored labels and ground truth
        n = len(project.classes) + 1
        cm = np.zeros((n, n), np.int64)
        for i in range(len(project)):
            gt, pred = project.ground_truth(i).ravel(), project.read(f"pseudo/{method}", i).ravel()
            keep = gt != 255
            np.add.at(cm, (gt[keep], pred[keep]), 1)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        assert result["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]))
        for i, info in enumerate(project.images):  # labels use only the image's tags
            assert set(np.unique(project.read(f"pseudo/{method}", i))) <= {0, *(t + 1 for t in info.tags)}


def test_progress_jsonl_is_one_event_per_line(trained, tmp_path, capsys):
    root = tmp_path / "p"
    shutil.copytree(trained, root)
    code, out, _ = cli(capsys, "train-spn", root, "--epochs", "2", "--batch-size", "5", "--progress", "jsonl")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events if e["event"] != "features"]  # the encoder's cache comes first
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    assert all(np.isfinite(e["loss"]) for e in events if e["event"] == "step")
    # retraining replaced the SPN, so the pseudo-labels made from the old one are gone
    assert Project(root).artifact("pseudo/sp-cam") is None


@pytest.mark.parametrize("fmt", ["png", "voc", "zarr"])
def test_export_matches_the_stored_labels(trained, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "export", trained, out, "--format", fmt)
    assert code == 0
    project = Project(trained)
    for i, info in enumerate(project.images):
        want = project.read("pseudo/sp-cam", i)
        if fmt == "zarr":
            import zarr
            got = zarr.open_group(out, mode="r")[info.name][...]
        else:
            folder = out / "SegmentationClass" if fmt == "voc" else out
            im = Image.open(folder / f"{info.name}.png")
            assert im.mode == "P"
            got = np.asarray(im)
        np.testing.assert_array_equal(got, want)
    if fmt == "voc":
        assert (out / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == \
            [im.name for im in project.images]


def test_python_m_entry_point_and_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "spn_napari", "evaluate", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and str(tmp_path) in r.stderr


# ---- bad input -----------------------------------------------------------------------------
def _copy(demo_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(demo_dir, dst)
    return dst


def _first_image(ds: Path) -> Path:
    return sorted((ds / "images").iterdir())[0]


BAD_DATASETS = {
    "missing folder": (lambda ds: shutil.rmtree(ds), ["ds", "no such folder"]),
    "empty folder": (lambda ds: (shutil.rmtree(ds), ds.mkdir()), ["ds", "empty"]),
    "missing classes.txt": (lambda ds: (ds / "classes.txt").unlink(), ["classes.txt"]),
    "empty classes.txt": (lambda ds: (ds / "classes.txt").write_text("\n"), ["classes.txt"]),
    "duplicate class": (lambda ds: (ds / "classes.txt").write_text("bird\nfish\nbird\n"), ["classes.txt:3"]),
    "unknown tag": (lambda ds: (ds / "labels.csv").write_text(
        (ds / "labels.csv").read_text().replace(";", ";zebra;", 1).replace(",", ",zebra;", 2)
        .replace("image,zebra;labels", "image,labels")), ["labels.csv", "zebra"]),
    "no header": (lambda ds: (ds / "labels.csv").write_text(
        "\n".join((ds / "labels.csv").read_text().splitlines()[1:]) + "\n"), ["labels.csv", "image,labels"]),
    "not utf-8": (lambda ds: (ds / "labels.csv").write_bytes(
        (ds / "labels.csv").read_bytes() + b"demo_00001,b\xe9\xe9\n"), ["labels.csv", "UTF-8"]),
    "missing image": (lambda ds: (ds / "labels.csv").write_text(
        (ds / "labels.csv").read_text() + "ghost,bird\n"), ["labels.csv:", "ghost"]),
    "truncated image": (lambda ds: _first_image(ds).write_bytes(_first_image(ds).read_bytes()[:80]),
                        ["demo_00000.png"]),
    "non-image file": (lambda ds: _first_image(ds).write_text("hello"), ["demo_00000.png"]),
    "text file in images/": (lambda ds: (ds / "images" / "notes.txt").write_text("x"), ["notes.txt"]),
    "mask of wrong size": (lambda ds: Image.new("L", (7, 5)).save(ds / "masks" / "demo_00000.png"),
                           ["demo_00000.png"]),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_bad_dataset_is_one_clear_line(case, demo_dir, tmp_path, capsys):
    ds = _copy(demo_dir, tmp_path)
    mutate, needles = BAD_DATASETS[case]
    mutate(ds)
    code, _, err = cli(capsys, "init", tmp_path / "project", "--from", ds)
    assert_user_error(code, err, *needles)
    assert not (tmp_path / "project").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gray_rgba_palette_16bit_images_are_accepted(demo_dir, tmp_path, capsys):
    ds = _copy(demo_dir, tmp_path)
    files = sorted((ds / "images").iterdir())
    rgb = [np.asarray(Image.open(f).convert("RGB")) for f in files[:4]]
    Image.fromarray(rgb[0]).convert("L").save(files[0])
    Image.fromarray(rgb[1]).convert("RGBA").save(files[1])
    Image.fromarray(rgb[2]).convert("P").save(files[2])
    Image.fromarray(rgb[3][..., 0].astype(np.uint16) * 257).save(files[3])
    code, _, err = cli(capsys, "init", tmp_path / "project", "--from", ds, "--progress", "none")
    assert code == 0, err
    p = Project(tmp_path / "project")
    assert all(p.image(i).shape == rgb[i].shape and p.image(i).dtype == np.uint8 for i in range(4))
    np.testing.assert_array_equal(p.image(1), rgb[1])  # opaque RGBA = its RGB
    np.testing.assert_array_equal(p.image(3)[..., 0], rgb[3][..., 0])  # 16-bit scaled back to 8


def test_init_onto_existing_project(trained, demo_dir, capsys):
    before = tree_state(trained)
    code, _, err = cli(capsys, "init", trained, "--from", demo_dir)
    assert_user_error(code, err, str(trained), "already exists")
    assert tree_state(trained) == before


@pytest.mark.parametrize("command", [["superpixels"], ["train-spn"], ["pseudo-labels"], ["evaluate"],
                                     ["export", "OUT"]])
def test_command_on_a_folder_that_is_not_a_project(command, tmp_path, capsys):
    args = [command[0], tmp_path] + [tmp_path / a for a in command[1:]]
    code, _, err = cli(capsys, *args)
    assert_user_error(code, err, str(tmp_path), "not an spn-napari project")


@pytest.mark.parametrize("command", ["pseudo-labels", "evaluate", "export"])
def test_unknown_method(trained, command, tmp_path, capsys):
    before = tree_state(trained)
    extra = [tmp_path / "out"] if command == "export" else []
    code, _, err = cli(capsys, command, trained, *extra, "--method", "grabcut")
    assert_user_error(code, err, "--method grabcut", "sp-cam")
    assert tree_state(trained) == before


@pytest.mark.parametrize("content", ["list", "bytes", "strings"])
def test_weights_file_that_is_not_a_state_dict(trained, tmp_path, capsys, content):
    path = tmp_path / "vgg16.pth"
    if content == "bytes":
        path.write_bytes(b"\x00not a zip at all")
    else:
        torch.save([1, 2, 3] if content == "list" else {"a": "b"}, path)
    before = tree_state(trained)
    code, _, err = cli(capsys, "train-spn", trained, "--weights", path, "--epochs", "1", "--progress", "none")
    assert_user_error(code, err, str(path), "state dict")
    assert tree_state(trained) == before


def test_steps_out_of_order_name_the_missing_step(demo_dir, tmp_path, capsys):
    code, _, _ = cli(capsys, "init", tmp_path / "p", "--from", demo_dir, "--progress", "none")
    assert code == 0
    code, _, err = cli(capsys, "train-spn", tmp_path / "p")
    assert_user_error(code, err, "superpixels")
    code, _, err = cli(capsys, "evaluate", tmp_path / "p")
    assert_user_error(code, err, "no pseudo-labels", "spn-napari pseudo-labels")


def test_demo_runs_the_whole_pipeline_and_reports_every_method(tmp_path, capsys, monkeypatch):
    from spn_napari.evaluate import evaluate_labels
    args = ("demo", tmp_path / "demo", "--n", "6", "--size", "64", "--epochs", "1", "--round-epochs", "1",
            "--progress", "none")
    code, out, err = cli(capsys, *args, "--results", tmp_path / "results" / "demo.json")
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    # --results: the same JSON again where the README's demo table is copied from
    assert json.loads((tmp_path / "results" / "demo.json").read_text()) == summary
    assert summary["settings"] == {"n": 6, "size": 64, "epochs": 1, "round_epochs": 1, "seed": 0, "encoder": "small"}
    project = Project(summary["project"])
    for method, kind in (("cam", "pseudo/cam"), ("sp-cam", "pseudo/sp-cam"), ("sp-cam+dn", "round/1/labels")):
        assert summary["methods"][method]["miou"] == pytest.approx(evaluate_labels(project, kind)["miou"])
        assert method in out
    # a second run finds rounds in the project and recomputes nothing; without a display,
    # --open says so in one line instead of opening napari
    before = tree_state(project.root)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out2, err = cli(capsys, *args, "--open")
    assert code == 0 and "nothing was recomputed" in err
    assert "no display here" in err and str(project.root) in err
    assert tree_state(project.root) == before and "sp-cam+dn" in out2


@pytest.mark.parametrize("scales", ["abc", "16,64", ","])
def test_bad_scales(trained, capsys, scales):
    before = tree_state(trained)
    code, _, err = cli(capsys, "train-spn", trained, "--scales", scales, "--progress", "none")
    assert_user_error(code, err, f"--scales {scales}")
    assert tree_state(trained) == before


def test_scales_reach_training(sp_project, capsys):
    code, out, err = cli(capsys, "train-spn", sp_project.root, "--epochs", "1", "--scales", "64,48",
                         "--progress", "jsonl")
    assert code == 0, err
    start = next(e for e in map(json.loads, out.splitlines()) if e["event"] == "start")
    assert start["scales"] == [48, 64]
