"""Corrections, review status, the targets a round trains on, rounds, rollback, simulate, and
their bad inputs (exit 2, one line, project unchanged)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from spn_napari.batches import FigureGroundSamples, MultiScaleBatches
from spn_napari.errors import SpnError
from spn_napari.labels import current_labels, training_target
from spn_napari.models.decoupled import IGNORE
from spn_napari.pipeline import run
from spn_napari.project.history import rollback
from spn_napari.project.kinds import round_labels
from spn_napari.project.store import Project
from spn_napari.review.simulate import SimulateConfig, simulate
from spn_napari.rounds.refine import RoundConfig, run_round

from conftest import assert_user_error, cli, read_line, tree_state

FAST = RoundConfig(epochs=1, batch_size=4, device="cpu", scales=(48, 64))


def _stroke(project: Project, i: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    info = project.images[i]
    labels = np.full((info.height, info.width), value, np.uint8)
    set_mask = np.zeros((info.height, info.width), bool)
    set_mask[5:20, 3:30] = True
    return labels, set_mask


# ---- corrections in the store ----------------------------------------------------------------
def test_corrections_and_review_survive_reopening(labelled_project):
    p = labelled_project
    labels, set_mask = _stroke(p, 2, 3)
    p.save_correction(2, labels, set_mask, review="reviewed")
    p.save_correction(2, labels, set_mask)  # replacing keeps one version and the status
    p.set_review(4, "rejected")
    q = Project(p.root)
    got_labels, got_set = q.correction(2)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_set, set_mask)
    assert (q.review(2), q.review(4), q.review(0)) == ("reviewed", "rejected", "unreviewed")
    assert q.correction(0) is None
    assert len([d for d in (p.root / "data.zarr" / "corrections").iterdir() if d.is_dir()]) == 1


def test_targets_corrected_pixels_override_and_rejected_images_are_left_out(labelled_project):
    p = labelled_project
    base = p.read("pseudo/sp-cam", 1)
    labels, set_mask = _stroke(p, 1, 4)
    p.save_correction(1, labels, set_mask, review="reviewed")
    p.set_review(3, "rejected")
    target = training_target(p, 1)
    np.testing.assert_array_equal(target[set_mask], 4)
    np.testing.assert_array_equal(target[~set_mask], base[~set_mask])
    assert training_target(p, 3) is None
    np.testing.assert_array_equal(training_target(p, 0), p.read("pseudo/sp-cam", 0))
    np.testing.assert_array_equal(current_labels(p, 1), target)

    # what the data loader hands the net: the class's figure (1), ground (0), padding ignored
    info = p.images[1]
    side = max(info.height, info.width)  # scale 1: the canvas holds the target pixel for pixel
    item = FigureGroundSamples(p, [(1, 3)], lambda proj, i: training_target(proj, i))[(0, side, False)]
    t = item["target"].numpy()
    np.testing.assert_array_equal(t[:info.height, :info.width], (target == 4).astype(np.int64))
    assert (t[info.height:] == IGNORE).all() and (t[:, info.width:] == IGNORE).all()
    assert item["mask"].tolist() == [0, 0, 0, 1]


def test_round_one_ignores_pixels_whose_evidence_is_near_the_threshold(labelled_project):
    """Against a per-pixel loop: ignored where the best normalised SP-CAM score of the image's tags
    is within the band of 50 % — never where a person set the pixel, never after round 1's base."""
    from spn_napari.evidence.maps import evidence_maps
    from spn_napari.rounds.refine import ensure_round0
    p = labelled_project
    labels, set_mask = _stroke(p, 1, 4)
    p.save_correction(1, labels, set_mask, review="reviewed")
    ensure_round0(p, "sp-cam")
    band, ignored = 0.2, 0
    for i in range(len(p)):
        ev, tags, base = evidence_maps(p, i, "sp-cam"), p.images[i].tags, p.read(round_labels(0), i)
        corr = p.correction(i)
        want = base.copy()
        for y in range(base.shape[0]):
            for x in range(base.shape[1]):
                best = max([ev[c, y, x] / ev[c].max() for c in tags if ev[c].max() > 0], default=0.0)
                best = max(best, 0.0)
                if corr is not None and corr[1][y, x]:
                    want[y, x] = corr[0][y, x]
                elif abs(best - 0.5) < band:
                    want[y, x] = IGNORE
        got = training_target(p, i, ignore_band=band)
        np.testing.assert_array_equal(got, want)
        ignored += int((got == IGNORE).sum())
        np.testing.assert_array_equal(training_target(p, i, ignore_band=0.0), current_labels(p, i))
    assert ignored > 0  # the reference is not trivially "nothing ignored"
    # the band belongs to round 0's base only (later bases are a DecoupledNet's own labels)
    np.testing.assert_array_equal(training_target(p, 0, "pseudo/sp-cam", ignore_band=band),
                                  p.read("pseudo/sp-cam", 0))


