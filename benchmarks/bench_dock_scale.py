"""The annotator dock at 20,000 images: Accept, Next unreviewed, an image switch and sorting by
confidence cost what they cost at 200 images.

    xvfb-run -a python benchmarks/bench_dock_scale.py [--sizes 200 20000] [--repeat 20] [--rounds 4]
        [--cache DIR] [--out benchmarks/results/dock_scale.json] [--json]

Why: a person reviews a large data set image by image; if every Accept rebuilt the image list or
rewrote the whole project, the dock would slow down with the data set's size. The goal: Accept and
Next unreviewed at 20,000 images within 1.5× of their time at 200 images, as ratios measured in
one run on one machine (absolute times depend on the machine; the ratio is what the image list
and the store decide).

Projects: --sizes projects of tiny random images (16×16 px, 3 classes, one or two tags each) with
pseudo-labels (``pseudo/sp-cam``, written with ``Project.writer``), made through the public API
(``read_dataset`` + ``Project.create``) once into --cache (default
~/.cache/spn-napari/bench-dock-scale; 20,000 images take a minute or two) and copied afresh for
each run, as Accept writes to them. They are opened in the real dock on a shown napari viewer
(under Xvfb on a headless machine), the sizes taking turns (--rounds times, each time reopened,
--repeat / --rounds of every action a turn), so that a change in the machine's load during the run
(another process on a shared machine) hits both sizes alike. A discarded pass over a copy of the
small project comes first: napari's first draws and Python's first calls would otherwise count
against whichever size goes first.

What is timed (the median of --repeat, each turn's series after one untimed call; each action plus
processing the Qt events it posts, so the canvas and list redraws count; a full garbage collection
before each series):
  accept   ``AnnotatorWidget.accept()`` on the shown image: the store saves its correction and
           review, the list updates that image's row, and the next unreviewed image is shown (a
           first visit). The store's calls (``save_correction``, ``set_review``, ``review``,
           ``reviews``, ``next_with_review``, wrapped on the open project) are timed apart, so
           'store' and 'dock' (the rest: widget, list, layers, redraw) add up to the total.
  next     ``next_unreviewed()`` from an unreviewed image: the store's query, then showing that
           image (a first visit).
  switch   ``show_image(i)`` for images spread over the whole project, each a first visit (its row
           selected and scrolled to in the list).
  sort     sorting the list by confidence (``QTableView.sortByColumn``, as a header click does),
           descending and ascending in turn. The list is loaded with random confidences for
           this: real ones need a trained round, out of reach at 20,000 images here, and the sort
           costs the same for any values.
Opening the project (reading the list's columns, loading the model: median over the turns) is
timed too, for information.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from _dock import SIDE, cached_project, settle
from _shared import cpu_model  # benchmarks/ is on sys.path

GOAL_RATIO = {"accept": 1.5, "next_unreviewed": 1.5}
ACTIONS = ("accept", "next_unreviewed", "switch", "sort_confidence")
STORE_CALLS = ("save_correction", "set_review", "review", "reviews", "next_with_review")
RESULTS = Path(__file__).parent / "results" / "dock_scale.json"


class StoreClock:
    """Milliseconds spent in the open project's store calls (wrapped on the instance)."""

    def __init__(self, project) -> None:
        self.ms = 0.0
        for name in STORE_CALLS:
            setattr(project, name, self._timed(getattr(project, name)))

    def _timed(self, fn):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms += (time.perf_counter() - t0) * 1000
        return call


def time_action(app, clock: StoreClock, action, count: int) -> list[tuple[float, float]]:
    """(total ms, store ms) of ``count`` calls of ``action()``, after one untimed (a warm-up)."""
    gc.collect()
    out = []
    for k in range(count + 1):
        clock.ms = 0.0
        t0 = time.perf_counter()
        action()
        settle(app)
        if k:
            out.append(((time.perf_counter() - t0) * 1000, clock.ms))
    return out


def measure(widget, app, root: Path, count: int, targets) -> dict:
    """Open ``root`` in the dock and time ``count`` of every action there; ``targets`` yields the
    images to switch to. Returns each action's (total, store) ms pairs and the opening's ms."""
    t0 = time.perf_counter()
    widget.open_project(root)  # at its first unreviewed image
    settle(app)
    res = {"open_ms": (time.perf_counter() - t0) * 1000}
    t0 = time.perf_counter()
    widget.refresh_list()
    res["list_load_ms"] = (time.perf_counter() - t0) * 1000
    project = widget.annotator.project
    clock = StoreClock(project)
    res["accept"] = time_action(app, clock, widget.accept, count)
    res["next_unreviewed"] = time_action(app, clock, widget.next_unreviewed, count)
    res["switch"] = time_action(app, clock, lambda: widget.show_image(next(targets)), count)
    model, view = widget.image_list, widget.table
    model.load({**widget.annotator.columns(), "confidence": np.random.default_rng(1).random(len(project)).round(3)},
               project.review)
    orders = itertools.cycle((Qt.SortOrder.DescendingOrder, Qt.SortOrder.AscendingOrder))
    res["sort_confidence"] = time_action(app, clock, lambda: view.sortByColumn(3, next(orders)), count)
    return res


