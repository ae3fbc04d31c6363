"""Live label propagation: descriptors, the live head, its labels as project state, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spn_napari.events import run
from spn_napari.evidence.descriptors import DescriptorConfig, compute_descriptors, pooled_views, read_descriptors
from spn_napari.labels import base_kind, current_labels, training_target
from spn_napari.live.head import LiveHead, PropagateConfig, person_labels, propagate
from spn_napari.project import kinds
from spn_napari.project.history import rollback
from spn_napari.project.live_labels import KEEP, UNSET, read_live
from spn_napari.project.store import Project
from spn_napari.review.suggest import answer
from spn_napari.rounds.refine import RoundConfig, run_round

from conftest import assert_user_error, cli, tree_state

CFG = PropagateConfig(descriptors=DescriptorConfig(dims=8, device="cpu"))


def _open(project: Project) -> LiveHead:
    return run_value(LiveHead.open(project, CFG))


def run_value(gen):
    """Drain a generator and return its return value."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def _wrong_superpixel(project: Project, i: int) -> tuple[int, int]:
    """A superpixel of image i whose current majority is not its true class, and that class."""
    from spn_napari.labels import superpixel_majority
    sp = project.read(kinds.SUPERPIXELS, i)
    truth = superpixel_majority(sp, project.ground_truth(i), ignore=255)
    have = superpixel_majority(sp, current_labels(project, i))
    wrong = np.flatnonzero((truth != 255) & (truth != have))
    return (int(wrong[0]), int(truth[wrong[0]])) if len(wrong) else (0, int(truth[0]))


def test_descriptors_are_superpixel_means_of_the_upsampled_maps(labelled_project):
    """pooled_views against a naive loop: each view's map bilinearly upsampled to the canvas,
    averaged over each superpixel's pixels (float64), then over the views; a mirrored view is
    flipped back first."""
    from spn_napari.evidence.features import image_view_maps
    from spn_napari.runtime import load_spn
    p = labelled_project
    model, _ = load_spn(p, torch.device("cpu"))
    sp = p.read(kinds.SUPERPIXELS, 3)
    maps = image_view_maps(model.encoder, p.image(3), [(64, False), (64, True)], torch.device("cpu"))
    got = pooled_views(model, maps, sp, "frozen", torch.device("cpu")).numpy()
    side = max(sp.shape)
    want = np.zeros((int(sp.max()) + 1, got.shape[1]))
    for (_, mirrored), f in maps.items():
        f = f.flip(-1) if mirrored else f
        up = F.interpolate(f[None].double(), size=(side, side), mode="bilinear", align_corners=False)[0].numpy()
        for s in range(len(want)):
            ys, xs = np.nonzero(sp == s)
            want[s] += up[:, ys, xs].mean(1) / len(maps)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_descriptor_store_is_one_row_a_superpixel(labelled_project):
    p = labelled_project
    ev = run(compute_descriptors(p, DescriptorConfig(dims=8, device="cpu")))
    d = read_descriptors(p)
    sizes = [int(p.read(kinds.SUPERPIXELS, i).max()) + 1 for i in range(len(p))]
    assert list(np.diff(d.offsets)) == sizes and d.desc.shape == (sum(sizes), 8) and d.desc.dtype == np.float16
    sp = p.read(kinds.SUPERPIXELS, 2)
    assert list(d.area[d.rows(2)]) == list(np.bincount(sp.ravel(), minlength=sizes[2]))
    assert ev.data["superpixels"] == sum(sizes)
    # the principal components: projections decorrelated, in decreasing variance
    cov = np.cov(d.desc.astype(np.float64).T)
    assert np.all(np.diff(np.diag(cov)) <= 1e-2)


