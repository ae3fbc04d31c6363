"""Peak host memory of `spn-napari pseudo-labels` on 200 vs 2,000 demo images.

    python benchmarks/bench_pseudo_memory.py [--sizes 200,2000] [--workdir DIR] [--device cpu|cuda|auto]
                                             [--image-size 160] [--json]

Why: pseudo-labels must stream one image at a time (read, infer, write, forget), so its peak
memory may not grow with the number of images; a project of 2,000 images should need at most
1.2x the peak of 200 images (goal: ratio <= 1.2). A leak, or anything that holds every image's
CAMs / masks / superpixels in memory, shows up as a ratio near 10.

How, for each N in --sizes (projects in --workdir are reused when present, so reruns are cheap):
  1. `spn-napari demo-data WORKDIR/data-N --n N --size S`, `init WORKDIR/proj-N --from ...`,
     `superpixels WORKDIR/proj-N` (skipped where already done).
  2. A checkpoint without long training: `train-spn --epochs 1` once, on a 16-image project
     (WORKDIR/ckpt-16); its checkpoint file is committed unchanged into every benchmark project
     through `Project.commit_file(kinds.SPN, ...)` with the same meta train.py writes. The demo
     classes are the same for every N, so `load_spn` accepts it; every N uses the same model and
     the same inference side (the checkpoint's scales), so only N differs.
  3. `python -m spn_napari pseudo-labels WORKDIR/proj-N --progress none --device D` as a child
     process, reaped with os.wait4 to get that child's own rusage: ru_maxrss (KiB on Linux) is
     its peak resident set size. Wall seconds and images/s are measured around the same child
     (they include its start-up: about the import row's seconds).
A baseline child that only imports the pseudo-labels code path (torch included) is measured the
same way, so the table also shows the part of the peak that the command adds on top of imports.
Setup steps are not timed and their memory is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spn_napari.project import kinds

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

GOAL_RATIO = 1.2
CKPT_IMAGES = 16


def machine(device: str) -> dict:
    """Machine facts; torch threads as the pseudo-labels child sets them (all cores)."""
    import torch
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads_in_child": max(1, os.cpu_count() or 1), "device": device}
    if device in ("cuda", "auto") and torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
    elif device == "auto":
        info["device"] = "cpu"
    return info


def cli(*args: str, log: Path) -> None:
    """Run one setup command of the CLI; its output goes to the log, failure stops the benchmark."""
    cmd = [sys.executable, "-m", "spn_napari", *args]
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"bench_pseudo_memory: `{' '.join(args)}` failed (exit {rc}) -- see {log}")


def measured_child(cmd: list[str], log: Path) -> dict:
    """Run cmd, reap it with os.wait4: its own peak RSS (MiB) and wall seconds."""
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        sys.exit(f"bench_pseudo_memory: `{' '.join(cmd[2:])}` failed (exit {proc.returncode}) -- see {log}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_rss_mib": ru.ru_maxrss * scale / 2**20, "seconds": seconds}


def prepare(workdir: Path, n: int, image_size: int, log: Path) -> Path:
    """demo-data + init + superpixels for N images, reusing what a previous run left."""
    from spn_napari.project.store import Project, is_project
    data, proj = workdir / f"data-{n}", workdir / f"proj-{n}"
    if not is_project(proj):
        if not (data / "classes.txt").is_file():
            cli("demo-data", str(data), "--n", str(n), "--size", str(image_size), log=log)
        cli("init", str(proj), "--from", str(data), "--progress", "none", log=log)
    if Project(proj).artifact(kinds.SUPERPIXELS) is None:
        cli("superpixels", str(proj), "--progress", "none", log=log)
    return proj


def checkpoint(workdir: Path, image_size: int, device: str, log: Path) -> tuple[bytes, dict]:
    """A 1-epoch SPN from a 16-image project (trained once, reused): file bytes and its meta."""
    from spn_napari.project.store import Project
    proj = prepare(workdir, CKPT_IMAGES, image_size, log)
    if Project(proj).artifact("spn") is not None:
        import torch

        from spn_napari.runtime import load_spn
        try:  # a checkpoint left by an earlier run must still fit the current model code
            load_spn(Project(proj), torch.device("cpu"))
        except Exception:
            print("bench_pseudo_memory: cached checkpoint no longer loads -- retraining it", file=sys.stderr)
            cli("superpixels", str(proj), "--progress", "none", log=log)  # new version drops the stale spn
    if Project(proj).artifact("spn") is None:
        cli("train-spn", str(proj), "--epochs", "1", "--device", device, "--progress", "none", log=log)
    p = Project(proj)
    return p.file("spn").read_bytes(), dict(p.artifact("spn")["meta"])


def give_checkpoint(proj: Path, data: bytes, meta: dict) -> None:
    """Commit the shared checkpoint into proj. Done on every run: committing a new 'spn' drops the
    CAMs and pseudo-labels of an earlier run (outside the measurement), so every measured run
    starts from the same state."""
    from spn_napari.project.store import Project
    Project(proj).commit_file(kinds.SPN, data, suffix=".pt", depends=(kinds.SUPERPIXELS,),
                              meta={**meta, "copied_from": f"ckpt-{CKPT_IMAGES} (bench_pseudo_memory)"})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="200,2000", help="comma-separated image counts (default 200,2000)")
    p.add_argument("--workdir", default=None, help="folder for data sets and projects (default: a temp dir); "
                   "existing projects there are reused")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="device of train-spn and pseudo-labels (default cpu)")
    p.add_argument("--image-size", type=int, default=160, help="demo image size (demo-data --size)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", default=None,
                   help="also write the results as JSON here (e.g. benchmarks/results/pseudo_memory.json)")
    a = p.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in a.sizes.split(",") if s.strip()})
    except ValueError:
        p.error(f"--sizes {a.sizes}: use comma-separated integers, e.g. 200,2000")
    if not sizes or min(sizes) < 1:
        p.error(f"--sizes {a.sizes}: image counts must be at least 1")
    workdir = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench-pseudo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "bench.log"

    data, meta = checkpoint(workdir, a.image_size, a.device, log)
    baseline = measured_child([sys.executable, "-c", "import torch, spn_napari.cli, spn_napari.evidence.pseudo_labels"],
                              log)
    rows = []
    for n in sizes:
        proj = prepare(workdir, n, a.image_size, log)
        give_checkpoint(proj, data, meta)
        r = measured_child([sys.executable, "-m", "spn_napari", "pseudo-labels", str(proj), "--progress", "none",
                            "--device", a.device], log)
        rows.append({"n": n, "images": n, **r, "images_per_s": n / r["seconds"],
                     "above_baseline_mib": r["peak_rss_mib"] - baseline["peak_rss_mib"]})

    lo, hi = rows[0], rows[-1]
    ratio = hi["peak_rss_mib"] / lo["peak_rss_mib"]
    base_lo = max(lo["above_baseline_mib"], 1e-9)
    res = {"machine": machine(a.device), "workdir": str(workdir), "image_size": a.image_size,
           "checkpoint": {"trained_on_images": CKPT_IMAGES, "epochs": 1, "scales": meta.get("scales")},
           "baseline_import_peak_rss_mib": baseline["peak_rss_mib"], "runs": rows,
           "ratio": {"of": [hi["n"], lo["n"]], "peak_rss": ratio,
                     "above_baseline": hi["above_baseline_mib"] / base_lo},
           "goal_ratio": GOAL_RATIO, "meets_goal": ratio <= GOAL_RATIO}
    if a.out:
        write_results(a.out, {**res, "command": command_line()})
    if a.json:
        print(json.dumps(res))
        return
    m = res["machine"]
    dev = f"cuda ({m['gpu']})" if "gpu" in m else m["device"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
          f"{m['torch_threads_in_child']} torch threads in the child; device {dev}")
    print(f"pseudo-labels (sp-cam) on demo images of size ~{a.image_size}; checkpoint: 1 epoch on "
          f"{CKPT_IMAGES} images, sides {meta.get('scales')}; workdir {workdir}")
    print(f"  {'N':>6}{'images':>8}{'peak RSS MiB':>14}{'above import':>14}{'seconds':>10}{'images/s':>10}")
    print(f"  {'import':>6}{'-':>8}{baseline['peak_rss_mib']:>14.1f}{0:>14.1f}{baseline['seconds']:>10.2f}{'-':>10}")
    for r in rows:
        print(f"  {r['n']:>6}{r['images']:>8}{r['peak_rss_mib']:>14.1f}{r['above_baseline_mib']:>14.1f}"
              f"{r['seconds']:>10.2f}{r['images_per_s']:>10.1f}")
    print(f"ratio peak({hi['n']})/peak({lo['n']}) = {ratio:.3f}  (goal <= {GOAL_RATIO}: "
          f"{'met' if res['meets_goal'] else 'NOT met'}); above-import ratio {res['ratio']['above_baseline']:.3f}")


if __name__ == "__main__":
    main()
