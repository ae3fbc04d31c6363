"""A 100,000-image project end to end on this machine: init, superpixels, an SPN, pseudo-labels,
1,000 correction saves and a reopen; time of each step and peak memory.

    python benchmarks/bench_100k.py [--images 100000] [--size 16] [--work DIR] [--json]

The images are tiny generated ones (``write_tiny_dataset`` in benchmarks/_shared.py) so that the run measures what a
project of that many images costs, not pixels. The SPN is the small encoder trained for one
epoch: it exists so that pseudo-labels have a model to run, not for its labels. Peak memory is
the largest resident set of this process and, separately, of any child process (superpixels'
workers); after --resume it covers the steps this run did. Writes
benchmarks/results/project_100k.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spn_napari.data.readers import read_dataset
from spn_napari.events import run
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.project import kinds
from spn_napari.project.store import Project
from spn_napari.runtime import default_threads
from spn_napari.train import TrainConfig, train_spn

from _shared import count_files, cpu_model, write_tiny_dataset  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--corrections", type=int, default=1000)
    ap.add_argument("--work", default=None, help="folder for the data set and project (default: a temporary one)")
    ap.add_argument("--resume", action="store_true",
                    help="with --work: keep the steps an interrupted run finished (their times from its log)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "project_100k.json"))
    a = ap.parse_args(argv)
    default_threads()
    tmp = tempfile.TemporaryDirectory() if a.work is None else None
    work = Path(a.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "seconds.json"  # each finished step's time, so that --resume can go on from it
    seconds: dict[str, float] = json.loads(log.read_text()) if a.resume and log.exists() else {}
    resumed: list[str] = []

    def timed(name, fn, done=lambda: False):
        if name in seconds and done():
            print(f"{name:>24}: {seconds[name]:8.1f} s (an earlier run of this script, --resume)", flush=True)
            resumed.append(name)
            return None
        t0 = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t0
        log.write_text(json.dumps(seconds, indent=1))
        print(f"{name:>24}: {seconds[name]:8.1f} s", flush=True)
        return out

    root = work / "project"
    data = work / "data"
    timed("write data set", lambda: write_tiny_dataset(data, a.images, size=a.size), lambda: (data / "labels.csv").exists())
    timed("init", lambda: Project.create(root, read_dataset(data)), lambda: (root / "project.db").exists())
    project = Project(root)
    timed("superpixels", lambda: run(compute_superpixels(project, SuperpixelConfig(n_segments=4))),
          lambda: project.artifact(kinds.SUPERPIXELS) is not None)
    files = count_files(project.root)
    timed("train-spn (1 epoch)", lambda: run(train_spn(project, TrainConfig(
        epochs=1, batch_size=64, encoder="small", device="cpu"))), lambda: project.artifact("spn") is not None)
    timed("pseudo-labels", lambda: run(make_pseudo_labels(project, PseudoLabelConfig(device="cpu"))))
    rng = np.random.default_rng(0)
    picks = rng.choice(len(project), a.corrections, replace=False)
    saves = []

    def corrections():
        for i in picks.tolist():
            info = project.images[i]
            labels = project.read(kinds.pseudo_labels("sp-cam"), i).copy()
            labels[: info.height // 2] = 1 + i % 3
            t0 = time.perf_counter()
            project.save_correction(i, labels, np.ones_like(labels, bool), review="reviewed")
            saves.append(time.perf_counter() - t0)
    timed(f"{a.corrections} correction saves", corrections)
    reopened = timed("reopen", lambda: Project(project.root))
    assert sum(reopened.corrected()) == a.corrections and reopened.reviews().count("reviewed") == a.corrections
    result = {"machine": cpu_model(), "images": a.images, "size": a.size, "seconds": seconds,
              "steps_from_an_earlier_run": resumed,
              "save_correction_ms_median": 1000 * statistics.median(saves),
              "files_after_superpixels": files, "files_per_image_after_superpixels": files / a.images,
              "files_at_end": count_files(project.root),
              "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF), "peak_rss_children_mb": _peak_mb(resource.RUSAGE_CHILDREN)}
    print(json.dumps(result, indent=1))
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
