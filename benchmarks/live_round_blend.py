"""What can a round add to labels the live head already propagated? Its network blended with the head.

    python benchmarks/live_round_blend.py PROJECT [--budget 1143] [--work runs/live_round_blend]
        [--out benchmarks/results/live_round_blend.json]

PROJECT: a project with ground truth, superpixels, an SPN and pseudo-labels, no corrections (e.g.
runs/real_photos/project). A simulated person spends ``--budget`` clicks on the live head's
suggestions with propagation, then one round runs (``simulate --propagate --rounds 1``, in a copy
under ``--work``; an existing copy with its round is reused). Then every photo's labels are scored
against its truth, with the person's pixels over them, as:

- *before*: the live head's labels the round starts from;
- *round*: the round's own network (what the round alone gives);
- *propagated*: the live head refitted on the round's labels (what ``run_round`` keeps);
- *blend, pixels*: each pixel takes the most probable class of ``a`` × the head's probability of
  its superpixel + (1 − ``a``) × the round network's probability of the pixel;
- *blend, superpixels*: the same with the network's probabilities averaged over each superpixel
  (a label a superpixel table can hold);

for the head before the round and the one refitted after it, and each ``a`` of ``--alphas``.
Photos a person reviewed keep the labels they had. Scores are per fold (5 seeded folds of the
photos); each fold's blend is chosen on the other four and scored on it (held out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spn_napari.events import run
from spn_napari.evidence.descriptors import read_descriptors
from spn_napari.evidence.features import feature_cache, view_maps
from spn_napari.labels import apply_correction, present_classes
from spn_napari.metrics import ConfusionMeter
from spn_napari.project import kinds
from spn_napari.project.live_labels import read_live
from spn_napari.project.store import Project
from spn_napari.review.simulate import SimulateConfig, simulate
from spn_napari.rounds.predict import round_views, view_probabilities
from spn_napari.runtime import default_threads, load_decoupled

from _shared import cpu_model, folds, returned, write_results  # benchmarks/ is on sys.path

FOLDS = 5


def simulated(project: Path, work: Path, budget: int) -> Project:
    """The copy after ``budget`` live clicks and one round (made once)."""
    if not (work / "project.db").exists():
        cfg = SimulateConfig(rounds=1, annotator="suggestions", budget=budget, propagate=True, full_supervision=False)
        run(simulate(Project(project), cfg, work=work))
    sim = Project(work)
    if sim.current_round() != 1 or read_live(sim, 0) is None:
        print(f"{work}: not a copy after one round with live labels — remove it or pass another --work.", file=sys.stderr)
        raise SystemExit(2)
    return sim


def head_probabilities(live, desc, rows: slice, allowed: np.ndarray) -> np.ndarray:
    """(N, L) the live head's probabilities of each superpixel of one photo (``allowed`` (L,): its candidates)."""
    x = torch.cat([torch.from_numpy(desc.desc[rows]).float(), torch.ones(rows.stop - rows.start, 1)], 1)  # (N, D + 1)
    z = (x @ torch.from_numpy(live.weight).T).masked_fill(~torch.from_numpy(allowed)[None], float("-inf"))  # (N, L)
    return torch.softmax(z, 1).numpy()