def test_a_round_trains_on_the_corrected_targets_and_skips_rejected_images(labelled_project, monkeypatch):
    p = labelled_project
    p.set_review(0, "rejected")
    labels, set_mask = _stroke(p, 1, 2)
    p.save_correction(1, labels, set_mask, review="reviewed")
    seen = []
    orig = FigureGroundSamples.__getitem__

    def spy(self, key):
        item = orig(self, key)
        seen.append((item["index"], int(item["mask"].argmax())))
        return item
    monkeypatch.setattr(FigureGroundSamples, "__getitem__", spy)
    run(run_round(p, dataclasses.replace(FAST, reviewed_weight=1)))  # weight 1: every sample once an epoch
    assert 0 not in {i for i, _ in seen}
    assert (1, 1) in seen  # class 2 (index 1) was painted on image 1, so it is trained on
    expected = {(i, c) for i, info in enumerate(p.images) if i != 0 for c in info.tags} | {(1, 1)}
    assert set(seen) == expected


def test_corrected_images_are_drawn_more_often_at_the_same_epoch_cost(labelled_project, monkeypatch):
    p = labelled_project
    labels, set_mask = _stroke(p, 1, p.images[1].tags[0] + 1)
    p.save_correction(1, labels, set_mask, review="reviewed")
    seen = []
    orig = FigureGroundSamples.__getitem__
    monkeypatch.setattr(FigureGroundSamples, "__getitem__", lambda self, key: seen.append(self.samples[key[0]][0])
                        or orig(self, key))
    epochs = 6
    run(run_round(p, dataclasses.replace(FAST, epochs=epochs, reviewed_weight=5)))
    distinct = sum(len(info.tags) for info in p.images)
    assert len(seen) == epochs * distinct  # an epoch costs what it did without weighting
    counts = np.bincount(seen, minlength=len(p))
    others = [counts[i] / len(p.images[i].tags) for i in range(len(p)) if i != 1]
    assert counts[1] / len(p.images[1].tags) > 2.5 * np.mean(others)


