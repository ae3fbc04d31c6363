"""What the benchmarks share: the machine they ran on, how their results are written, and the data
they split or generate (seeded folds, a data set's first images, tiny generated data sets).

Benchmarks import this as ``from _shared import …``: benchmarks/ is on sys.path both when a script
runs as ``python benchmarks/NAME.py`` and under ``python -m benchmarks NAME``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
"""The repository."""


# -- the machine and the results --------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """{"cpu": model name, "cores": logical cores} of this machine."""
    return {"cpu": cpu_model(), "cores": os.cpu_count()}


def threads() -> int | None:
    """torch's intra-op thread count when torch is imported, else the machine's logical cores."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else os.cpu_count()


def commit() -> str | None:
    """The repository's ``git rev-parse HEAD``, or None where git or the repository is missing."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def command_line() -> str:
    """How this benchmark was started (``python benchmarks/NAME.py ARGS``), recorded in its JSON so
    that a table copied from the JSON names the command that reproduces it."""
    script = Path(sys.argv[0])
    name = f"benchmarks/{script.name}" if script.parent.name == "benchmarks" else str(script)
    return " ".join(["python", name, *map(shlex.quote, sys.argv[1:])])


def write_results(path, res: dict) -> Path:
    """Write a benchmark's results as indented JSON at ``path`` (its folder made if missing).

    Where ``res`` lacks them, the file also records how it was made: ``command``
    (:func:`command_line`), ``commit`` (:func:`commit`), ``machine`` (:func:`machine`) and
    ``threads`` (:func:`threads`). ``res`` itself is left as it is."""
    made = {"command": command_line(), "commit": commit(), "machine": machine(), "threads": threads()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**res, **{k: v for k, v in made.items() if k not in res}}, indent=1) + "\n")
    return path


def returned(events):
    """Drain an engine generator and give what it returns (``head = yield from LiveHead.open(…)``'s
    value, outside a generator)."""
    try:
        while True:
            next(events)
    except StopIteration as stop:
        return stop.value


# -- data: folds, subsets, generated data sets ------------------------------------------------

def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k folds of image indices, a seeded random split."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[j::k]) for j in range(k)]


def subset(data: Path, n: int, out: Path) -> Path:
    """The first ``n`` images of a generic data set (sorted names), copied to ``out``."""
    lines = (data / "labels.csv").read_text(encoding="utf-8").splitlines()
    rows = sorted(lines[1:])[:n]
    (out / "images").mkdir(parents=True)
    for row in rows:
        name = Path(row.split(",", 1)[0]).stem
        shutil.copy(next((data / "images").glob(f"{name}.*")), out / "images")
    (out / "labels.csv").write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    shutil.copy(data / "classes.txt", out / "classes.txt")
    return out


TINY_CLASSES = ("disc", "square", "bar")


def write_tiny_dataset(out: Path, n: int, *, size: int = 16, seed: int = 0) -> Path:
    """A generic-layout data set of ``n`` ``size``×``size`` images: noise with one or two shapes of
    the classes (tags say which), under ``out``; returns ``out``. For the store's scale benchmarks:
    pixels cost nothing, so what is measured is what each image costs the project's bookkeeping."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(TINY_CLASSES) + "\n")
    yy, xx = np.mgrid[:size, :size]
    rows = ["image,labels"]
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        tags = sorted(set(rng.integers(0, len(TINY_CLASSES), rng.integers(1, 3)).tolist()))
        for c in tags:
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            shape = [(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 4) ** 2,
                     (abs(yy - cy) < size // 5) & (abs(xx - cx) < size // 5),
                     abs(yy - cy) < size // 8][c]
            img[shape] = (80 + 60 * c, 200 - 50 * c, 120)
        name = f"img_{i:06d}"
        Image.fromarray(img).save(out / "images" / f"{name}.png", compress_level=1)
        rows.append(f"{name}.png,{';'.join(TINY_CLASSES[c] for c in tags)}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return out


def count_files(root: Path) -> int:
    """Files under ``root``, at any depth."""
    return sum(1 for p in root.rglob("*") if p.is_file())
