"""Which test-time views a round's DecoupledNet should predict with, cross-validated on real photos.

    python benchmarks/round_views.py PROJECT [--round 1] [--folds 5] [--out benchmarks/results/round_views.json]

PROJECT: a project with a trained round and ground truth (e.g. runs/real_photos/project, which
`benchmarks/real_photos.py` leaves). Every image is predicted once per view — the middle training
side, 1.25×, 1.5× and 2× it, each also mirrored — with the engine's own
:func:`spn_napari.rounds.predict.view_probabilities` (through the feature cache's float16, as the round
itself predicts); each candidate view set averages its views' probabilities and takes the best of
the image's tags per pixel, as :func:`spn_napari.rounds.predict.predict_labels` does.

The choice: the photos are split into the same seeded folds as ``evidence_ablation.py``; for each
fold the best view set on the *other* folds is scored on it. The held-out score is what the
default chosen this way gives on photos it was not chosen on.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from spn_napari.evidence.features import cached_sides, view_maps, views
from spn_napari.labels import present_classes
from spn_napari.metrics import confusion_matrix
from spn_napari.project.store import Project
from spn_napari.rounds.predict import view_probabilities
from spn_napari.runtime import default_threads, load_decoupled, resolve_device

from _evidence import FACTORS, cross_validate, scores, view_sides
from _shared import cpu_model, write_results  # benchmarks/ is on sys.path


def candidates(sides: dict[float, int]) -> dict[str, list[tuple[int, bool]]]:
    """{name: views} the folds choose among."""
    mid, s125, s15, s2 = (sides[f] for f in FACTORS)
    sets = [((mid,), False), ((mid,), True), ((s125,), True), ((s125, s15), True), ((s15,), True),
            ((s15, s2), True)]
    return {f"sides={','.join(map(str, ss))}{' +mirror' if fl else ''}": views(ss, fl) for ss, fl in sets}


@torch.no_grad()
def view_confusions(project: Project, r: int, device: torch.device, log=print) -> tuple[dict, dict, float]:
    """{candidate: (n_images, L, L) confusion matrices}, the sides, and the seconds spent."""
    model, ckpt = load_decoupled(project, r, device)
    sides = view_sides(ckpt["scales"])
    cands = candidates(sides)
    passes = sorted({v for vs in cands.values() for v in vs})
    cache = cached_sides(project, model.cfg.encoder, ckpt["scales"]) if getattr(model.encoder, "cacheable", False) else None
    n_labels = len(project.classes) + 1
    out = {name: np.zeros((len(project), n_labels, n_labels), np.int64) for name in cands}
    t0 = time.perf_counter()
    for i in range(len(project)):
        image, gt = project.image(i), project.ground_truth(i)
        classes = sorted(present_classes(project, i))
        maps = view_maps(project, model.encoder, i, passes, cache, device) if cache is not None else {}
        probs = {v: view_probabilities(model, image, classes, *v, device, maps.get(v)) for v in passes}
        for name, vs in cands.items():
            p = sum(probs[v] for v in vs) / len(vs)  # (1+K, H, W)
            lut = np.array([0] + [c + 1 for c in classes], np.uint8)
            if not project.has_background and classes:
                p, lut = p[1:], lut[1:]
            out[name][i] = confusion_matrix(lut[p.argmax(0)], gt, n_labels)
        if (i + 1) % 50 == 0:
            log(f"{i + 1}/{len(project)} photos, {time.perf_counter() - t0:.0f} s")
    return out, sides, time.perf_counter() - t0


def run(project: Project, r: int, device: str = "auto", k: int = 5, log=print) -> dict:
    """The candidates' scores on every photo and the cross-validated choice, as one JSON-able dict."""
    cms, sides, seconds = view_confusions(project, r, resolve_device(device), log)
    bg, n = project.has_background, len(project)
    return {"round": r, "images": n, "folds": k, "sides": {str(f): s for f, s in sides.items()}, "seconds": seconds,
            "candidates": {name: scores(cm.sum(0), bg) for name, cm in cms.items()},
            "cross_validated": cross_validate(cms, list(cms), k, bg)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--round", type=int, default=None, help="default: the current round")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args()
    default_threads()
    project = Project(a.project)
    r = project.current_round() if a.round is None else a.round
    if not project.has_ground_truth or not r:
        print(f"{a.project}: needs ground-truth masks and a refinement round (`spn-napari round`).", file=sys.stderr)
        return 2
    res = {"project": a.project, "cpu": cpu_model(), "threads": torch.get_num_threads(),
           **run(project, r, a.device, a.folds, log=lambda m: print(m, file=sys.stderr))}
    print(f"round {r}'s labels by test-time views, {res['images']} photos ({res['seconds']:.0f} s):")
    for name, sc in res["candidates"].items():
        print(f"  {name:32s} mIoU {sc['miou']:.3f}  mAcc {sc['mean_class_accuracy']:.3f}")
    cv = res["cross_validated"]
    print(f"chosen on {res['folds'] - 1} folds, scored on the held-out one: mIoU {cv['held_out']['miou']:.3f}, "
          f"mAcc {cv['held_out']['mean_class_accuracy']:.3f}; chosen: {' | '.join(sorted(set(cv['chosen_per_fold'])))}")
    if a.out:
        write_results(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
