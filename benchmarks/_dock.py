"""What the dock benchmarks share: tiny random-image projects made through the public API (and
cached between runs), and clocks on the Qt event loop.

``bench_dock_scale.py``, ``bench_suggest_scale.py`` and ``bench_propagate_scale.py`` build their
projects here; ``bench_gui.py`` and ``bench_live_dock.py`` time the event loop with :class:`Ticker`
and :func:`run_loop`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer
from qtpy.QtWidgets import QApplication

from spn_napari.project import kinds

CLASSES = ("cat", "dog", "bird")
SIDE = 16


def build_project(root: Path, n: int, seed: int = 0) -> None:
    """A project of n random SIDE×SIDE images with tags and pseudo-labels, made with the public API."""
    from PIL import Image

    from spn_napari.data.readers import read_dataset
    from spn_napari.project.store import Project
    work = Path(tempfile.mkdtemp(prefix="spn-bench-dock-data-", dir=root.parent))
    try:
        data = work / "data"
        (data / "images").mkdir(parents=True)
        (data / "classes.txt").write_text("\n".join(CLASSES) + "\n")
        rng = np.random.default_rng(seed)
        lines, tags = ["image,labels"], []
        for i in range(n):
            pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / "images" / f"im{i:05d}.png")
            t = sorted(rng.choice(len(CLASSES), size=int(rng.integers(1, 3)), replace=False).tolist())
            tags.append(t)
            lines.append(f"im{i:05d}.png,{';'.join(CLASSES[c] for c in t)}")
        (data / "labels.csv").write_text("\n".join(lines) + "\n")
        project = Project.create(root, read_dataset(data))
        with project.writer(kinds.pseudo_labels("sp-cam")) as w:
            for i, t in enumerate(tags):
                labels = np.zeros((SIDE, SIDE), np.uint8)  # background, a block of each tagged class
                for k, c in enumerate(t):
                    labels[4 * k + 2:4 * k + 8, 3:12] = c + 1
                w.put(i, labels)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_superpixels(root: Path, ids: np.ndarray, seed: int = 1) -> None:
    """Give every photo of the project at ``root`` the superpixels ``ids`` (SIDE, SIDE) and
    random SP-CAM scores, one row per superpixel (what suggestions and propagation read)."""
    from spn_napari.project.store import Project
    project = Project(root)
    rng = np.random.default_rng(seed)
    n_sp = int(ids.max()) + 1
    with project.writer(kinds.SUPERPIXELS) as w:
        for i in range(len(project)):
            w.put(i, ids)
    with project.writer(kinds.SP_CAM) as w:
        for i in range(len(project)):
            w.put(i, rng.random((n_sp, len(project.classes)), dtype=np.float32))


def cached_project(cache: Path, n: int, build=build_project) -> Path:
    """The n-image project in ``cache``, made by ``build(root, n)`` on first use."""
    root = cache / f"n{n}" / "project"
    if not (root.parent / "ready").exists():
        shutil.rmtree(root.parent, ignore_errors=True)
        root.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        build(root, n)
        (root.parent / "ready").write_text(f"{time.perf_counter() - t0:.1f} s to build\n")
    return root


def settle(app: QApplication) -> None:
    app.processEvents()
    app.processEvents()


class Ticker:
    """A 1 ms QTimer whose tick times show how long the event loop was away between ticks."""

    def __init__(self, interval_ms: int = 1) -> None:
        self.clock, self.ticks, self.interval = QElapsedTimer(), [], interval_ms
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(self.now()))
        self.clock.start()
        self.timer.start()

    def now(self) -> float:
        return self.clock.nsecsElapsed() / 1e6

    def worst(self, start: float, end: float) -> float:
        """When (ms on the clock) the longest gap within [start, end] began."""
        t = [(b - a, a) for a, b in zip(self.ticks, self.ticks[1:]) if a >= start and b <= end]
        return max(t)[1]

    def blocks(self, start: float = 0.0, end: float = float("inf"), *, ending_after: bool = False) -> list[float]:
        """Gaps minus the interval, in ms, of the tick pairs that lie within [start, end] (with
        ``ending_after``: that begin there, however late they end)."""
        t = self.ticks
        return [b - a - self.interval for a, b in zip(t, t[1:])
                if a >= start and (a <= end if ending_after else b <= end)]


def run_loop(until_signal=None, ms: int | None = None) -> None:
    """Run a real Qt event loop (as napari does) until the signal fires or ms pass."""
    loop = QEventLoop()
    if until_signal is not None:
        until_signal.connect(loop.quit)
    if ms is not None:
        QTimer.singleShot(ms, loop.quit)
    loop.exec()
