"""pseudo-labels in 1 process against 2 torchrun processes (gloo), side by side on copies of one project.

    python benchmarks/bench_sharded_inference.py [--data ../shared/data/msrc-dev] [--images 60]
                                                 [--repeat 2] [--json]

Under torchrun, `pseudo-labels` splits the images over the ranks: each computes the frozen
encoder's maps and the SPN's evidence and labels of its share and writes them into its own part
of the artifact; rank 0 commits once all are written. Both runs use the machine's cores alike: one
process with all of them as threads, or 2 processes with half each (OMP_NUM_THREADS). The project
(the first ``--images`` photos of the data set, sorted names, ``init --no-background``,
superpixels, a 1-epoch lite0 SPN trained without the cache) is made once; each timed run labels a
fresh copy of it, so it computes the encoder's maps too. The two kinds of run alternate
``--repeat`` times. Writes benchmarks/results/sharded_inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _shared import cpu_model, subset  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], *, nproc: int = 1, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m"]
                if nproc > 1 else [sys.executable, "-m"])
    t0 = time.perf_counter()
    r = subprocess.run([*launcher, "spn_napari", *args], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrc-dev"))
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sharded_inference.json"))
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = subset(Path(a.data), a.images, tmp / "data")
        base = tmp / "base"
        _cli(["init", str(base), "--from", str(data), "--no-background", "--progress", "none"], threads=cores)
        _cli(["superpixels", str(base), "--progress", "none"], threads=cores)
        _cli(["train-spn", str(base), "--epochs", "1", "--no-cache", "--device", "cpu", "--progress", "none"],
             threads=cores)
        times: dict[int, list[float]] = {1: [], 2: []}
        for k in range(a.repeat):
            for nproc in (1, 2):
                work = tmp / f"run{nproc}-{k}"
                shutil.copytree(base, work)
                times[nproc].append(_cli(["pseudo-labels", str(work), "--device", "cpu", "--progress", "none"],
                                         nproc=nproc, threads=max(1, cores // nproc)))
                shutil.rmtree(work)
    result = {"machine": cpu_model(), "cores": cores, "images": a.images,
              "seconds": {str(n): t for n, t in times.items()},
              "images_per_s": {str(n): a.images / statistics.median(t) for n, t in times.items()}}
    result["speedup_2_vs_1"] = result["images_per_s"]["2"] / result["images_per_s"]["1"]
    print(f"pseudo-labels of {a.images} photos ({cpu_model()}, {cores} cores): "
          f"1 process {result['images_per_s']['1']:.2f} images/s, 2 processes {result['images_per_s']['2']:.2f} "
          f"images/s ({result['speedup_2_vs_1']:.2f}×; each time includes starting the processes)")
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    if a.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
