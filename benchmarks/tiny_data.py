"""Generated data sets of many tiny images, for the store's scale benchmarks (pixels cost nothing,
so what is measured is what each image costs the project's bookkeeping)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("disc", "square", "bar")


def write_tiny_dataset(out: Path, n: int, *, size: int = 16, seed: int = 0) -> Path:
    """A generic-layout data set of ``n`` ``size``×``size`` images: noise with one or two shapes of
    the classes (tags say which), under ``out``; returns ``out``."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    yy, xx = np.mgrid[:size, :size]
    rows = ["image,labels"]
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        tags = sorted(set(rng.integers(0, len(CLASSES), rng.integers(1, 3)).tolist()))
        for c in tags:
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            shape = [(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 4) ** 2,
                     (abs(yy - cy) < size // 5) & (abs(xx - cx) < size // 5),
                     abs(yy - cy) < size // 8][c]
            img[shape] = (80 + 60 * c, 200 - 50 * c, 120)
        name = f"img_{i:06d}"
        Image.fromarray(img).save(out / "images" / f"{name}.png", compress_level=1)
        rows.append(f"{name}.png,{';'.join(CLASSES[c] for c in tags)}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return out


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())
