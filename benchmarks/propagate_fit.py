"""Choose the live head's settings on held-out folds: what do checks on some photos do to the others?

    python benchmarks/propagate_fit.py PROJECT [--budget 1143] [--folds 5] [--every 95]
        [--work runs/propagate_fit] [--out benchmarks/results/propagate_fit.json]

PROJECT: a project with ground truth, superpixels, an SPN and pseudo-labels, no corrections (e.g.
runs/real_photos/project). For each setting of the grid (``--sources``, ``--dims``, ``--paint``,
``--weights``, ``--samples``, ``--iters``: the descriptors' source and length, which superpixels
the head paints, a person's superpixel's weight, the unchecked superpixels a refit samples and its
L-BFGS iterations) and each fold, a simulated person checks the live
head's suggestions (:meth:`spn_napari.live.head.LiveHead.ranking`) on the photos *outside* the
fold only, with the fold's share of ``--budget`` clicks removed, as ``simulate --propagate`` does
(a wrong superpixel costs a click and is set to its true class, a right one a look); the head is
refitted after every ``--every`` clicks. The fold's photos are never checked: their labels are what
propagation alone gives them. Each fold's setting is the one with the best mean held-out mIoU on
the other folds; the JSON has every setting's pooled held-out mIoU, each fold's choice and what
the choice scores held out. The unchanged labels (no propagation) are scored beside them.
Each source's descriptors are made once, in a copy of the project under ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from spn_napari.events import run
from spn_napari.evidence.descriptors import DescriptorConfig, read_descriptors
from spn_napari.labels import base_kind, superpixel_majority
from spn_napari.live.head import LiveHead, PropagateConfig
from spn_napari.metrics import ConfusionMeter
from spn_napari.project import kinds
from spn_napari.project.live_labels import KEEP, UNSET
from spn_napari.project.store import Project
from spn_napari.review.simulate import live_batch
from spn_napari.runtime import default_threads

from _shared import command_line, cpu_model, folds, returned, write_results  # benchmarks/ is on sys.path


def grid(sources, dims, paints, weights, samples, iters) -> list[dict]:
    """Every combination of the settings: descriptors' source and length, what the head paints,
    a person's superpixel's weight, how many unchecked superpixels a refit samples, its iterations."""
    return [{"source": s, "dims": d, "paint": p, "weight": w, "sample": n, "iters": k}
            for s in sources for d in dims for p in paints for w in weights for n in samples for k in iters]


def key(setting: dict) -> str:
    return (f"{setting['source']}, {setting['dims']} dims, paint {setting['paint']}, weight {setting['weight']:g}, "
            f"sample {setting['sample']}, {setting['iters']} iterations")


def open_head(project: Project, cfg: PropagateConfig) -> LiveHead:
    return returned(LiveHead.open(project, cfg))


class Photos:
    """Every photo's superpixels, round labels, ground truth and true superpixel classes, in memory."""

    def __init__(self, project: Project) -> None:
        kind = base_kind(project)
        self.sp = [project.read(kinds.SUPERPIXELS, i) for i in range(len(project))]
        self.base = [project.read(kind, i) for i in range(len(project))]
        self.gt = [project.ground_truth(i) for i in range(len(project))]
        self.truth = [superpixel_majority(s, g, ignore=255) for s, g in zip(self.sp, self.gt)]
        self.n_labels = 1 + len(project.classes)
        self.names, self.background = project.label_names(), project.has_background

    def miou(self, images, labels_of) -> float:
        meter = ConfusionMeter(self.n_labels)
        for i in images:
            meter.add(labels_of(i), self.gt[i])
        return meter.summary(self.names, background=self.background)["miou"]


def spend(head: LiveHead, photos: Photos, allowed: np.ndarray, budget: int, every: int) -> dict:
    """Check the head's suggestions on ``allowed`` photos until ``budget`` clicks; refit after each
    ``every`` clicks. Returns the clicks, looks and refit seconds spent."""
    clicks = looks = refits = 0
    seconds, skipped = 0.0, set()
    head.refit()
    head.relabel()
    while clicks < budget:
        answers, c, k = live_batch(head, lambda i, s: int(photos.truth[i][s]), budget - clicks, every, skipped,
                                   allowed)
        clicks, looks = clicks + c, looks + k
        if not answers:
            break
        t0 = time.perf_counter()
        head.refit()
        head.relabel()
        seconds, refits = seconds + time.perf_counter() - t0, refits + 1
    return {"clicks": clicks, "looks": looks, "refits": refits, "refit_seconds": seconds / max(refits, 1)}


