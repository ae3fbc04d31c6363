"""How often a suggested superpixel is really wrong, and its proposed class right, against the masks.

    python benchmarks/suggest_precision.py PROJECT [--top 100 500 1000 3000] [--out benchmarks/results/suggest_precision.json]

PROJECT: a project with ground truth and evidence (e.g. runs/real_photos/project: its current labels, the pseudo-labels or a round's).
The unreviewed superpixels are ranked as ``spn-napari suggest`` ranks them
(:func:`spn_napari.review.suggest.suggest`, which keeps each photo's best ``PER_IMAGE``); for the top k,
the share whose current label is not their true class (the majority of their mask,
:mod:`spn_napari.review.effort`), and among those the share whose proposed class is that true class. The
share of wrong superpixels among *every* checkable superpixel of those photos
(:func:`spn_napari.review.suggest.image_suggestions`) is the rate a random order would find. Nothing is
fitted to the masks: they only score the ranking.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from spn_napari.project import kinds
from spn_napari.project.store import Project
from spn_napari.review.effort import superpixel_majority
from spn_napari.review.suggest import image_suggestions, suggest

from _shared import command_line, write_results  # benchmarks/ is on sys.path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--top", type=int, nargs="+", default=[100, 500, 1000, 3000])
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args()
    p = Project(a.project)
    truth = {}

    def judged(suggestions) -> np.ndarray:
        """(M, 2) bool: (wrong, proposal right) of each suggestion whose superpixel has truth."""
        rows = []
        for s in suggestions:
            if s.image not in truth:
                truth[s.image] = superpixel_majority(p.read(kinds.SUPERPIXELS, s.image), p.ground_truth(s.image),
                                                     ignore=255)
            t = int(truth[s.image][s.superpixel])
            if t != 255:
                rows.append((t != s.current, t == s.proposed))
        return np.array(rows, bool).reshape(-1, 2)

    r = judged(suggest(p, None))  # in rank order
    every = judged(s for i in range(len(p)) if p.review(i) == "unreviewed" for s in image_suggestions(p, i))
    res = {"project": a.project, "command": command_line(), "current_round": p.current_round(),  # None: pseudo-labels
           "superpixels": len(every), "ranked": len(r),
           "wrong_share_all": float(every[:, 0].mean()), "top": {}}
    print(f"{a.project}: {len(every)} checkable superpixels, {every[:, 0].mean():.3f} of them wrong (a random "
          f"order's rate); {len(r)} ranked")
    for k in a.top:
        top = r[:k]
        wrong = float(top[:, 0].mean())
        proposal = float(top[:, 1].sum() / max(1, top[:, 0].sum()))
        res["top"][str(k)] = {"wrong_share": wrong, "proposal_right_when_wrong": proposal}
        print(f"  top {k:5d}: {wrong:.3f} wrong; of those, the proposed class is the true one for {proposal:.3f}")
    if a.out:
        write_results(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
