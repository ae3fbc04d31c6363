"""How evidence becomes labels, cross-validated on real photos: the ablation of the evidence rules.

    python benchmarks/evidence_ablation.py PROJECT [--folds 5] [--out benchmarks/results/evidence_ablation.json]

PROJECT: a project with a trained SPN and ground truth (e.g. the one `benchmarks/real_photos.py`
leaves in runs/real_photos/project; that script runs this too). Every image's evidence is computed
once per view — the middle training side, 1.25×, 1.5× and 2× it, each also mirrored — with the
engine's own :func:`spn_napari.evidence.pseudo_labels.view_evidence`; each candidate setting then averages its
views (:func:`~spn_napari.evidence.pseudo_labels.aggregate_evidence`) and labels them with
:func:`~spn_napari.evidence.pseudo_labels.label_evidence`, the path `pseudo-labels` and `predict` take.

Two outputs:

- **The ablation**: each change to the paper's rule applied in turn (normalisation, a mirrored
  view, larger test-time sides, a third side), with its effect on CAM and on SP-CAM separately,
  and on their average ("fused"). A row is one fixed setting scored on every photo (nothing is
  fitted to the masks).
- **The choice**: the photos are split into folds; for each fold the best setting of the whole
  grid on the *other* folds is scored on it. The held-out score of that procedure is what a
  default chosen this way gives on photos it was not chosen on; the setting every fold picks is
  the engine's default.
"""

from __future__ import annotations

import argparse
import sys

import torch

from spn_napari.project.store import Project
from spn_napari.runtime import default_threads

from _evidence import print_ablation, run_ablation
from _shared import cpu_model, write_results  # benchmarks/ is on sys.path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args()
    default_threads()
    project = Project(a.project)
    if not project.has_ground_truth or not project.artifact("spn"):
        print(f"{a.project}: needs ground-truth masks and a trained SPN (`spn-napari train-spn`).", file=sys.stderr)
        return 2
    res = {"project": a.project, "cpu": cpu_model(), "threads": torch.get_num_threads(),
           **run_ablation(project, a.device, a.folds, log=lambda m: print(m, file=sys.stderr))}
    print_ablation(res)
    if a.out:
        write_results(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
