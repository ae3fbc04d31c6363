"""Check suggestions at 20,000 photos against 200: the first suggestion and each answer, side by side.

    xvfb-run -a python benchmarks/bench_suggest_scale.py [--sizes 200 20000] [--answers 20] [--rounds 3]
        [--cache DIR] [--out benchmarks/results/suggest_scale.json]

Projects: the tiny random-image projects of ``bench_dock_scale.py`` (16×16 px, 3 classes, one or two
tags), plus what suggestions read: a 4×4 grid of 16 superpixels per image, SP-CAM scores per
superpixel (random) and the ranking (``spn_napari.review.suggest.write_index``, as pseudo-labels writes it),
built once into --cache and copied afresh for each turn (answers write to them). In the real dock
on a shown napari viewer, the sizes take turns (--rounds): the time from pressing *Check
suggestions* to its first suggestion shown (the queue read from the ranking), then --answers
answers (Y, accept the proposal: saved at once, the next suggestion shown), each timed with the Qt
events it posts, after the person's look at the suggestion (``LOOK_S``, untimed: the event loop
runs, and the dock reads the next suggestion's photo ahead in it). Goals: the first suggestion within 1 s at 355 photos, each answer
within 100 ms, and an answer at 20,000 photos within 1.5× of one at 200.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

from _dock import SIDE, add_superpixels, build_project, cached_project, settle
from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

RESULTS = Path(__file__).parent / "results" / "suggest_scale.json"
LOOK_S = 0.3  # a person's look at a suggestion before answering (untimed); real looks take longer


def build(root: Path, n: int) -> None:
    from spn_napari.project.store import Project
    from spn_napari.review.suggest import write_index
    build_project(root, n)
    grid = (np.arange(SIDE)[:, None] // 4 * 4 + np.arange(SIDE)[None, :] // 4).astype(np.int32)  # (16, 16): 16 ids
    add_superpixels(root, grid)
    write_index(Project(root))


def look(app, seconds: float = LOOK_S) -> None:
    """The person looks at the shown suggestion (untimed): the event loop runs, as it would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def one_turn(app, viewer, src: Path, answers: int) -> tuple[float, float, list[float]]:
    """(seconds to open the project in the dock, seconds from pressing *Check suggestions* to its
    first suggestion shown, seconds of each answer) on a fresh copy of ``src``."""
    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    work = Path(tempfile.mkdtemp(prefix="spn-bench-suggest-"))
    try:
        shutil.copytree(src, work / "project")
        widget = AnnotatorWidget(viewer)
        dock = viewer.window.add_dock_widget(widget)
        gc.collect()
        t0 = time.perf_counter()
        widget.open_project(work / "project", image=0)
        settle(app)
        opened = time.perf_counter() - t0
        widget.timer.stop()
        gc.collect()
        t0 = time.perf_counter()
        widget.suggestions.button.click()
        settle(app)
        first = time.perf_counter() - t0
        times = []
        for _ in range(answers):
            look(app)
            gc.collect()
            t0 = time.perf_counter()
            widget.suggestions.accept()
            settle(app)
            times.append(time.perf_counter() - t0)
        widget.suggestions.stop()
        viewer.window.remove_dock_widget(dock)
        viewer.layers.clear()  # the next turn's dock would adopt these layers' (deleted) project
        return opened, first, times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    import napari
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 20000])
    ap.add_argument("--answers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "spn-napari" / "bench-suggest-scale"))
    ap.add_argument("--out", default=None, help=f"write the JSON here (e.g. {RESULTS})")
    ap.add_argument("--project", default=None,
                    help="instead of the scale pair: time a real project (e.g. runs/real_photos/project, the "
                         "355 msrc-dev photos), opening it included")
    a = ap.parse_args()
    if a.project:
        return real_project(a)
    cache = Path(a.cache)
    t0 = time.perf_counter()
    roots = {n: cached_project(cache, n, build) for n in a.sizes}
    built = time.perf_counter() - t0
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    one_turn(app, viewer, roots[a.sizes[0]], 2)  # discarded: first draws and calls
    firsts = {n: [] for n in a.sizes}
    answers = {n: [] for n in a.sizes}
    for _ in range(a.rounds):
        for n in a.sizes:
            _, first, times = one_turn(app, viewer, roots[n], a.answers)
            firsts[n].append(first)
            answers[n] += times[1:]  # the first answer of a turn warms up
    small, big = a.sizes[0], a.sizes[-1]
    res = {"cpu": cpu_model(), "sizes": a.sizes, "answers": a.answers, "rounds": a.rounds, "build_or_cache_s": built,
           "first_suggestion_ms": {str(n): 1000 * statistics.median(firsts[n]) for n in a.sizes},
           "answer_ms": {str(n): 1000 * statistics.median(answers[n]) for n in a.sizes},
           "answer_max_ms": {str(n): 1000 * max(answers[n]) for n in a.sizes}}
    res["answer_ratio"] = res["answer_ms"][str(big)] / res["answer_ms"][str(small)]
    res["goals"] = {"first_suggestion_ms": 1000, "answer_ms": 100, "answer_ratio": 1.5}
    print(f"{cpu_model()}; median ms")
    for n in a.sizes:
        print(f"  {n:6d} photos: first suggestion {res['first_suggestion_ms'][str(n)]:7.1f}, "
              f"answer {res['answer_ms'][str(n)]:6.1f} (max {res['answer_max_ms'][str(n)]:.1f})")
    print(f"answer at {big} / at {small}: {res['answer_ratio']:.2f}× (goal ≤ 1.5×)")
    if a.out:
        write_results(a.out, res)
    viewer.close()
    return 0


def real_project(a) -> int:
    """--project: open a real project in the dock --rounds times (each on a fresh copy), and time
    opening, the first suggestion and --answers answers; the goals are the module docstring's."""
    import napari

    from spn_napari.project.store import Project
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    one_turn(app, viewer, Path(a.project), 2)  # discarded: first draws and calls
    opens, firsts, answers = [], [], []
    for _ in range(a.rounds):
        opened, first, times = one_turn(app, viewer, Path(a.project), a.answers)
        opens.append(opened)
        firsts.append(first)
        answers += times[1:]
    res = {"cpu": cpu_model(), "command": command_line(), "project": a.project, "photos": len(Project(a.project)),
           "answers": a.answers, "rounds": a.rounds,
           "open_ms": 1000 * statistics.median(opens), "first_suggestion_ms": 1000 * statistics.median(firsts),
           "open_to_first_ms": 1000 * statistics.median(o + f for o, f in zip(opens, firsts)),
           "answer_ms": 1000 * statistics.median(answers), "answer_max_ms": 1000 * max(answers),
           "answer_p90_ms": 1000 * sorted(answers)[int(0.9 * (len(answers) - 1))],
           "goals": {"open_to_first_ms": 1000, "answer_ms": 100}}
    print(f"{a.project}: {res['photos']} photos; open {res['open_ms']:.0f} ms, first suggestion "
          f"{res['first_suggestion_ms']:.0f} ms after the button (open to first {res['open_to_first_ms']:.0f} ms, "
          f"goal 1000); answer {res['answer_ms']:.0f} ms median, p90 {res['answer_p90_ms']:.0f}, "
          f"max {res['answer_max_ms']:.0f} (goal 100)")
    if a.out:
        write_results(a.out, res)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