def test_by_pixels_a_person_s_pixels_weigh_more_and_no_image_is_drawn_more_often(labelled_project, monkeypatch):
    """--reviewed-weight-on pixels: every sample once an epoch (a photo with a few set pixels is
    not drawn more often), and each item's weight map is reviewed_weight exactly on the pixels a
    person set, placed on the canvas as the target is (a reference built with fit_mask_to_canvas),
    1 elsewhere; the loss is handed those weights."""
    from spn_napari.data.transforms import fit_mask_to_canvas
    from spn_napari.models import decoupled
    p = labelled_project
    labels, set_mask = _stroke(p, 1, p.images[1].tags[0] + 1)
    p.save_correction(1, labels, set_mask)
    seen, weights = [], []
    orig = FigureGroundSamples.__getitem__

    def spy(self, key):
        item = orig(self, key)
        j, side, flip = key
        i = self.samples[j][0]
        seen.append(i)
        person = set_mask if i == 1 else np.zeros((p.images[i].height, p.images[i].width), bool)
        want = torch.where(fit_mask_to_canvas(person.astype(np.uint8), side, flip=flip and self.flip, fill=0) == 1,
                           5.0, 1.0)
        torch.testing.assert_close(item["weight"], want)
        return item
    monkeypatch.setattr(FigureGroundSamples, "__getitem__", spy)
    loss = decoupled.decoupled_loss
    monkeypatch.setattr("spn_napari.rounds.refine.decoupled_loss",
                        lambda logits, target, weight=None: weights.append(weight) or loss(logits, target, weight))
    epochs = 2
    run(run_round(p, dataclasses.replace(FAST, epochs=epochs, reviewed_weight=5, reviewed_weight_on="pixels")))
    distinct = sum(len(info.tags) for info in p.images)
    assert len(seen) == epochs * distinct
    assert sorted(np.bincount(seen, minlength=len(p)) // epochs) == sorted(len(info.tags) for info in p.images)
    assert weights and all(w is not None for w in weights)
    assert any((w == 5.0).any() for w in weights)  # image 1's set pixels reached the loss
    with pytest.raises(SpnError, match="--reviewed-weight-on"):
        run(run_round(p, dataclasses.replace(FAST, reviewed_weight_on="superpixels")))


def test_auto_draws_reviewed_photos_more_often_and_weighs_the_set_pixels_of_partly_corrected_ones(
        labelled_project, monkeypatch):
    """The default, --reviewed-weight-on auto: a reviewed photo (fixed whole, or accepted) is drawn
    reviewed_weight times as often with weights of 1; an unreviewed photo with a correction (checked
    suggestions, a stroke) is drawn once an epoch with its set pixels weighing reviewed_weight;
    while every correction is reviewed, the round samples and weighs exactly as "images" does, and
    while none is, exactly as "pixels" does (so effort_curves.py's curves can be compared across the two)."""
    from spn_napari.rounds.refine import weighed_by_image
    assert RoundConfig().reviewed_weight_on == "auto"
    cfg = RoundConfig()
    corrected, reviews = [True, True, False, True], ["reviewed", "unreviewed", "reviewed", "rejected"]
    assert weighed_by_image(cfg, corrected, reviews) == [True, False, False, False]
    assert weighed_by_image(dataclasses.replace(cfg, reviewed_weight_on="images"), corrected, reviews) == corrected
    assert weighed_by_image(dataclasses.replace(cfg, reviewed_weight_on="pixels"), corrected, reviews) == [False] * 4

    p = labelled_project
    whole, stroke = _stroke(p, 1, p.images[1].tags[0] + 1)
    p.save_correction(1, whole, np.ones_like(stroke), review="reviewed")
    orig = FigureGroundSamples.__getitem__

    def draws(**change):
        seen = []

        def spy(self, key):
            item = orig(self, key)
            seen.append((self.samples[key[0]][0], item.get("weight")))
            return item
        monkeypatch.setattr(FigureGroundSamples, "__getitem__", spy)
        run(run_round(p, dataclasses.replace(FAST, epochs=6, reviewed_weight=5, **change)))
        rollback(p, 0)
        return seen
    auto, images = draws(), draws(reviewed_weight_on="images")
    assert [i for i, _ in auto] == [i for i, _ in images]  # the same draws, in the same order
    assert all(w is None for _, w in auto + images)  # and no weights: the loss is the same

    labels, set_mask = _stroke(p, 2, p.images[2].tags[0] + 1)
    p.save_correction(2, labels, set_mask)  # partly corrected, not reviewed
    seen = draws()
    counts = np.bincount([i for i, _ in seen], minlength=len(p)) / [len(info.tags) for info in p.images]
    others = np.mean([counts[i] for i in range(len(p)) if i not in (1, 2)])
    assert counts[1] > 2.5 * others and counts[2] < 2 * others
    for i, w in seen:
        assert w is not None and set(torch.unique(w).tolist()) <= ({1.0, 5.0} if i == 2 else {1.0})
    assert any(i == 2 and (w == 5.0).any() for i, w in seen)

    p.set_review(1, "unreviewed")  # no correction reviewed: auto samples and weighs exactly as "pixels"
    auto, pixels = draws(), draws(reviewed_weight_on="pixels")
    assert [i for i, _ in auto] == [i for i, _ in pixels]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(auto, pixels))


def test_sampler_epoch_size_draws_a_fresh_subset():
    s = MultiScaleBatches(20, batch_size=3, scales=(32,), seed=1, epoch_size=8)
    firsts = []
    for epoch in range(3):
        s.set_epoch(epoch)
        idx = [i for batch in s for i, _, _ in batch]
        assert len(idx) == len(set(idx)) == 8 and set(idx) <= set(range(20))
        firsts.append(tuple(idx))
    assert len(set(firsts)) == 3 and len(s) == 3