def score(sim: Project, alphas: list[float]) -> dict[str, list[np.ndarray]]:
    """{labels' name: per fold (L, L) confusion matrix} of every way of labelling (module docstring)."""
    n_labels = len(sim.classes) + 1
    model, ckpt = load_decoupled(sim, 1, torch.device("cpu"))
    model.eval()
    passes = [tuple(v) for v in ckpt["views"]] if ckpt.get("views") else round_views(ckpt["scales"])
    cache = returned(feature_cache(sim, model.encoder, model.cfg.encoder, [s for s, _ in passes], torch.device("cpu")))
    desc = read_descriptors(sim)
    heads = {"head before": read_live(sim, 0), "head after": read_live(sim, 1)}
    fold_of = np.zeros(len(sim), int)
    for f, idx in enumerate(folds(len(sim), FOLDS)):
        fold_of[idx] = f
    reviews = sim.reviews()
    blends = [f"blend, {way}, {head_name}, a={a:g}" for way in ("pixels", "superpixels") for head_name in heads for a in alphas]
    meters: dict[str, list[ConfusionMeter]] = {}

    def add(name: str, i: int, labels: np.ndarray) -> None:
        meters.setdefault(name, [ConfusionMeter(n_labels) for _ in range(FOLDS)])[fold_of[i]].add(labels, gt)

    for i in range(len(sim)):
        gt = sim.ground_truth(i)
        if gt is None:
            continue
        sp, corr = sim.read(kinds.SUPERPIXELS, i), sim.correction(i)  # (H, W)
        before = heads["head before"].over(i, sim.read(kinds.round_labels(0), i), sp)
        net_labels = sim.read(kinds.round_labels(1), i)
        add("before", i, apply_correction(before, corr))
        add("round", i, apply_correction(net_labels, corr))
        add("propagated", i, apply_correction(heads["head after"].over(i, net_labels, sp), corr))
        if reviews[i] != "unreviewed":  # a reviewed photo keeps its labels whatever blends
            for name in blends:
                add(name, i, apply_correction(before, corr))
            continue
        classes = sorted(present_classes(sim, i))
        maps = view_maps(sim, model.encoder, i, passes, cache, torch.device("cpu"))
        probs = sum(view_probabilities(model, sim.image(i), classes, s, m, torch.device("cpu"), maps.get((s, m)))
                    for s, m in passes) / len(passes)  # (1 + K, H, W)
        probs = probs[1:] / np.maximum(probs[1:].sum(0), 1e-12)  # (K, H, W): no background class
        net = np.zeros((n_labels, *sp.shape), np.float32)  # (L, H, W)
        net[[c + 1 for c in classes]] = probs
        n = int(sp.max()) + 1
        area = np.maximum(np.bincount(sp.ravel(), minlength=n), 1)  # (N,)
        net_sp = np.stack([np.bincount(sp.ravel(), weights=net[v].ravel(), minlength=n) for v in range(n_labels)], 1)
        net_sp /= area[:, None]  # (N, L)
        allowed = np.zeros(n_labels, bool)
        allowed[[c + 1 for c in sim.images[i].tags]] = True
        for head_name, live in heads.items():
            head = head_probabilities(live, desc, desc.rows(i), allowed)  # (N, L)
            for a in alphas:
                pixels = (a * head[sp].transpose(2, 0, 1) + (1 - a) * net).argmax(0).astype(np.uint8)  # (H, W)
                add(f"blend, pixels, {head_name}, a={a:g}", i, apply_correction(pixels, corr))
                cells = (a * head + (1 - a) * net_sp).argmax(1).astype(np.uint8)  # (N,)
                add(f"blend, superpixels, {head_name}, a={a:g}", i, apply_correction(cells[sp], corr))
    return {name: [m.cm for m in ms] for name, ms in meters.items()}


def miou(sim: Project, cms: list[np.ndarray]) -> float:
    meter = ConfusionMeter(len(sim.classes) + 1)
    meter.cm = sum(cms)
    return meter.summary(sim.label_names(), background=sim.has_background)["miou"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--budget", type=int, default=1143)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.4, 0.5, 0.6, 0.75])
    ap.add_argument("--work", default="runs/live_round_blend")
    ap.add_argument("--out", default="benchmarks/results/live_round_blend.json")
    a = ap.parse_args()
    default_threads()
    t0 = time.perf_counter()
    sim = simulated(Path(a.project), Path(a.work), a.budget)
    cms = score(sim, a.alphas)
    res = {"project": a.project, "budget": a.budget, "folds": FOLDS, "cpu": cpu_model(),
           "labels": {name: {"miou": miou(sim, c), "per_fold": [miou(sim, [m]) for m in c]} for name, c in cms.items()}}
    blends = [name for name in cms if name.startswith("blend")]
    chosen, held = [], []
    for f in range(FOLDS):  # each fold's blend: the best on the other folds
        best = max(blends, key=lambda k: miou(sim, [m for g, m in enumerate(cms[k]) if g != f]))
        chosen.append(best)
        held.append(res["labels"][best]["per_fold"][f])
    before = res["labels"]["before"]
    res["chosen_per_fold"], res["chosen_held_out_per_fold"] = chosen, held
    res["chosen_held_out_mean"] = float(np.mean(held))
    res["before_per_fold_mean"] = float(np.mean(before["per_fold"]))
    res["gain_held_out"] = res["chosen_held_out_mean"] - res["before_per_fold_mean"]
    res["seconds"] = time.perf_counter() - t0
    write_results(a.out, res)
    for name, v in sorted(res["labels"].items(), key=lambda t: -t[1]["miou"])[:8]:
        print(f"  {name:44s} {v['miou']:.4f}")
    print(f"before {before['miou']:.4f}, round {res['labels']['round']['miou']:.4f}, propagated "
          f"{res['labels']['propagated']['miou']:.4f}; the blend chosen on other folds, held out: "
          f"{res['chosen_held_out_mean']:.4f} (fold mean of before {res['before_per_fold_mean']:.4f}) -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
