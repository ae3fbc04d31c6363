"""The annotator model in clicks and looks (spn_napari.review.effort), against plain loops and a hand case,
and simulate's report of it."""

from __future__ import annotations

import json

import numpy as np

from spn_napari.evaluate import score_labels
from spn_napari.labels import superpixel_majority
from spn_napari.project.store import Project
from spn_napari.review.effort import fix_whole_image, oracle_labels, superpixel_oracle

from conftest import cli


def _majority_loop(sp, labels, ignore=None):
    out = []
    for s in range(int(sp.max()) + 1):
        values = [int(v) for v in labels[sp == s] if ignore is None or v != ignore]
        out.append(ignore if not values else max(sorted(set(values)), key=values.count))
    return np.array(out)


def test_majorities_match_a_loop():
    rng = np.random.default_rng(0)
    sp = rng.integers(0, 9, (20, 30))
    labels = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    gt = np.where(rng.random((20, 30)) < 0.3, 255, labels).astype(np.uint8)
    gt[sp == 3] = 255  # a superpixel without truth
    np.testing.assert_array_equal(superpixel_majority(sp, labels), _majority_loop(sp, labels))
    np.testing.assert_array_equal(superpixel_majority(sp, gt, ignore=255), _majority_loop(sp, gt, ignore=255))


def test_fixing_a_whole_image_by_hand():
    """Three superpixels: A's label is right, B's majority is wrong (one click sets all of B), C's
    truth is unlabelled (looked at, never clicked). A's one wrong pixel is a sub-superpixel error
    and stays."""
    sp = np.array([[0, 0, 1, 1, 2],
                   [0, 0, 1, 1, 2]])
    labels = np.array([[1, 2, 2, 2, 3],
                       [1, 1, 2, 1, 3]], np.uint8)
    gt = np.array([[1, 1, 3, 3, 255],
                   [1, 1, 3, 2, 255]], np.uint8)
    fix = fix_whole_image(sp, labels, gt)
    assert (fix.clicks, fix.looks) == (1, 3)
    np.testing.assert_array_equal(fix.labels, [[1, 2, 3, 3, 3],
                                               [1, 1, 3, 3, 3]])
    np.testing.assert_array_equal(oracle_labels(sp, gt), [[1, 1, 3, 3, 255], [1, 1, 3, 3, 255]])


def test_the_superpixel_oracle_scores_its_labels(labelled_project):
    p = labelled_project
    ref = score_labels(p, lambda i: _majority_loop(p.read("superpixels", i), p.ground_truth(i), 255)
                       [p.read("superpixels", i)].astype(np.uint8))
    got = superpixel_oracle(p)
    assert got["miou"] == ref["miou"] and 0.5 < got["miou"] <= 1.0


def test_simulate_reports_clicks_and_looks(labelled_project, tmp_path, capsys):
    """Round 1's clicks are the wrong superpixels of the picked images' round-0 labels, its looks
    their superpixels; each picked image is saved as that fix, accepted whole."""
    p = labelled_project
    code, out, err = cli(capsys, "simulate", p.root, "--rounds", "1", "--correct-fraction", "0.25", "--no-full",
                         "--epochs", "1", "--batch-size", "4", "--scales", "48,64", "--work", tmp_path / "sim",
                         "--json", "--progress", "none")
    assert code == 0, err
    res = json.loads(out)
    sim = Project(tmp_path / "sim")
    picked = [i for i in range(len(sim)) if sim.correction(i) is not None]
    assert len(picked) == res["rounds"][0]["corrected"] == round(0.25 * len(sim))
    clicks = looks = 0
    for i in picked:
        sp, base, gt = sim.read("superpixels", i), sim.read("round/0/labels", i), sim.ground_truth(i)
        truth, have = _majority_loop(sp, gt, 255), _majority_loop(sp, base)
        wrong = (truth != 255) & (have != truth)
        clicks, looks = clicks + int(wrong.sum()), looks + len(truth)
        labels, set_mask = sim.correction(i)
        assert set_mask.all() and sim.review(i) == "reviewed"
        np.testing.assert_array_equal(labels, np.where(wrong[sp], truth[sp], base))
    assert (res["rounds"][0]["clicks"], res["rounds"][0]["looks"]) == (clicks, looks) and 0 < clicks < looks
    assert res["superpixel_oracle_miou"] == superpixel_oracle(p)["miou"]


def _effort_script(monkeypatch):
    """benchmarks/effort_curves.py as a module (it imports its neighbour _shared, as when run as a script)."""
    import importlib.util
    from pathlib import Path
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("effort_script", bench / "effort_curves.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_effort_keeps_a_curve_only_where_its_weighting_acted_the_same(monkeypatch):
    """--reviewed-weight-on auto acts as images on the whole-image curves (every fix is reviewed, the
    test above) and as pixels on the suggestion curves (no answer reviews a photo, test_suggest), as
    test_rounds checks of the sampling and weights: so an auto run keeps whole-image curves made with
    images and reruns suggestion curves made with images; a file from before the weighting was
    recorded per curve ran with images."""
    effort = _effort_script(monkeypatch)
    old = {"results": {c: {} for c in effort.CURVES}}  # no weight_on: images throughout
    kept = [c for c in effort.CURVES if effort.holds(old, c, "auto")]
    assert kept == ["whole images, random", "whole images, least certain first", "full supervision"]
    assert all(effort.holds(old, c, "images") for c in effort.CURVES)
    pixels = {"reviewed_weight_on": "pixels", "results": old["results"]}
    assert [c for c in effort.CURVES if effort.holds(pixels, c, "auto")] == list(effort.NEEDS_BUDGET)
    mixed = {"weight_on": {"suggestions, same clicks": "auto"}, "results": old["results"]}
    assert effort.weighting_of(mixed, "suggestions, same clicks") == "auto"
    assert effort.weighting_of(mixed, "whole images, random") == "images"
    assert not effort.holds(mixed, "suggestions, same clicks", "images")


def test_the_committed_goal_compares_default_curves_on_one_base():
    """benchmarks/results/effort.json's goal (suggestions with a third of the clicks against three
    whole-image rounds) compares two curves run with the default weighting on one base project (their
    round-0 mIoU agree), the third spent its budget every round, and the verdict (as much mIoU for at
    most a third of the clicks) follows from the curves."""
    from pathlib import Path
    res = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/effort.json").read_text())
    whole, third = res["curves"]["whole images, random"], res["curves"]["suggestions, a third of the clicks"]
    assert res["weight_on"]["whole images, random"] == res["weight_on"]["suggestions, a third of the clicks"] == "auto"
    assert res["weighting"]["whole images, random"] == "images"
    assert res["weighting"]["suggestions, a third of the clicks"] == "pixels"
    assert abs(whole[0]["miou"] - third[0]["miou"]) < 0.002
    budget = res["budgets"]["suggestions, a third of the clicks"]  # the clicks a round it ran with
    assert [p["clicks"] for p in third[1:]] == [budget * k for k in range(1, len(third))]
    assert res["budget_per_round"]["third"] == round(whole[-1]["clicks"] / (len(whole) - 1)) // 3
    g = res["goal"]
    assert (g["whole_miou"], g["suggestions_third_miou"]) == (whole[-1]["miou"], third[-1]["miou"])
    assert g["met"] == (third[-1]["miou"] >= whole[-1]["miou"] and 3 * third[-1]["clicks"] <= whole[-1]["clicks"])