def labels_with(head: LiveHead, photos: Photos):
    live = head.live

    def labels_of(i: int) -> np.ndarray:
        given = live.labels[live.rows(i)]
        painted = given[photos.sp[i]]
        person = live.person[live.rows(i)][photos.sp[i]]
        out = np.where(painted != KEEP, painted, photos.base[i])
        return np.where(person != UNSET, person, out).astype(np.uint8)

    return labels_of


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--budget", type=int, default=1143)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--every", type=int, default=95)
    ap.add_argument("--work", default="runs/propagate_fit")
    ap.add_argument("--out", default="benchmarks/results/propagate_fit.json")
    ap.add_argument("--sources", nargs="+", default=["frozen", "spn"])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--paint", nargs="+", default=["all", "changed"])
    ap.add_argument("--weights", type=float, nargs="+", default=[10.0])
    ap.add_argument("--samples", type=int, nargs="+", default=[PropagateConfig.sample])
    ap.add_argument("--iters", type=int, nargs="+", default=[PropagateConfig.iters])
    a = ap.parse_args()
    settings = grid(a.sources, a.dims, a.paint, a.weights, a.samples, a.iters)
    default_threads()
    project = Project(a.project)
    if any(project.corrected()):
        print(f"{a.project}: has corrections — run on a project without any (e.g. a fresh base).", file=sys.stderr)
        return 2
    photos = Photos(project)
    n = len(project)
    parts = folds(n, a.folds)
    base_scores = [photos.miou(f, lambda i: photos.base[i]) for f in parts]
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    for source in sorted({s["source"] for s in settings}):
        for dims in sorted({s["dims"] for s in settings if s["source"] == source}):
            copy_root = Path(a.work) / f"{source}-{dims}"
            if not copy_root.exists():
                shutil.copytree(project.root, copy_root, ignore=shutil.ignore_patterns("*-shm", ".lock"))
            sub = Project(copy_root)
            cfg = PropagateConfig(descriptors=DescriptorConfig(source=source, dims=dims))
            if sub.artifact(kinds.DESCRIPTORS) is None or read_descriptors(sub).meta.get("source") != source:
                from spn_napari.evidence.descriptors import compute_descriptors
                run(compute_descriptors(sub, cfg.descriptors))
            pristine = open_head(sub, cfg)
            for setting in (s for s in settings if s["source"] == source and s["dims"] == dims):
                scfg = replace(cfg, paint=setting["paint"], weight=setting["weight"], sample=setting["sample"],
                               iters=setting["iters"])
                held, spent = [], []
                for f in parts:
                    allowed = np.ones(n, bool)
                    allowed[f] = False
                    head = LiveHead(sub, scfg, pristine.desc, copy.deepcopy(pristine.live), pristine.r)
                    spent.append(spend(head, photos, allowed, round(a.budget * allowed.sum() / n), a.every))
                    held.append(photos.miou(f, labels_with(head, photos)))
                    print(f"{key(setting)}: fold {len(held)} held-out mIoU {held[-1]:.3f} "
                          f"(base {base_scores[len(held) - 1]:.3f}; {spent[-1]})", file=sys.stderr)
                results[key(setting)] = {"setting": setting, "held_out_per_fold": held, "spent": spent}
    chosen, scores = [], []
    for k in range(a.folds):
        others = [j for j in range(a.folds) if j != k]
        best = max(results, key=lambda s: np.mean([results[s]["held_out_per_fold"][j] for j in others]))
        chosen.append(best)
        scores.append(results[best]["held_out_per_fold"][k])
    res = {"command": command_line(), "cpu": cpu_model(), "project": str(a.project), "budget": a.budget,
           "folds": a.folds, "every": a.every, "seconds": time.perf_counter() - t_all,
           "no_propagation_per_fold": base_scores, "no_propagation_mean": float(np.mean(base_scores)),
           "settings": {s: {**r, "mean": float(np.mean(r["held_out_per_fold"]))} for s, r in results.items()},
           "chosen_per_fold": chosen, "chosen_held_out_per_fold": scores,
           "chosen_held_out_mean": float(np.mean(scores))}
    write_results(a.out, res)
    for s, r in res["settings"].items():
        print(f"{s}: held-out mIoU {r['mean']:.3f}")
    print(f"no propagation: {res['no_propagation_mean']:.3f}; chosen per fold: {chosen}; held out {res['chosen_held_out_mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
