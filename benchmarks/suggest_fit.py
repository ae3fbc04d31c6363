"""Choose the suggestion score's weights on held-out folds: which ranking fixes the most pixels per check.

    python benchmarks/suggest_fit.py PROJECT [--folds 5] [--checks 2] [--out benchmarks/results/suggest_fit.json]

PROJECT: a project with ground truth, superpixels and evidence (e.g. runs/real_photos/project after
``pseudo-labels``). Every checkable superpixel of the unreviewed photos gets what its score is made
of (:func:`spn_napari.review.suggest.superpixel_parts`: disagreement, margin, relative size) and what a
check of it is worth: the pixels that become right when it is set to the true class most of its
mask holds (:mod:`spn_napari.review.effort`), 0 when it is right already. A ranking over a set of photos
(each photo's best :data:`~spn_napari.review.suggest.PER_IMAGE`, as the index keeps) is scored by the
pixels its first ``--checks`` × photos checks fix — the person's time is the checks, clicks and
looks alike. The weights (:class:`spn_napari.review.suggest.ScoreWeights`, a grid) are chosen on k-1
folds of the photos and scored on the held-out fold, fold by fold; a random order, the current
default (:data:`spn_napari.review.suggest.WEIGHTS`) and the hand-set weights it replaced are scored the
same way beside them. Run on the base project (``suggest_fit.json``) and on a project after round 1
(``suggest_fit_round1.json``: the "suggestions, same clicks" copy of ``benchmarks/effort_curves.py``
after its first round; there the folds chose disagreement alone, which ran behind on the effort
curve, whose budget is clicks, not checks: see :mod:`spn_napari.review.suggest`). The masks choose
among the grid only on the training folds.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter

import numpy as np

from spn_napari.labels import superpixel_majority
from spn_napari.project import kinds
from spn_napari.project.store import Project
from spn_napari.review.suggest import PER_IMAGE, WEIGHTS, ScoreWeights, superpixel_parts

from _shared import command_line, folds, write_results  # benchmarks/ is on sys.path

GRID = [ScoreWeights(disagree=d, margin=m, size=a)
        for d, m, a in itertools.product((0.0, 0.5, 1.0, 2.0, 4.0, 8.0), (0.0, 0.5, 1.0, 2.0),
                                         (0.0, 0.25, 0.5, 0.75, 1.0))]


HAND_SET = ScoreWeights(disagree=1.0, margin=1.0, size=0.5)  # the weights before this fit (set by hand)


def key(w: ScoreWeights) -> str:
    return f"disagree {w.disagree:g}, margin {w.margin:g}, size {w.size:g}"


def photo_rows(project: Project, i: int) -> np.ndarray | None:
    """(M, 8) rows of photo i: superpixel_parts' 7 columns and the pixels a check fixes."""
    parts = superpixel_parts(project, i)
    if parts is None or not len(parts):
        return None
    sp = project.read(kinds.SUPERPIXELS, i)  # (H, W)
    gt = project.ground_truth(i)  # (H, W) label values, 255 ignored
    n = int(sp.max()) + 1
    truth = superpixel_majority(sp, gt, ignore=255)  # (N,) majority true label (255: none)
    valid = gt != 255
    hits = (gt == truth[sp]) & valid  # pixels that are right once the superpixel takes its majority class
    right_now = (project_labels(project, i) == gt) & valid
    gain = np.bincount(sp.ravel(), hits.ravel(), n) - np.bincount(sp.ravel(), right_now.ravel(), n)  # (N,)
    gain = np.where(truth == 255, 0.0, np.maximum(gain, 0.0))
    ids = parts[:, 0].astype(np.int64)
    return np.concatenate([parts, gain[ids, None]], 1)


def project_labels(project: Project, i: int) -> np.ndarray:
    """The photo's current labels (the round's or the pseudo-labels, with corrections), as suggest reads them."""
    from spn_napari.labels import apply_correction, base_kind
    return apply_correction(project.read(base_kind(project), i), project.correction(i))


def fixed_pixels(rows: dict[int, np.ndarray], photos, w: ScoreWeights, checks: int, rng=None) -> float:
    """Pixels the first ``checks`` × len(photos) checks fix, ranking by ``w`` (or at random with ``rng``)."""
    tables = []
    for i in photos:
        r = rows.get(int(i))
        if r is None:
            continue
        s = rng.random(len(r)) if rng is not None else w.score(r)
        top = np.argsort(-s, kind="stable")[:PER_IMAGE]
        tables.append(np.stack([s[top], r[top, 7]], 1))
    if not tables:
        return 0.0
    t = np.concatenate(tables)
    order = np.argsort(-t[:, 0], kind="stable")[: checks * len(photos)]
    return float(t[order, 1].sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--checks", type=int, default=2, help="checks per photo the ranking is scored at")
    ap.add_argument("--out", default=None, help="write the JSON here (e.g. benchmarks/results/suggest_fit.json)")
    a = ap.parse_args()
    p = Project(a.project)
    photos = [i for i in range(len(p)) if p.review(i) == "unreviewed" and p.images[i].has_gt]
    rows = {i: r for i in photos if (r := photo_rows(p, i)) is not None}
    photos = np.asarray(photos)
    held = {"chosen": 0.0, "default": 0.0, "hand_set": 0.0, "random": 0.0}
    chosen = []
    for f in folds(len(photos), a.folds):
        train = np.setdiff1d(np.arange(len(photos)), f)
        best = max(GRID, key=lambda w: fixed_pixels(rows, photos[train], w, a.checks))
        chosen.append(key(best))
        held["chosen"] += fixed_pixels(rows, photos[f], best, a.checks)
        held["default"] += fixed_pixels(rows, photos[f], WEIGHTS, a.checks)
        held["hand_set"] += fixed_pixels(rows, photos[f], HAND_SET, a.checks)
        held["random"] += np.mean([fixed_pixels(rows, photos[f], WEIGHTS, a.checks, np.random.default_rng(s))
                                   for s in range(5)])
    total = sum(float(r[:, 7].sum()) for r in rows.values())
    res = {"project": a.project, "photos": len(photos), "folds": a.folds, "checks_per_photo": a.checks,
           "fixable_pixels": total, "held_out_fixed_pixels": held, "chosen_per_fold": chosen,
           "most_chosen": Counter(chosen).most_common(1)[0][0], "default": key(WEIGHTS),
           "hand_set": key(HAND_SET),
           "held_out_ratio_chosen_to_default": held["chosen"] / max(held["default"], 1.0),
           "held_out_ratio_default_to_random": held["default"] / max(held["random"], 1.0),
           "held_out_ratio_default_to_hand_set": held["default"] / max(held["hand_set"], 1.0),
           "held_out_ratio_chosen_to_hand_set": held["chosen"] / max(held["hand_set"], 1.0),
           "current_round": p.current_round(),  # None: the pseudo-labels, no round yet
           "command": command_line()}
    print(f"{a.project}: {len(photos)} photos, {a.checks} checks per photo; held-out pixels fixed: "
          f"chosen on folds {held['chosen']:.0f}, default ({key(WEIGHTS)}) {held['default']:.0f}, "
          f"hand-set ({key(HAND_SET)}) {held['hand_set']:.0f}, "
          f"random {held['random']:.0f}; chosen per fold: {chosen}")
    if a.out:
        write_results(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
