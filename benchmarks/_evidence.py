"""How evidence becomes labels, scored against the masks: every image's evidence per view, the
candidate settings, their per-image confusion matrices, and the choice among them made on held-out
folds. ``evidence_ablation.py`` prints this; ``real_photos.py`` runs it; ``round_views.py`` takes
its sides, folds and scores.

Every image's evidence is computed once per view (the middle training side, 1.25×, 1.5× and 2× it,
each also mirrored) with the engine's own :func:`spn_napari.evidence.pseudo_labels.view_evidence`; each setting
averages its views (:func:`~spn_napari.evidence.pseudo_labels.aggregate_evidence`) and labels them with
:func:`~spn_napari.evidence.pseudo_labels.label_evidence`, the path `pseudo-labels` and `predict` take.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from spn_napari.evidence.maps import EvidenceSettings, evidence_sides, label_evidence
from spn_napari.evidence.pseudo_labels import aggregate_evidence, view_evidence
from spn_napari.metrics import confusion_matrix, mean_class_accuracy, mean_iou
from spn_napari.ops import label_canvas
from spn_napari.project import kinds
from spn_napari.project.store import Project
from spn_napari.runtime import load_spn, resolve_device

from _shared import folds

FACTORS = (1.0, 1.25, 1.5, 2.0)  # test-time sides, × the middle training side


def view_sides(scales) -> dict[float, int]:
    """{factor: canvas side} for FACTORS (1.0: the middle training side itself)."""
    mid = sorted(scales)[len(scales) // 2]
    return {f: (mid if f == 1.0 else evidence_sides(scales, (f,))[0]) for f in FACTORS}


@torch.no_grad()
def all_views(project: Project, device: torch.device, progress=None) -> tuple[list[dict], dict[float, int]]:
    """Per image {(side, mirrored): Evidence (tensors on the CPU)} for every side of FACTORS."""
    model, ckpt = load_spn(project, device)
    sides = view_sides(ckpt["scales"])
    out = []
    for i in range(len(project)):
        sp = project.read(kinds.SUPERPIXELS, i)
        canvas, n = label_canvas(sp, device)
        image = project.image(i)
        ev = {}
        for side in sorted(set(sides.values())):
            for mirrored in (False, True):
                e = view_evidence(model, image, canvas, n, side, mirrored, device)
                ev[(side, mirrored)] = type(e)(sp_scores=e.sp_scores.cpu(), cam=e.cam.cpu(), probs=e.probs.cpu())
        out.append(ev)
        if progress:
            progress(i + 1, len(project))
    return out, sides


def confusions(project: Project, views: list[dict], settings: EvidenceSettings) -> np.ndarray:
    """(n_images, L, L) confusion matrices of ``settings``' labels against the masks."""
    n_labels = len(project.classes) + 1
    out = np.zeros((len(project), n_labels, n_labels), np.int64)
    for i in range(len(project)):
        gt = project.ground_truth(i)
        parts = [views[i][(s, m)] for s in settings.sides for m in ((False, True) if settings.flip else (False,))]
        ev = aggregate_evidence(parts, settings.aggregate)
        labels = label_evidence(ev, project.read(kinds.SUPERPIXELS, i), project.images[i].tags, settings,
                                background=project.has_background)
        out[i] = confusion_matrix(labels, gt, n_labels)
    return out


def scores(cm: np.ndarray, background: bool) -> dict:
    return {"miou": mean_iou(cm, background=background), "mean_class_accuracy": mean_class_accuracy(cm, background=background)}


def cross_validate(cms: dict[str, np.ndarray], keys, k: int, background: bool) -> dict:
    """The choice among ``keys`` (of ``cms``: per-image confusion matrices) made on k-1 folds and
    scored on the held-out one, fold by fold: {"held_out": scores, "chosen_per_fold": [key, ...]}."""
    n = len(next(iter(cms.values())))
    held = np.zeros_like(next(iter(cms.values()))[0])
    chosen = []
    for f in folds(n, k):
        train = np.setdiff1d(np.arange(n), f)
        best = max(keys, key=lambda kk: mean_iou(cms[kk][train].sum(0), background=background))
        chosen.append(best)
        held += cms[best][f].sum(0)
    return {"held_out": scores(held, background), "chosen_per_fold": chosen}


