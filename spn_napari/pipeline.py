"""End-to-end recipes over the engine API: what ``spn-napari demo`` and the examples run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .events import Event, run
from .progress import Progress

__all__ = ["run", "init_project", "run_demo", "DEMO_ENCODER"]

DEMO_ENCODER = "small"


def init_project(project_dir: Path | str, dataset_dir: Path | str, progress=None, *, background: bool = True):
    """Read a data set folder (generic or VOC, detected) and create a project from it;
    ``background=False``: the data set has no background class (see :meth:`Project.create`)."""
    from .data.readers import read_dataset
    from .project.store import Project
    return Project.create(project_dir, read_dataset(dataset_dir), progress=progress, background=background)


def run_demo(out: Path, *, n: int = 200, size: int = 160, epochs: int | None = None,
             round_epochs: int | None = None, seed: int = 0, device: str = "auto", progress: str = "auto",
             results: Path | None = None) -> dict:
    """demo data → project → superpixels → SPN → CAM and SP-CAM labels → one refinement round
    (SP-CAM + DecoupledNet) → mIoU table (and ``out/demo_results.json``).

    ``results``: a second copy of that JSON, e.g. ``benchmarks/results/demo.json``, the file the
    README's demo table is copied from (checked by ``tests/test_numbers.py``).

    A demo project that already holds rounds (someone may have corrected it) is never recomputed:
    the stored results are printed again."""
    import torch

    from .data.synthetic import write_demo_dataset
    from .evaluate import evaluate_labels
    from .evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
    from .evidence.superpixels import SuperpixelConfig, compute_superpixels
    from .project.kinds import pseudo_labels, round_labels
    from .project.store import Project, is_project
    from .rounds.refine import RoundConfig, run_round
    from .runtime import default_threads
    from .train import TrainConfig, train_spn

    default_threads()
    out.mkdir(parents=True, exist_ok=True)
    data_dir, project_dir = out / "data", out / "project"
    times: dict[str, float] = {}

    def timed(name: str, events) -> Event | None:
        t0 = time.perf_counter()
        last = Progress(progress, name)(events)
        times[name] = time.perf_counter() - t0
        return last

    if not (data_dir / "labels.csv").exists():
        t0 = time.perf_counter()
        write_demo_dataset(data_dir, n=n, size=size, seed=seed)
        times["demo-data"] = time.perf_counter() - t0
    project = Project(project_dir) if is_project(project_dir) else init_project(project_dir, data_dir)
    results_file = out / "demo_results.json"
    if project.rounds() and results_file.exists():
        summary = json.loads(results_file.read_text())
        _print_table(summary["methods"], summary["seconds"])
        if results is not None:
            _write_json(Path(results), summary)
        print(f"\n{project_dir} already has refinement rounds, so nothing was recomputed; run "
              f"`spn-napari round {project_dir}` for another round.", file=sys.stderr)
        return summary
    # ~100 superpixels suit these ~160-pixel images (about 250 pixels each); measured SP-CAM
    # mIoU 0.37 with 300 and 0.40 with 100 after the same training.
    timed("superpixels", compute_superpixels(project, SuperpixelConfig(n_segments=100)))
    # The demo's generated shapes are not photographs: the small encoder trained from scratch on
    # them is the one whose SP-CAM beats CAM there (docs/real-photos.md); photos get lite0.
    cfg = TrainConfig(device=device, seed=seed, encoder=DEMO_ENCODER, **({"epochs": epochs} if epochs else {}))
    timed("train-spn", train_spn(project, cfg))
    methods = {}
    for method in ("cam", "sp-cam"):
        timed(f"pseudo-labels {method}", make_pseudo_labels(project, PseudoLabelConfig(method=method, device=device)))
        methods[method] = evaluate_labels(project, pseudo_labels(method))
    rcfg = RoundConfig(device=device, seed=seed, **({"epochs": round_epochs} if round_epochs else {}))
    timed("round 1", run_round(project, rcfg))
    methods["sp-cam+dn"] = evaluate_labels(project, round_labels(project.current_round()))
    _print_table(methods, times)
    summary = {"project": str(project_dir), "seconds": times,
               "settings": {"n": n, "size": size, "epochs": cfg.epochs, "round_epochs": rcfg.epochs,
                            "seed": seed, "encoder": DEMO_ENCODER},
               "threads": torch.get_num_threads(),
               "methods": {m: {"miou": r["miou"], "mean_class_accuracy": r.get("mean_class_accuracy"),
                               "per_class": r["per_class"]} for m, r in methods.items()}}
    _write_json(results_file, summary)
    if results is not None:
        _write_json(Path(results), summary)
    print(f"\nproject: {project_dir}  (open it in napari, or run `spn-napari evaluate {project_dir} --json`)",
          file=sys.stderr)
    return summary


def _write_json(path: Path, summary: dict) -> None:
    """Write the demo's summary as indented JSON at ``path`` (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")


def _print_table(results: dict, times: dict) -> None:
    """One row per method: mIoU, mean class accuracy (— in results stored without it), per-class IoU
    (the project's rows: no 'background' column in a project without a background class), time."""
    names = list(next(iter(results.values()))["per_class"])
    head = (f"{'method':9s} {'mIoU':>6s} {'mAcc':>6s} " + " ".join(f"{n[:10]:>10s}" for n in names)
            + f" {'time s':>7s}")
    print(head)
    for method, r in results.items():
        cells = " ".join(f"{'—' if v is None else f'{v:.3f}':>10s}" for v in r["per_class"].values())
        t = times.get(f"pseudo-labels {method}", times.get("round 1", 0) if method == "sp-cam+dn" else 0)
        acc = r.get("mean_class_accuracy")
        print(f"{method:9s} {r['miou']:6.3f} {'—' if acc is None else f'{acc:.3f}':>6s} {cells} {t:7.1f}")
    print(f"train-spn: {times.get('train-spn', 0):.0f} s, superpixels: {times.get('superpixels', 0):.0f} s; "
          f"sp-cam+dn = round 1: a DecoupledNet trained on the SP-CAM labels")
