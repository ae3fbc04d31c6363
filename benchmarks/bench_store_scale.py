"""The project store at 200 and at 20,000 images, side by side in one run: what one image costs.

    python benchmarks/bench_store_scale.py [--small 200] [--large 20000] [--repeat 50] [--json]

Both projects hold tiny generated images (16×16 px, ``write_tiny_dataset`` in benchmarks/_shared.py), so pixels cost
nothing and what is measured is the bookkeeping: ``init`` time per image, ``save_correction`` and
``set_review`` (median of ``--repeat`` calls on random images: what the dock's Accept and
autosave cost), the next unreviewed image, one image's superpixels, opening the project (which
reads the image list: O(images) by design), and the files on disk per image after init +
superpixels. The two projects' calls alternate, so both see the same disk and machine.
The ratios large/small are the result (1.0: a change costs the same however big the project).
Writes benchmarks/results/store_scale.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spn_napari.data.readers import read_dataset
from spn_napari.events import run
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.project import kinds
from spn_napari.project.store import Project

from _shared import count_files, cpu_model, write_tiny_dataset  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def build(n: int, work: Path) -> tuple[Project, dict]:
    """A project of n tiny images with superpixels; init time per image and files per image."""
    data = write_tiny_dataset(work / f"data{n}", n)
    t0 = time.perf_counter()
    project = Project.create(work / f"p{n}", read_dataset(data))
    init_s = time.perf_counter() - t0
    run(compute_superpixels(project, SuperpixelConfig(n_segments=4)))
    return project, {"images": n, "init_ms_per_image": 1000 * init_s / n,
                     "files_per_image": count_files(project.root) / n}


def interleaved(projects: list[Project], repeat: int, seed: int = 0) -> list[dict]:
    """Median ms of each operation on each project, the projects' calls alternating (A, B, A, B,
    ...) so that the disk's and the machine's moods weigh on both alike."""
    rng = np.random.default_rng(seed)
    h, w = projects[0].images[0].height, projects[0].images[0].width
    labels, set_mask = rng.integers(0, 4, (h, w)).astype(np.uint8), np.ones((h, w), bool)
    ops = {
        "save_correction_ms": lambda p, i: p.save_correction(i, labels, set_mask, review="reviewed"),
        "set_review_ms": lambda p, i: p.set_review(i, ("rejected", "reviewed")[i % 2]),
        "next_unreviewed_ms": lambda p, i: p.next_with_review("unreviewed", i),
        "read_superpixels_ms": lambda p, i: p.read(kinds.SUPERPIXELS, i),
        "open_ms": lambda p, i: Project(p.root),
    }
    out = [{} for _ in projects]
    for name, op in ops.items():
        times = [[] for _ in projects]
        for _ in range(repeat if name != "open_ms" else max(3, repeat // 10)):
            for k, p in enumerate(projects):
                i = int(rng.integers(len(p)))
                t0 = time.perf_counter()
                op(p, i)
                times[k].append(time.perf_counter() - t0)
        for k in range(len(projects)):
            out[k][name] = 1000 * statistics.median(times[k])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "store_scale.json"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (p_small, small), (p_large, large) = build(a.small, Path(tmp)), build(a.large, Path(tmp))
        for d, timed in zip((small, large), interleaved([p_small, p_large], a.repeat)):
            d.update(timed)
    keys = [k for k in small if k != "images"]
    result = {"machine": cpu_model(), "small": small, "large": large,
              "ratio": {k: large[k] / small[k] for k in keys}}
    print(f"{'':22} {a.small:>10} {a.large:>10}   ratio   ({cpu_model()})")
    for k in keys:
        print(f"{k:22} {small[k]:10.3f} {large[k]:10.3f}   {result['ratio'][k]:.2f}")
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    if a.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
