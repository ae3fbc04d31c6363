"""train-spn with and without the frozen encoder's feature cache, side by side in one run.

    python benchmarks/bench_feature_cache.py [--data ../shared/data/msrc-dev] [--images 60]
                                             [--epochs 3] [--device auto] [--json]

Why: a frozen encoder (lite0) gives the same map for the same image and side in every epoch,
so `train-spn` computes each image's maps once (at every training side) and trains from them;
`--no-cache` runs the encoder in every step instead. Both runs train the same SPN on the same
first ``--images`` photos of the data set (sorted names) for ``--epochs`` epochs, on copies of
one project with superpixels. Reported: wall time of each `train_spn` call (the cached run
includes computing the cache, from an empty cache), the epochs alone, and the ratio; then the
projected time of a training at the default epoch count from the per-epoch rates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from spn_napari.evidence.superpixels import compute_superpixels
from spn_napari.pipeline import init_project, run
from spn_napari.project.store import Project
from spn_napari.runtime import default_threads
from spn_napari.train import DEFAULT_EPOCHS, TrainConfig, train_spn

from _shared import command_line, cpu_model, subset, write_results  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = DEFAULT_EPOCHS["lite0"]


def _train(project: Project, cfg: TrainConfig) -> dict:
    t0 = time.perf_counter()
    epochs, cache_s = [], 0.0
    last = t0
    for ev in train_spn(project, cfg):
        if ev.event == "start":
            cache_s = time.perf_counter() - t0
            last = time.perf_counter()
        elif ev.event == "epoch":
            now = time.perf_counter()
            epochs.append(now - last)
            last = now
    return {"total_s": time.perf_counter() - t0, "setup_s": cache_s, "epoch_s": epochs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrc-dev"))
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None,
                    help="also write the results as JSON here (e.g. benchmarks/results/feature_cache.json)")
    a = ap.parse_args()
    default_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = init_project(tmp / "base", subset(Path(a.data), a.images, tmp / "data"), background=False)
        run(compute_superpixels(base))
        res = {}
        for name, cache in (("cached", True), ("no cache", False)):
            shutil.copytree(base.root, tmp / name)
            res[name] = _train(Project(tmp / name), TrainConfig(epochs=a.epochs, device=a.device, cache=cache))
        cache_bytes = sum(f.stat().st_size for f in (tmp / "cached" / "data.zarr").glob("features-*/**/*")
                          if f.is_file())
    per_epoch = {k: sum(v["epoch_s"]) / len(v["epoch_s"]) for k, v in res.items()}
    out = {"images": a.images, "epochs": a.epochs, "cpu": cpu_model(), "threads": torch.get_num_threads(),
           "device": a.device, "runs": res, "epoch_s": per_epoch,
           "cache_mb_per_image": cache_bytes / a.images / 1e6,
           "epoch_ratio": per_epoch["no cache"] / per_epoch["cached"],
           "total_ratio": res["no cache"]["total_s"] / res["cached"]["total_s"],
           "projected_default_epochs_s": {k: res[k]["setup_s"] + EPOCHS * per_epoch[k] for k in res}}
    if a.out:
        write_results(a.out, {**out, "command": command_line()})
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{a.images} photos of {a.data}, {a.epochs} epochs, {cpu_model()}, {torch.get_num_threads()} threads")
    for k, v in res.items():
        print(f"  {k:9s} total {v['total_s']:7.1f} s  (set-up incl. cache {v['setup_s']:6.1f} s, "
              f"{per_epoch[k]:6.1f} s an epoch)")
    print(f"  the cache holds {out['cache_mb_per_image']:.2f} MB a photo (all training sides)")
    print(f"  an epoch without the cache takes {out['epoch_ratio']:.1f}× as long; the whole call "
          f"{out['total_ratio']:.1f}×")
    print(f"  {EPOCHS} epochs (the default), projected: "
          + ", ".join(f"{k} {v / 60:.1f} min" for k, v in out["projected_default_epochs_s"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