def summary(pairs: list[tuple[float, float]]) -> dict:
    total = [t for t, _ in pairs]
    return {"ms": statistics.median(total), "max_ms": max(total), "store_ms": statistics.median(s for _, s in pairs),
            "dock_ms": statistics.median(t - s for t, s in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=(200, 20_000), metavar=("SMALL", "LARGE"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4, help="the sizes take turns this many times")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "SPN_NAPARI_CACHE", Path.home() / ".cache" / "spn-napari")) / "bench-dock-scale")
    ap.add_argument("--out", type=Path, default=RESULTS, help="the JSON results file")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import napari

    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    t0 = time.perf_counter()
    sources = {n: cached_project(a.cache, n) for n in a.sizes}
    build_s = time.perf_counter() - t0
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SPN annotator")
    widget.timer.stop()  # no autosave tick inside a timed action
    settle(app)
    work = Path(tempfile.mkdtemp(prefix="spn-bench-dock-"))
    count = -(-a.repeat // a.rounds)  # per round and size
    samples = {n: {action: [] for action in (*ACTIONS, "open_ms", "list_load_ms")} for n in a.sizes}
    try:
        shutil.copytree(sources[a.sizes[0]], work / "warm-up")
        measure(widget, app, work / "warm-up", 2, itertools.cycle(range(a.sizes[0])))  # discarded: first draws
        for n, src in sources.items():
            shutil.copytree(src, work / f"n{n}")
        targets = {n: iter(np.linspace(n // 4, n - 1, a.rounds * (count + 1)).astype(int).tolist()) for n in a.sizes}
        for _ in range(a.rounds):  # the sizes in turn, so that a change in the machine's load hits both
            for n in a.sizes:
                for key, value in measure(widget, app, work / f"n{n}", count, targets[n]).items():
                    samples[n][key] += value if isinstance(value, list) else [value]
    finally:
        widget.close()
        viewer.close()
        shutil.rmtree(work, ignore_errors=True)
    per_size = {n: {**{action: summary(samples[n][action]) for action in ACTIONS},
                    "open_ms": statistics.median(samples[n]["open_ms"]),
                    "list_load_ms": statistics.median(samples[n]["list_load_ms"])} for n in a.sizes}
    small, large = a.sizes
    res = {"cpu": cpu_model(), "cores": os.cpu_count(), "sizes": list(a.sizes), "repeat": count * a.rounds,
           "rounds": a.rounds, "image_side": SIDE, "build_or_cache_s": round(build_s, 1),
           "open_ms": {str(n): per_size[n]["open_ms"] for n in a.sizes},
           "list_load_ms": {str(n): per_size[n]["list_load_ms"] for n in a.sizes}, "actions": {}}
    for action in ACTIONS:
        entry = {str(n): per_size[n][action] for n in a.sizes}
        entry["ratio"] = per_size[large][action]["ms"] / per_size[small][action]["ms"]
        entry["dock_ratio"] = per_size[large][action]["dock_ms"] / per_size[small][action]["dock_ms"]
        if action in GOAL_RATIO:
            entry["goal_ratio"] = GOAL_RATIO[action]
        res["actions"][action] = entry
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    if a.json:
        print(json.dumps(res))
        return
    print(f"{res['cpu']} ({res['cores']} cores); median of {res['repeat']}, ms (store + dock)")
    print(f"{'action':<18}{f'{small} images':>24}{f'{large} images':>24}{'ratio':>8}{'dock ratio':>12}  goal")
    for action in ACTIONS:
        e = res["actions"][action]
        cells = [f"{e[str(n)]['ms']:.1f} ({e[str(n)]['store_ms']:.1f} + {e[str(n)]['dock_ms']:.1f})" for n in a.sizes]
        goal = (f"≤ {e['goal_ratio']}×: {'met' if e['ratio'] <= e['goal_ratio'] else 'NOT met'}"
                if "goal_ratio" in e else "")
        print(f"{action:<18}{cells[0]:>24}{cells[1]:>24}{e['ratio']:>7.2f}×{e['dock_ratio']:>11.2f}×  {goal}")
    opens, loads = res["open_ms"], res["list_load_ms"]
    print(f"opening the project: {opens[str(small)]:.0f} / {opens[str(large)]:.0f} ms "
          f"(of which loading the list {loads[str(small)]:.1f} / {loads[str(large)]:.1f} ms)")
    print(f"results: {a.out}")


if __name__ == "__main__":
    main()