def test_person_labels_follow_the_majority_of_set_pixels(labelled_project):
    p = labelled_project
    sp = p.read(kinds.SUPERPIXELS, 1)
    n = int(sp.max()) + 1
    labels = np.full(sp.shape, 2, np.uint8)
    set_mask = np.zeros(sp.shape, bool)
    set_mask[: sp.shape[0] // 2] = True  # the top half set
    labels[:, : sp.shape[1] // 3] = 3
    p.save_correction(1, labels, set_mask)
    got = person_labels(p, 1, sp, n)
    for s in range(n):  # naive: over half set -> the set pixels' majority (ties: the lower value)
        px = sp == s
        count = int((px & set_mask).sum())
        if count * 2 > px.sum():
            values, counts = np.unique(labels[px & set_mask], return_counts=True)
            assert got[s] == values[np.argmax(counts)], s
        else:
            assert got[s] == UNSET, s


def test_the_head_is_the_minimum_of_its_weighted_loss(labelled_project):
    """After a refit the gradient of the weighted, tag-restricted cross-entropy plus L2 (computed
    in float64 by a plain loop over the fitted superpixels) is close to zero, and the labels it
    paints are each superpixel's best candidate."""
    p = labelled_project
    s, true = _wrong_superpixel(p, 0)
    answer(p, 0, {s: true})
    head = _open(p)
    head.cfg = replace(CFG, iters=500)  # to convergence: the test checks what is minimised
    head.refit()
    head.relabel()
    live, cfg = head.live, head.cfg
    w = head.weight.double().numpy()  # (L, D + 1)
    x = np.concatenate([head.desc.desc.astype(np.float64), np.ones((len(head.desc.desc), 1))], 1)
    person = live.person != UNSET
    rows = [int(r) for r in np.flatnonzero(person)] + [int(r) for r in np.flatnonzero(~person & (live.prior > 0))]
    weights = [cfg.weight if person[r] else float(live.prior[r]) for r in rows]
    total = sum(weights)
    grad = np.zeros_like(w)
    for r, wt in zip(rows, weights):
        ok = head.allowed[head.image[r]]
        target = live.person[r] if person[r] else live.base[r]
        if not ok[target]:
            continue
        z = np.where(ok, w @ x[r], -np.inf)
        prob = np.exp(z - z[ok].max())
        prob /= prob.sum()
        prob[target] -= 1
        grad += wt / total * np.outer(prob, x[r])
    decay = np.ones_like(w)
    decay[:, -1] = 0
    grad += 2 * cfg.l2 * decay * w
    assert np.abs(grad).max() < 1e-4, np.abs(grad).max()
    for r in range(len(live.labels)):
        if live.labels[r] != KEEP:
            ok = head.allowed[head.image[r]]
            assert live.labels[r] == np.argmax(np.where(ok, w @ x[r], -np.inf))


def test_propagation_never_changes_a_person_s_pixels_and_is_reproducible(labelled_project, tmp_path):
    import shutil
    p = labelled_project
    s, true = _wrong_superpixel(p, 0)
    answer(p, 0, {s: true})
    labels = np.full((p.images[4].height, p.images[4].width), 1, np.uint8)
    mask = np.zeros(labels.shape, bool)
    mask[:10, :10] = True
    p.save_correction(4, labels, mask)  # a stroke
    accepted = current_labels(p, 5)
    p.save_correction(5, accepted, np.ones(accepted.shape, bool), review="reviewed")  # Accept
    shutil.copytree(p.root, tmp_path / "twin")
    ev = run(propagate(p, CFG))
    assert ev.data["refits"] == 1
    corr0, corr4 = p.correction(0), p.correction(4)
    assert np.array_equal(current_labels(p, 0)[corr0[1]], corr0[0][corr0[1]])
    assert np.array_equal(current_labels(p, 4)[corr4[1]], corr4[0][corr4[1]])
    assert np.array_equal(current_labels(p, 5), accepted)
    live = read_live(p)
    assert (live.labels[live.rows(5)] == KEEP).all()  # a reviewed photo is the person's
    twin = Project(tmp_path / "twin")
    run(propagate(twin, CFG))
    other = read_live(twin)
    assert np.array_equal(live.labels, other.labels) and np.array_equal(live.weight, other.weight)


def test_the_overlay_paints_whole_superpixels_over_the_round_labels(labelled_project):
    p = labelled_project
    run(propagate(p, CFG))
    live = read_live(p)
    for i in range(len(p)):
        base, sp, given = p.read(base_kind(p), i), p.read(kinds.SUPERPIXELS, i), live.labels[live.rows(i)]
        want = base.copy()
        for y in range(base.shape[0]):  # naive: pixel by pixel
            for x in range(base.shape[1]):
                if given[sp[y, x]] != KEEP:
                    want[y, x] = given[sp[y, x]]
        assert np.array_equal(current_labels(p, i), want), i


def test_live_labels_are_what_a_round_trains_on_and_roll_back_with_it(labelled_project):
    p = labelled_project
    before = [current_labels(p, i) for i in range(len(p))]
    run(propagate(p, CFG))
    live = [current_labels(p, i) for i in range(len(p))]
    assert any(not np.array_equal(a, b) for a, b in zip(before, live))  # the head changed something
    assert all(np.array_equal(training_target(p, i), live[i]) for i in range(len(p)))
    run(run_round(p, RoundConfig(epochs=1, batch_size=4, device="cpu", scales=(48, 64), ignore_band=0)))
    assert p.current_round() == 1  # the round's labels were propagated with the corrections too
    assert read_live(p).meta["base"] == kinds.round_labels(1) and read_live(p, 0) is not None
    rollback(p, 0)
    assert all(np.array_equal(current_labels(p, i), live[i]) for i in range(len(p)))


def test_the_live_ranking_is_by_the_head_s_doubt_and_size(labelled_project):
    """The live rows against a loop over every superpixel: unreviewed, no person's, two candidates
    or more; score (1 - margin) × (pixels / the photo's mean pixels)^0.75; best first."""
    from spn_napari.review.suggest import suggest
    p = labelled_project
    answer(p, 2, {0: int(current_labels(p, 2)[p.read(kinds.SUPERPIXELS, 2) == 0][0])})
    p.set_review(3, "reviewed")
    head = _open(p)
    head.refit()
    head.relabel()
    head.save()
    live = head.live
    want = []
    for i in range(len(p)):
        rows = live.rows(i)
        mean = live.area[rows].mean()
        for s in range(rows.stop - rows.start):
            r = rows.start + s
            if p.review(i) != "unreviewed" or live.person[r] != UNSET or live.second[r] == KEEP or not live.area[r]:
                continue
            score = (1 - float(live.margin[r])) * (live.area[r] / mean) ** 0.75
            current = live.labels[r] if live.labels[r] != KEEP else live.base[r]
            want.append((-score, i, s, int(current), int(live.second[r])))
    want.sort()
    got = head.ranking()
    assert [(int(g[0]), int(g[1]), int(g[2]), int(g[3])) for g in got] == [w[1:] for w in want]
    np.testing.assert_allclose(got[:, 4], [-w[0] for w in want], rtol=1e-6)
    assert not any(s.image == 2 and s.superpixel == 0 for s in suggest(p, None))  # the person's
    assert [(s.image, s.superpixel) for s in suggest(p, 5)] == [(w[1], w[2]) for w in want[:5]]


def test_simulate_with_propagation_and_no_round_writes_the_live_rows(labelled_project, tmp_path, capsys):
    code, out, err = cli(capsys, "simulate", labelled_project.root, "--annotator", "suggestions", "--budget", 6,
                         "--propagate", "--rounds", 0, "--refit-every", 3, "--no-full", "--dims", 8, "--device",
                         "cpu", "--work", tmp_path / "sim", "--json", "--progress", "none")
    assert code == 0, err
    res = json.loads(out)
    assert res["rounds"] == [] and len(res["live"]) >= 2
    assert res["live"][0]["clicks"] == 0
    for row in res["live"]:
        assert {"clicks", "looks", "miou", "mean_class_accuracy", "seconds"} <= set(row)
    assert [r["clicks"] for r in res["live"]] == sorted(r["clicks"] for r in res["live"])
    assert res["live"][-1]["clicks"] <= 6
    sim = Project(tmp_path / "sim")  # the last row is the copy's labels as saved
    from spn_napari.evaluate import evaluate_labels
    assert evaluate_labels(sim, None)["miou"] == pytest.approx(res["live"][-1]["miou"])


@pytest.mark.parametrize("args,needles", [
    (("--propagate",), ("--propagate", "--budget")),
    (("--propagate", "--budget", "5", "--annotator", "whole"), ("--propagate", "--annotator suggestions")),
    (("--rounds", "0", "--annotator", "suggestions", "--budget", "5"), ("--rounds 0",)),
])
def test_bad_simulate_propagation_flags_are_one_line(args, needles, labelled_project, tmp_path, capsys):
    before = tree_state(labelled_project.root)
    code, _, err = cli(capsys, "simulate", labelled_project.root, *args, "--work", tmp_path / "sim")
    assert_user_error(code, err, needles[0])
    assert tree_state(labelled_project.root) == before and not (tmp_path / "sim").exists()


def test_propagate_without_pseudo_labels_is_one_line(sp_project, capsys):
    before = tree_state(sp_project.root)
    code, _, err = cli(capsys, "propagate", sp_project.root)
    assert_user_error(code, err, "pseudo-labels", str(sp_project.root))
    assert tree_state(sp_project.root) == before


def test_a_damaged_descriptor_store_is_one_line_and_recompute_mends_it(labelled_project, capsys):
    p = labelled_project
    assert cli(capsys, "propagate", p.root, "--dims", "8", "--device", "cpu", "--progress", "none")[0] == 0
    path = Project(p.root).file(kinds.DESCRIPTORS)
    path.write_bytes(b"not an npz")
    before = tree_state(p.root)
    code, _, err = cli(capsys, "propagate", p.root, "--dims", "8", "--device", "cpu")
    assert_user_error(code, err, path.name, "--recompute")
    assert tree_state(p.root) == before
    code, out, err = cli(capsys, "propagate", p.root, "--dims", "8", "--device", "cpu", "--recompute", "--json",
                         "--progress", "none")
    assert code == 0, err
    assert read_descriptors(Project(p.root)).desc.shape[1] == 8


def test_simulate_propagates_before_each_round_and_after_the_last(labelled_project, tmp_path, capsys):
    """--rounds 1: the budget is spent with the live head on round 0's labels, the round trains on
    them, and the head then propagates every check over round 1's labels without a click."""
    code, out, err = cli(capsys, "simulate", labelled_project.root, "--annotator", "suggestions", "--budget", 4,
                         "--propagate", "--rounds", 1, "--refit-every", 2, "--no-full", "--dims", 8, "--epochs", 1,
                         "--batch-size", 4, "--scales", "48,64", "--device", "cpu", "--work", tmp_path / "sim",
                         "--json", "--progress", "none")
    assert code == 0, err
    res = json.loads(out)
    before = [r for r in res["live"] if r["round"] == 0]
    after = [r for r in res["live"] if r["round"] == 1]
    assert len(before) >= 2 and len(after) == 1
    assert res["rounds"][0]["clicks"] == before[-1]["clicks"] == after[0]["clicks"]
    sim = Project(tmp_path / "sim")
    assert sim.current_round() == 1 and read_live(sim) is not None
    from spn_napari.evaluate import evaluate_labels
    assert evaluate_labels(sim, None)["miou"] == pytest.approx(after[0]["miou"])


def test_the_live_server_refits_on_request_and_answers_bad_requests_with_a_line(labelled_project):
    """spn-napari live's protocol: opening progress, ready, a refit per request (the photos whose
    corrections changed are read again: the same labels as a batch propagate of what is saved),
    an error line for a request it cannot answer, and it goes on."""
    import io

    from spn_napari.live.server import serve_live
    p = labelled_project
    s, true = _wrong_superpixel(p, 1)
    answer(p, 1, {s: true})
    requests = io.StringIO('{"id": 1, "images": [1]}\n{"id": 2, "images": [999]}\nnot json\n{"id": 3}\n')
    out = io.StringIO()
    assert serve_live(p.root, CFG, requests, out) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    opening = [e for e in events if e["event"] == "opening"]
    assert opening and {e["what"] for e in opening} <= {"descriptors", "table"}
    rest = [e for e in events if e["event"] != "opening"]
    assert [(e["event"], e.get("id")) for e in rest] == [("ready", None), ("done", 1), ("error", 2), ("error", None),
                                                         ("done", 3)]
    assert "999" in rest[2]["message"] and rest[1]["changed"] >= 0
    store = Project(p.root)
    served = read_live(store).labels.copy()
    run(propagate(store, CFG))
    assert np.array_equal(read_live(Project(p.root)).labels, served)
