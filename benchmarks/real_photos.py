"""Real photographs: the whole pipeline on msrc-dev (355 MSRC-v2 photos, 21 classes, no background).

    python benchmarks/real_photos.py [--data ../shared/data/msrc-dev] [--work runs/real_photos]
                                     [--out benchmarks/results/real_photos.json] [--device auto]
                                     [--no-simulate] [--no-ablation] [--rounds 3] [--correct-fraction 0.1]
                                     [--resume]

Runs what a user runs, at the defaults (`spn-napari init --no-background`, `superpixels`,
`train-spn`, `pseudo-labels`, `round`), then `simulate`: three rounds with 10 % of the images
corrected (with their ground truth) before each, and full supervision. Beside the default
pseudo-labels it makes CAM and SP-CAM labels by the paper's rule (the middle training side,
each class over its own peak: what `pseudo-labels` did before the evidence settings), timed
side by side with the default, and runs the cross-validated ablation of the evidence rules
(benchmarks/evidence_ablation.py). Each row gives mIoU and mean class accuracy (the mean over
classes of per-class recall, as MSRC results are reported) against the data set's masks, and
the seconds of its step. Baseline: every pixel the class covering most of the image's ground
truth ("the image's largest tag everywhere").

Prints the tables and writes the JSON that the README's and docs/real-photos.md's tables are
copied from. The work folder is kept (the project opens in napari); an existing one is refused,
unless ``--resume``: then the steps whose results the project already holds are not run again,
and their seconds are those the earlier run recorded in WORK/steps.json.
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

from spn_napari.evaluate import evaluate_labels, largest_tag_labels, score_labels
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels, resolve_settings
from spn_napari.evidence.superpixels import compute_superpixels
from spn_napari.pipeline import init_project, run
from spn_napari.project import kinds
from spn_napari.project.kinds import round_labels
from spn_napari.project.store import Project
from spn_napari.review.simulate import SimulateConfig, simulate
from spn_napari.rounds.refine import RoundConfig, run_round
from spn_napari.runtime import default_threads
from spn_napari.train import TrainConfig, train_spn

from _evidence import print_ablation, run_ablation
from _shared import cpu_model  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def _row(name: str, metrics: dict, seconds: float | None) -> dict:
    return {"method": name, "miou": metrics["miou"], "mean_class_accuracy": metrics["mean_class_accuracy"],
            "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrc-dev"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "real_photos"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_photos.json"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-simulate", action="store_true", help="stop after round 1")
    ap.add_argument("--no-ablation", action="store_true", help="skip the evidence ablation (a timing run)")
    ap.add_argument("--resume", action="store_true", help="finish an interrupted run in --work: skip the steps "
                    "its project holds, with the seconds it recorded")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--correct-fraction", type=float, default=0.1)
    a = ap.parse_args()
    if not Path(a.data, "labels.csv").is_file():
        print(f"{a.data}: no data set here — pass --data DIR (the msrc-dev folder of ../shared/data).",
              file=sys.stderr)
        return 2
    work = Path(a.work)
    steps_file = work / "steps.json"
    if work.exists() and not (a.resume and steps_file.exists()):
        print(f"{work}: already exists — delete it, pass another --work, or --resume a run that recorded "
              f"{steps_file.name}.", file=sys.stderr)
        return 2
    default_threads()
    seconds: dict[str, float] = json.loads(steps_file.read_text()) if a.resume else {}

    def timed(name: str, events) -> None:
        if name in seconds:  # --resume: done by the earlier run
            print(f"{name}: {seconds[name]:.0f} s (recorded)", file=sys.stderr, flush=True)
            return
        t0 = time.perf_counter()
        run(events)
        seconds[name] = time.perf_counter() - t0
        steps_file.write_text(json.dumps(seconds, indent=1) + "\n")
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr, flush=True)

    if a.resume:
        project = Project(work / "project")
        if "init" not in seconds:  # not recorded: timed again, into a scratch folder
            t0 = time.perf_counter()
            init_project(work / "init-timing" / "project", a.data, background=False)
            seconds["init"] = time.perf_counter() - t0
            shutil.rmtree(work / "init-timing")
    else:
        t0 = time.perf_counter()
        project = init_project(work / "project", a.data, background=False)
        seconds["init"] = time.perf_counter() - t0
        steps_file.write_text(json.dumps(seconds, indent=1) + "\n")
    timed("superpixels", compute_superpixels(project))
    timed("train-spn", train_spn(project, TrainConfig(device=a.device)))
    rows = [_row("largest tag everywhere (oracle)", score_labels(project, lambda i: largest_tag_labels(project, i)), None)]
    scales = sorted(project.require("spn")["meta"]["scales"])
    mid = scales[len(scales) // 2]
    for method, name in (("cam", "CAM, paper rule"), ("sp-cam", "SP-CAM, paper rule")):
        legacy = PseudoLabelConfig(method=method, device=a.device, sides=(mid,), flip=False, normalise="max")
        timed(f"pseudo-labels {method} (paper rule)", make_pseudo_labels(project, legacy))
        rows.append(_row(name, evaluate_labels(project, kinds.pseudo_labels(method)), seconds[f"pseudo-labels {method} (paper rule)"]))
    default = resolve_settings(PseudoLabelConfig(), scales, project.has_background)
    timed("pseudo-labels", make_pseudo_labels(project, PseudoLabelConfig(device=a.device)))
    rows.append(_row(f"default: {default.method}, sides {'/'.join(map(str, default.sides))}"
                     f"{' + mirrored' if default.flip else ''}", evaluate_labels(project, kinds.pseudo_labels(default.method)),
                     seconds["pseudo-labels"]))
    timed("round 1", run_round(project, RoundConfig(device=a.device)))
    rows.append(_row("default + DecoupledNet, round 1", evaluate_labels(project, round_labels(1)), seconds["round 1"]))
    pipeline_seconds = sum(v for k, v in seconds.items() if "paper rule" not in k)
    ratio = seconds["pseudo-labels"] / seconds["pseudo-labels sp-cam (paper rule)"]
    result = {"pseudo_labels_time_ratio": ratio, "data": str(a.data), "images": len(project), "classes": len(project.classes),
              "cpu": cpu_model(), "threads": torch.get_num_threads(), "device": a.device,
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "seconds": seconds, "pipeline_seconds": pipeline_seconds, "rows": rows}
    if not a.no_ablation:
        t0 = time.perf_counter()
        result["ablation"] = run_ablation(project, a.device, log=lambda m: print(m, file=sys.stderr, flush=True))
        seconds["ablation"] = time.perf_counter() - t0
    if not a.no_simulate:
        cfg = SimulateConfig(rounds=a.rounds, correct_fraction=a.correct_fraction, round_config=RoundConfig(device=a.device))
        t0 = time.perf_counter()
        sim = run(simulate(project, cfg, work=work / "simulate")).data
        seconds["simulate"] = time.perf_counter() - t0
        for r in sim["rounds"]:
            rows.append({"method": f"simulated round {r['round']}: {r['corrected']} images corrected in all",
                         "miou": r["miou"],
                         "mean_class_accuracy": r["mean_class_accuracy"], "seconds": r["seconds"]})
        rows.append({"method": "full supervision (DecoupledNet on every mask)", "miou": sim["full_supervision_miou"],
                     "mean_class_accuracy": sim["full_supervision_mean_class_accuracy"], "seconds": None})
        result["simulate"] = sim
    print(f"\nmsrc-dev: {len(project)} photos, {len(project.classes)} classes, no background; "
          f"{cpu_model()}, {torch.get_num_threads()} threads")
    print(f"{'labels':58s} {'mIoU':>6s} {'mAcc':>6s} {'time s':>7s}")
    for r in rows:
        t = "" if r["seconds"] is None else f"{r['seconds']:7.0f}"
        print(f"{r['method']:58s} {r['miou']:6.3f} {r['mean_class_accuracy']:6.3f} {t:>7s}")
    print(f"init through round 1 (default steps): {pipeline_seconds / 60:.1f} min "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    print(f"default pseudo-labels took {ratio:.2f}× the paper rule's SP-CAM run, side by side")
    if "ablation" in result:
        print_ablation(result["ablation"])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
