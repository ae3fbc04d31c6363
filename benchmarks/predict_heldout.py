"""Predicting photos a project never saw: train on some msrc-dev folds, predict the others.

    python benchmarks/predict_heldout.py [--data ../shared/data/msrc-dev] [--work runs/predict_heldout]
                                         [--fold 0] [--folds 5] [--out benchmarks/results/predict_heldout.json]

The photos are split into ``--folds`` folds (the seeded split of benchmarks/evidence_ablation.py).
A project is made from every fold but ``--fold`` with the defaults a user runs (`init
--no-background`, `superpixels`, `train-spn`, `pseudo-labels`, `round`); then the photos of the
held-out fold are predicted with :class:`spn_napari.Segmenter` — what `spn-napari predict` runs —
with their tags (`--tags`) and without, by the SPN (round 0) and by round 1, and scored against
their masks. The work folder is kept; an existing one is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from spn_napari.data.images import load_image, load_mask
from spn_napari.data.readers import read_dataset
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
from spn_napari.evidence.superpixels import compute_superpixels
from spn_napari.metrics import ConfusionMeter
from spn_napari.pipeline import init_project, run
from spn_napari.predict.segmenter import Segmenter
from spn_napari.rounds.refine import RoundConfig, run_round
from spn_napari.runtime import default_threads
from spn_napari.train import TrainConfig, train_spn

from _shared import cpu_model, folds  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def subset(data: Path, out: Path, names: set[str]) -> None:
    """A generic-layout copy of ``data`` holding only the images named (links, not copies)."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    shutil.copy(data / "classes.txt", out / "classes.txt")
    rows = ["image,labels"]
    for line in (data / "labels.csv").read_text().splitlines()[1:]:
        if line.split(",", 1)[0] in names:
            rows.append(line)
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    for name in names:
        os.symlink((data / "images" / name).resolve(), out / "images" / name)
        mask = data / "masks" / (Path(name).stem + ".png")
        if mask.exists():
            os.symlink(mask.resolve(), out / "masks" / mask.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrc-dev"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "predict_heldout"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "predict_heldout.json"))
    a = ap.parse_args()
    data, work = Path(a.data), Path(a.work)
    if not (data / "labels.csv").is_file():
        print(f"{data}: no data set here — pass --data DIR (the msrc-dev folder of ../shared/data).", file=sys.stderr)
        return 2
    if work.exists():
        print(f"{work}: already exists — delete it or pass another --work.", file=sys.stderr)
        return 2
    default_threads()
    ds = read_dataset(data)
    held = folds(len(ds.items), a.folds)[a.fold]
    held_items = [ds.items[i] for i in held]
    held_set = set(held.tolist())
    train_names = {it.image_path.name for j, it in enumerate(ds.items) if j not in held_set}
    subset(data, work / "data", train_names)
    seconds = {}

    def timed(name, events):
        t0 = time.perf_counter()
        run(events)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr, flush=True)

    project = init_project(work / "project", work / "data", background=False)
    timed("superpixels", compute_superpixels(project))
    timed("train-spn", train_spn(project, TrainConfig(device=a.device)))
    timed("pseudo-labels", make_pseudo_labels(project, PseudoLabelConfig(device=a.device)))
    timed("round 1", run_round(project, RoundConfig(device=a.device)))
    classes = list(project.classes)
    rows = []
    for name, r, with_tags in (("SPN (round 0), with tags", 0, True), ("round 1, with tags", 1, True),
                               ("round 1, without tags", 1, False)):
        seg = Segmenter.from_project(project, round_no=r, device=a.device)
        meter = ConfusionMeter(len(classes) + 1)
        t0 = time.perf_counter()
        for it in held_items:
            tags = [classes[c] for c in it.tags] if with_tags else None
            meter.add(seg.predict(load_image(it.image_path), tags), load_mask(it.mask_path))
        s = meter.summary(classes, background=False)
        rows.append({"model": name, "miou": s["miou"], "mean_class_accuracy": s["mean_class_accuracy"],
                     "seconds": time.perf_counter() - t0})
        print(f"{name:28s} mIoU {s['miou']:.3f}  mAcc {s['mean_class_accuracy']:.3f}", flush=True)
    result = {"data": str(data), "train_images": len(project), "held_out_images": len(held_items), "fold": a.fold,
              "folds": a.folds, "cpu": cpu_model(), "threads": torch.get_num_threads(), "seconds": seconds,
              "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