@pytest.mark.parametrize("n, world, sizes", [(7, 1, [3, 3]), (8, 1, [3, 3, 2]), (1, 1, [1]),
                                             (13, 2, [3, 3]), (14, 2, [3, 3]), (16, 2, [3, 3, 2])])
def test_sampler_never_ends_on_a_batch_of_one(n, world, sizes):
    """Batch norm cannot train on one sample (at a 1×1 grid it raises): a last batch that would give
    a rank a single sample is left out of the epoch, unless it is the only batch."""
    got = [len(b) for b in MultiScaleBatches(n, batch_size=3, scales=(32,), world=world, rank=0)]
    assert got == sizes


# ---- import-corrections ------------------------------------------------------------------------
def _write_mask(folder, name, array):
    folder.mkdir(exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(folder / f"{name}.png")


def test_import_corrections_from_a_mask_folder(labelled_project, tmp_path, capsys):
    p = labelled_project
    info = p.images[5]
    mask = np.full((info.height, info.width), 255, np.uint8)
    mask[:10, :10] = 1
    mask[10:12] = 0
    _write_mask(tmp_path / "fix", info.name, mask)
    code, _, err = cli(capsys, "import-corrections", p.root, tmp_path / "fix", "--progress", "none")
    assert code == 0, err
    q = Project(p.root)
    labels, set_mask = q.correction(5)
    np.testing.assert_array_equal(set_mask, mask != 255)
    np.testing.assert_array_equal(labels[set_mask], mask[set_mask])
    assert q.review(5) == "reviewed"


@pytest.mark.parametrize("case", ["wrong_size", "bad_value", "unknown_name", "empty"])
def test_bad_correction_masks(labelled_project, tmp_path, capsys, case):
    p = labelled_project
    good = p.images[0]
    folder = tmp_path / "fix"
    folder.mkdir()
    _write_mask(folder, good.name, np.zeros((good.height, good.width)))  # valid; must not be imported
    if case == "wrong_size":
        _write_mask(folder, p.images[1].name, np.zeros((good.height + 3, good.width)))
    elif case == "bad_value":
        _write_mask(folder, p.images[1].name, np.full((p.images[1].height, p.images[1].width), 9))
    elif case == "unknown_name":
        _write_mask(folder, "no_such_image", np.zeros((4, 4)))
    else:
        for f in folder.iterdir():
            f.unlink()
    before = tree_state(p.root)
    code, _, err = cli(capsys, "import-corrections", p.root, folder, "--progress", "none")
    needle = {"wrong_size": f"{p.images[1].name}.png", "bad_value": "value 9",
              "unknown_name": "no_such_image.png", "empty": str(folder)}[case]
    assert_user_error(code, err, needle)
    assert tree_state(p.root) == before


# ---- rounds, history, rollback -----------------------------------------------------------------
def test_round_records_everything_and_rollback_keeps_later_rounds(labelled_project, capsys):
    p = labelled_project
    code, _, err = cli(capsys, "round", p.root, "--epochs", "1", "--batch-size", "4", "--scales", "48,64",
                       "--device", "cpu", "--progress", "none")
    assert code == 0, err
    p.reload()
    r0, r1 = p.rounds()
    assert (r0["round"], r1["round"], r1["parent"], p.current_round()) == (0, 1, 0, 1)
    np.testing.assert_array_equal(p.read(round_labels(0), 3), p.read("pseudo/sp-cam", 3))
    assert p.file("round/1/model").exists()
    assert r1["seed"] == 0 and r1["config"]["epochs"] == 1 and len(p.round_uncertainty(1)) == len(p)
    m = r1["metrics"]
    for key in ("miou", "miou_unreviewed", "miou_model", "per_class", "changed", "corrected"):
        assert key in m
    # 'changed' is the share of pixels that differ from the parent round
    diff = sum(int((p.read(round_labels(1), i) != p.read(round_labels(0), i)).sum()) for i in range(len(p)))
    total = sum(im.height * im.width for im in p.images)
    assert m["changed"] == pytest.approx(diff / total)

    code, out, _ = cli(capsys, "history", p.root, "--json")
    assert json.loads(out)["current"] == 1
    code, _, err = cli(capsys, "rollback", p.root, "--to", "0")
    assert code == 0, err
    p.reload()
    assert p.current_round() == 0
    np.testing.assert_array_equal(current_labels(p, 2), p.read(round_labels(0), 2))
    run(run_round(p, FAST))
    assert [(e["round"], e["parent"]) for e in p.rounds()] == [(0, None), (1, 0), (2, 0)]
    assert p.file("round/1/model").exists()  # round 1 kept


def test_same_seed_gives_the_same_labels(_labelled_project, tmp_path):
    import shutil
    labels = []
    for name in ("a", "b"):
        shutil.copytree(_labelled_project, tmp_path / name)
        p = Project(tmp_path / name)
        run(run_round(p, FAST))
        labels.append([p.read(round_labels(1), i) for i in range(len(p))])
    for a, b in zip(*labels):
        np.testing.assert_array_equal(a, b)


def test_cancelled_round_leaves_the_project_as_it_was(labelled_project):
    p = labelled_project
    run(run_round(p, FAST))
    before = tree_state(p.root)
    events = run_round(p, RoundConfig(epochs=3, batch_size=2, device="cpu", scales=(48,)))
    for ev in events:
        if ev.event == "step" and ev.step == 2:
            break
    events.close()
    p.reload()
    assert [e["round"] for e in p.rounds()] == [0, 1] and p.current_round() == 1
    assert tree_state(p.root) == before


def test_sigterm_stops_a_round_and_keeps_the_last_one(labelled_project):
    p = labelled_project
    run(run_round(p, FAST))
    before = tree_state(p.root)
    proc = subprocess.Popen([sys.executable, "-m", "spn_napari", "round", str(p.root), "--epochs", "50",
                             "--batch-size", "2", "--device", "cpu", "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    while json.loads(read_line(proc, 300))["event"] != "step":  # a child that never steps fails, not hangs
        pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    p.reload()
    assert p.current_round() == 1
    assert tree_state(p.root) == before


# ---- bad input -------------------------------------------------------------------------------
def test_round_before_pseudo_labels(sp_project, capsys):
    before = tree_state(sp_project.root)
    code, _, err = cli(capsys, "round", sp_project.root, "--progress", "none")
    assert_user_error(code, err, "pseudo-labels", str(sp_project.root))
    assert tree_state(sp_project.root) == before


@pytest.mark.parametrize("band", ["0.5", "-0.1"])
def test_an_ignore_band_outside_0_to_half(labelled_project, capsys, band):
    before = tree_state(labelled_project.root)
    code, _, err = cli(capsys, "round", labelled_project.root, "--ignore-band", band, "--progress", "none")
    assert_user_error(code, err, f"--ignore-band {float(band)}", "0.5")
    assert tree_state(labelled_project.root) == before


def test_rollback_to_a_round_that_does_not_exist(labelled_project, capsys):
    run(run_round(labelled_project, FAST))
    before = tree_state(labelled_project.root)
    code, _, err = cli(capsys, "rollback", labelled_project.root, "--to", "7")
    assert_user_error(code, err, "round 7", "0, 1")
    assert tree_state(labelled_project.root) == before


def test_checkpoint_from_a_different_class_list(labelled_project, capsys):
    p = labelled_project
    path = p.file("spn")
    ckpt = torch.load(path, weights_only=True)
    ckpt["classes"] = ["cat", "dog", "cow", "emu"]
    torch.save(ckpt, path)
    before = tree_state(p.root)
    code, _, err = cli(capsys, "round", p.root, "--progress", "none")
    assert_user_error(code, err, str(path), "cat")
    assert tree_state(p.root) == before


def test_simulate_without_ground_truth(labelled_project, capsys):
    import sqlite3
    with sqlite3.connect(labelled_project.root / "project.db") as db:
        db.execute("UPDATE images SET has_gt = 0")
    before = tree_state(labelled_project.root)
    code, _, err = cli(capsys, "simulate", labelled_project.root, "--progress", "none")
    assert_user_error(code, err, "ground-truth")
    assert tree_state(labelled_project.root) == before


def test_out_of_gpu_memory_names_a_batch_size(labelled_project, monkeypatch, capsys):
    from spn_napari.models import decoupled

    def oom(self, *a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(decoupled.DecoupledNet, "forward", oom)
    code, _, err = cli(capsys, "round", labelled_project.root, "--batch-size", "8", "--progress", "none")
    assert_user_error(code, err, "out of GPU memory", "--batch-size 4")


# ---- simulate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("select", ["random", "uncertain"])
def test_simulate_corrects_a_share_per_round_on_a_copy(labelled_project, tmp_path, capsys, select):
    before = tree_state(labelled_project.root)
    code, out, err = cli(capsys, "simulate", labelled_project.root, "--rounds", "2", "--correct-fraction", "0.2",
                         "--select", select, "--epochs", "1", "--batch-size", "4", "--scales", "48,64",
                         "--work", tmp_path / "sim", "--json", "--progress", "none")
    assert code == 0, err
    res = json.loads(out)
    assert [r["corrected"] for r in res["rounds"]] == [2, 4]
    assert res["full_supervision_miou"] is not None and 0 <= res["start_miou"] <= 1
    sim = Project(tmp_path / "sim")
    corrected = [i for i in range(len(sim)) if sim.correction(i) is not None]
    assert len(corrected) == len(sim)  # the full-supervision run corrects every image
    assert tree_state(labelled_project.root) == before


def test_simulate_masks_gives_the_picked_images_their_exact_masks(labelled_project, tmp_path):
    """--annotator masks: the picked images' corrections are their whole true masks (255 left
    unset), the same images 'whole' would pick with the same seed, and no clicks are counted. Each
    round's row is also yielded as it lands (event 'sim_round'), as the result lists it."""
    cfg = SimulateConfig(rounds=2, correct_fraction=0.2, full_supervision=False, round_config=FAST)
    events = list(simulate(labelled_project, dataclasses.replace(cfg, annotator="masks"), work=tmp_path / "masks"))
    got = events[-1].data
    assert [e.data["row"] for e in events if e.event == "sim_round"] == got["rounds"] and len(got["rounds"]) == 2
    run(simulate(labelled_project, cfg, work=tmp_path / "whole"))
    masks, whole = Project(tmp_path / "masks"), Project(tmp_path / "whole")
    picked = [i for i in range(len(masks)) if masks.correction(i) is not None]
    assert picked == [i for i in range(len(whole)) if whole.correction(i) is not None] and len(picked) == 4
    for i in picked:
        labels, mask = masks.correction(i)
        gt = masks.ground_truth(i)
        np.testing.assert_array_equal(mask, gt != 255)
        np.testing.assert_array_equal(labels[gt != 255], gt[gt != 255])
    assert [(r["clicks"], r["looks"], r["corrected"]) for r in got["rounds"]] == [(0, 0, 2), (0, 0, 4)]
    assert got["annotator"] == "masks"


def test_simulate_uncertain_picks_the_least_certain_images(labelled_project, tmp_path):
    from spn_napari.review.simulate import _sp_cam_uncertainty
    p = labelled_project
    u = [_sp_cam_uncertainty(p, i, "sp-cam") for i in range(len(p))]
    events = simulate(p, SimulateConfig(rounds=1, correct_fraction=0.3, select="uncertain", full_supervision=False,
                                        round_config=FAST), work=tmp_path / "sim")
    run(events)
    sim = Project(tmp_path / "sim")
    picked = sorted(i for i in range(len(sim)) if sim.correction(i) is not None)
    assert picked == sorted(np.argsort(-np.asarray(u), kind="stable")[:3].tolist())


def test_simulate_rejects_a_bad_fraction(labelled_project):
    with pytest.raises(SpnError, match="correct-fraction"):
        run(simulate(labelled_project, SimulateConfig(correct_fraction=0)))


# ---- what export and evaluate read ---------------------------------------------------------------
def test_export_gives_the_current_labels_with_corrections(labelled_project, tmp_path, capsys):
    p = labelled_project
    run(run_round(p, FAST))
    labels, set_mask = _stroke(p, 0, 2)
    p.save_correction(0, labels, set_mask, review="reviewed")
    code, _, err = cli(capsys, "export", p.root, tmp_path / "out", "--format", "png")
    assert code == 0, err
    for i in (0, 1):
        got = np.asarray(Image.open(tmp_path / "out" / f"{p.images[i].name}.png"))
        expected = np.where(set_mask, labels, p.read(round_labels(1), i)) if i == 0 else p.read(round_labels(1), i)
        np.testing.assert_array_equal(got, expected)
    code, out, err = cli(capsys, "evaluate", p.root, "--round", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["miou"] == pytest.approx(p.rounds()[1]["metrics"]["miou_model"])
    code, _, err = cli(capsys, "evaluate", p.root, "--round", "9", "--json")
    assert_user_error(code, err, "round/9", "spn-napari round")


# ---- training states, empty epochs, painted classes ---------------------------------------------
def test_state_file_resumes_only_its_own_run_and_is_gone_after_the_commit(labelled_project, tmp_path):
    p = labelled_project
    state = tmp_path / "round.state.pt"
    cfg = dataclasses.replace(FAST, epochs=2, state=str(state))
    events = run_round(p, cfg)
    for ev in events:
        if ev.event == "epoch":
            break
    events.close()
    assert state.exists()
    with pytest.raises(SpnError, match="differs in"):  # another setting: not this run's state
        run(run_round(p, dataclasses.replace(cfg, lr=0.5)))
    evs = list(run_round(p, cfg))
    assert any(e.event == "resume" for e in evs)
    assert not state.exists() and state.with_name(state.name + ".done").exists()  # a later round starts afresh


def test_round_0_is_a_parent_whose_model_is_the_spn(labelled_project, _round_project, monkeypatch):
    """The next round grows from the SPN with no round yet and with round 0 current (round 0 is a
    parent, not "no parent"), and from the current round's DecoupledNet after that. The loaders
    are stopped at once, so nothing trains."""
    import spn_napari.rounds.refine as rounds
    from spn_napari.rounds.refine import ensure_round0

    class Loaded(Exception):
        pass
    asked = []

    def spy(name):
        def load(project, *args):  # (project, device) or (project, r, device)
            asked.append((name, *args[:-1]))
            raise Loaded
        return load
    monkeypatch.setattr(rounds, "load_spn", spy("spn"))
    monkeypatch.setattr(rounds, "load_decoupled", spy("decoupled"))
    p = labelled_project
    with pytest.raises(Loaded):
        next(run_round(p, FAST))  # no round yet
    ensure_round0(p, "sp-cam")
    assert p.current_round() == 0
    with pytest.raises(Loaded):
        next(run_round(p, FAST))  # round 0 current
    with pytest.raises(Loaded):
        next(run_round(Project(_round_project), FAST))  # round 1 current; nothing is written before loading
    assert asked == [("spn",), ("spn",), ("decoupled", 1)]


def test_no_complete_batch_is_a_clear_error():
    """One process keeps the last partial batch; several processes drop it, and may have none."""
    sampler = MultiScaleBatches(10, batch_size=8, scales=(32,), world=2, drop_last=True)
    from spn_napari.train import fit
    with pytest.raises(SpnError, match="smaller --batch-size"):
        next(fit(torch.nn.Linear(1, 1), [], sampler, None, epochs=1, lr=1e-3, weight_decay=0))


def test_a_painted_class_missing_from_the_tags_is_predicted_too(labelled_project, monkeypatch):
    import spn_napari.rounds.predict as round_inference
    p = labelled_project
    i = next(k for k, im in enumerate(p.images) if 3 not in im.tags)
    labels, set_mask = _stroke(p, i, 4)  # class index 3, not among image i's tags
    p.save_correction(i, labels, set_mask, review="reviewed")
    asked = {}
    orig = round_inference.predict_labels

    def spy(model, image, classes, side, device, **kw):
        asked[len(asked)] = list(classes)
        return orig(model, image, classes, side, device, **kw)
    monkeypatch.setattr(round_inference, "predict_labels", spy)
    run(run_round(p, FAST))
    assert asked[i] == sorted(set(p.images[i].tags) | {3})