def ablation_steps(sides: dict[float, int]) -> list[tuple[str, dict]]:
    """The changes applied in turn: (row name, settings other than the method)."""
    mid, big = sides[1.0], (sides[1.25], sides[1.5])
    return [
        ("paper: middle side, each class / its own peak", dict(sides=(mid,), flip=False, normalise="max")),
        ("+ raw scores (one shared peak)", dict(sides=(mid,), flip=False, normalise="shared")),
        ("+ mirrored view", dict(sides=(mid,), flip=True, normalise="shared")),
        (f"+ larger sides {big[0]}, {big[1]} (1.25×, 1.5×), mirrored", dict(sides=big, flip=True, normalise="shared")),
        (f"+ a third side {sides[2.0]} (2×)", dict(sides=(*big, sides[2.0]), flip=True, normalise="shared")),
    ]


def grid(sides: dict[float, int]) -> list[EvidenceSettings]:
    """Every candidate setting the folds choose among."""
    mid, s125, s15, s2 = (sides[f] for f in FACTORS)
    view_sets = [((mid,), False), ((mid,), True), ((s125, s15), True), ((s15, s2), True), ((s125, s15, s2), True)]
    out = []
    for method in ("sp-cam", "cam", "fused"):
        for vs, flip in view_sets:
            for norm in ("max", "shared", None):  # None: each method's default (fused: SP-CAM max + CAM shared)
                if norm is None and method != "fused":
                    continue
                out.append(EvidenceSettings(method=method, sides=vs, flip=flip, normalise=norm))
    return out


def key(s: EvidenceSettings) -> str:
    return (f"{s.method} sides={','.join(map(str, s.sides))}{' +mirror' if s.flip else ''} "
            f"normalise={s.normalise or 'default'}")


def run_ablation(project: Project, device: str = "auto", k: int = 5, log=print) -> dict:
    """The ablation table and the cross-validated choice, as one JSON-able dict."""
    dev = resolve_device(device)
    t0 = time.perf_counter()
    views, sides = all_views(project, dev)
    views_s = time.perf_counter() - t0
    log(f"evidence for {len(project)} photos × {2 * len(set(sides.values()))} views: {views_s:.0f} s")
    bg = project.has_background
    cms: dict[str, np.ndarray] = {}
    for s in grid(sides):
        cms[key(s)] = confusions(project, views, s)
    rows = []
    for name, kw in ablation_steps(sides):
        row = {"change": name}
        for method in ("cam", "sp-cam", "fused"):
            s = EvidenceSettings(method=method, **kw)
            if key(s) not in cms:
                cms[key(s)] = confusions(project, views, s)
            row[method] = scores(cms[key(s)].sum(0), bg)
        rows.append(row)
    n = len(project)
    cv = {family: cross_validate(cms, [kk for kk in cms if family == "any" or kk.startswith(family + " ")], k, bg)
          for family in ("cam", "sp-cam", "fused", "any")}
    return {"images": n, "folds": k, "sides": {str(f): s for f, s in sides.items()}, "views_seconds": views_s,
            "rows": rows, "cross_validated": cv,
            "grid": {kk: scores(v.sum(0), bg) for kk, v in cms.items()}}


def print_ablation(res: dict) -> None:
    print(f"\nevidence → labels on {res['images']} photos (each row one fixed setting, scored on every photo):")
    print(f"{'change':58s} {'CAM mIoU':>8s} {'mAcc':>6s} {'SP-CAM':>7s} {'mAcc':>6s} {'fused':>6s} {'mAcc':>6s}")
    for r in res["rows"]:
        cells = " ".join(f"{r[m]['miou']:{w}.3f} {r[m]['mean_class_accuracy']:6.3f}"
                         for m, w in (("cam", 8), ("sp-cam", 7), ("fused", 6)))
        print(f"{r['change']:58s} {cells}")
    print(f"\nsetting chosen on {res['folds'] - 1} folds, scored on the held-out one ({res['folds']} folds):")
    for family, v in res["cross_validated"].items():
        picks = sorted(set(v["chosen_per_fold"]))
        print(f"  {family:7s} held-out mIoU {v['held_out']['miou']:.3f}, mAcc {v['held_out']['mean_class_accuracy']:.3f};"
              f" chosen: {' | '.join(picks)}")
