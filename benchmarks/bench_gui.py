"""The annotator dock's responsiveness: image switching, SP-CAM layer refresh, how long the Qt
event loop is blocked while a refinement round trains in the child process, and Cancel.

    xvfb-run -a python benchmarks/bench_gui.py [--project PATH] [--images 8] [--round-epochs 1]
        [--only switch|sp-cam|event-loop|cancel|segment] [--json]

Why: the plugin's goals are switching images in ≤ 100 ms once an image's view is cached,
refreshing the SP-CAM layer of a 500×500 image in ≤ 1.5 s on a CPU, and never blocking the event
loop for more than 50 ms while a round runs (the training lives in a child process; the GUI only
reads its JSON lines), and a Cancel that ends the child within 2 s. This script measures all four
in one run on a real napari viewer (shown, so the canvas really draws; under Xvfb on a headless
machine) and prints measured / goal.

What is timed:
  switch       ``AnnotatorWidget.show_image(i)`` plus processing the Qt events it posts (the
               canvas redraw), for --images images: first visit (cold: read from the store,
               contours, CAM upsampling) and, after visiting them all, three more passes
               (cached). Medians and maxima; each switch is also split into the dock's own work
               (``show_image`` returning) and the redraw (the events it posted). A full garbage
               collection runs before the clock starts: Python's first one after start-up takes
               ~240 ms here and would otherwise land in whichever switch it happens to follow.
  sp-cam       for a 500×500 demo image and its SLIC superpixels (computed once, as the project
               caches them): ``inference.image_evidence`` with the project's SPN on the CPU at its
               inference side, ``cam.paint_superpixels``, then setting the SP-CAM layer's data and
               processing events. Median of 5 after one warm-up.
  event loop   a 1 ms QTimer ticks in a real Qt event loop while the dock runs ``round --epochs E``
               in its child process on a copy of the project; the longest gap between two ticks,
               minus the interval, until the child exits is the longest time the event loop was
               blocked while the round ran. Loading the finished round (the one gap that spans the
               child's exit, up to a second after) is reported apart, and so are Python's full
               garbage collections in that time (each as long as the walk over every live
               object); the same timer on the idle viewer, for the same duration (at most 30 s),
               gives the machine's own floor.
  cancel       the same round with 50 epochs, cancelled at its first training step: seconds from
               Cancel to the child's exit (SIGTERM, then SIGKILL after a 1.5 s grace).
  segment      the event loop's longest block while Segment labels the shown photo in its child,
               the click's own turn apart from the rest (until the answer is drawn): the first time
               (the click starts the child and adds the empty layer) and three more (the answer
               replaces the layer's pixels); then, for scale, one repaint of the canvas with
               nothing else changed (median of 3): what any change of pixels costs at least.

--project defaults to runs/demo/project (made by the README's first command) when it exists, else
the cached napari sample project (built on first use, about a minute).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from qtpy.QtCore import QEventLoop, QTimer
from qtpy.QtWidgets import QApplication

from spn_napari.project import kinds

from _dock import Ticker, run_loop, settle
from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

GOALS = {"switch_cached_ms": 100.0, "sp_cam_refresh_s": 1.5, "event_loop_block_ms": 50.0, "cancel_s": 2.0,
         "result_loading_ms": 50.0, "segment_block_ms": 50.0, "segment_first_block_ms": 50.0,
         "segment_click_ms": 50.0, "segment_first_click_ms": 50.0}


def project_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from spn_napari.project.store import is_project
    demo = Path("runs/demo/project")
    if is_project(demo):
        return demo
    from spn_napari.napari_io import sample_project
    sample_project()
    import os
    return Path(os.environ.get("SPN_NAPARI_CACHE", Path.home() / ".cache" / "spn-napari")) / "sample-project"


def time_switches(widget, app, images: list[int]) -> dict:
    def visit() -> list[tuple[float, float]]:
        """(total, dock's own work) in ms per image; the rest of the total is the redraw."""
        out = []
        for i in images:
            t0 = time.perf_counter()
            widget.show_image(i)
            t1 = time.perf_counter()
            settle(app)
            out.append(((time.perf_counter() - t0) * 1000, (t1 - t0) * 1000))
        return out

    gc.collect()  # the start-up's garbage: its first full collection (~240 ms) would land in some switch
    cold = visit()
    cached = [t for _ in range(3) for t in visit()]  # three cached passes: the median of them all
    total = [t for t, _ in cached]
    return {"switch_cold_ms": statistics.median(t for t, _ in cold), "switch_cold_max_ms": max(t for t, _ in cold),
            "switch_cached_ms": statistics.median(total), "switch_cached_max_ms": max(total),
            "switch_cached_dock_ms": statistics.median(d for _, d in cached),
            "switch_cached_redraw_ms": statistics.median(t - d for t, d in cached)}


def time_sp_cam_refresh(widget, app, root: Path, repeat: int = 5) -> dict:
    from spn_napari.data.synthetic import generate_demo_image
    from spn_napari.evidence.cam import paint_superpixels
    from spn_napari.evidence.pseudo_labels import image_evidence
    from spn_napari.evidence.superpixels import SuperpixelConfig, slic_labels
    from spn_napari.project.store import Project
    from spn_napari.runtime import load_spn
    project = Project(root)
    model, ckpt = load_spn(project, torch.device("cpu"))
    side = project.artifact(kinds.SP_CAM)["meta"]["sides"][0]
    image, _, _ = generate_demo_image(np.random.default_rng(0), 500)
    image = np.pad(image, ((0, max(0, 500 - image.shape[0])), (0, max(0, 500 - image.shape[1])), (0, 0)),
                   mode="edge")[:500, :500]
    sp = slic_labels(image, SuperpixelConfig(**{k: v for k, v in project.artifact(kinds.SUPERPIXELS)["meta"].items()
                                                 if k in ("n_segments", "compactness", "sigma")}))
    layer = widget.viewer.layers["SP-CAM"]
    widget.viewer.layers["image"].data = image  # the layer shapes agree while we refresh
    times = []
    for k in range(repeat + 1):
        t0 = time.perf_counter()
        ev = image_evidence(model, image, sp, [side], torch.device("cpu"))
        maps = paint_superpixels(ev.sp_scores, sp)  # (C, 500, 500)
        layer.data = maps[0]
        layer.contrast_limits = (0.0, max(float(maps[0].max()), 1e-6))
        settle(app)
        if k:
            times.append(time.perf_counter() - t0)
    return {"sp_cam_refresh_s": statistics.median(times), "sp_cam_side": side, "superpixels": int(sp.max() + 1)}


class FullCollections:
    """Python's full (generation 2) garbage collections on the ticker's clock: each one stops the
    event loop for as long as it walks every live object (a napari process holds ~440k)."""

    def __init__(self, ticker: Ticker) -> None:
        self.ticker, self.spans, self._start = ticker, [], None
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                self._start = self.ticker.now()
            else:
                self.spans.append((self._start, self.ticker.now() - self._start))

    def stop(self) -> None:
        gc.callbacks.remove(self._note)

    def count(self, start: float, end: float) -> int:
        return sum(start <= a <= end for a, _ in self.spans)

    def longest(self, start: float, end: float) -> float:
        return max((d for a, d in self.spans if start <= a <= end), default=0.0)


@contextmanager
def rounds_on_a_copy(widget, root: Path, epochs: int):
    """The dock on a throw-away copy of the project, its rounds set to ``epochs`` on the CPU;
    the project itself is shown again afterwards and never written to."""
    work = Path(tempfile.mkdtemp(prefix="spn-bench-gui-"))
    try:
        copy = work / "project"
        shutil.copytree(root, copy)
        widget.open_project(copy)
        widget.runs.epochs.value = epochs
        widget.runs.device.value = "cpu"
        yield
    finally:
        widget.open_project(root)
        shutil.rmtree(work, ignore_errors=True)


def time_event_loop(widget, root: Path, epochs: int) -> dict:
    with rounds_on_a_copy(widget, root, epochs):
        run_loop(ms=1000)  # the copy's first image is drawn before the clock starts
        ticker = Ticker()
        full_gcs = FullCollections(ticker)
        t0 = ticker.now()
        job = widget.run_step("round")
        ended, result = [], []
        job.proc.stateChanged.connect(lambda state: ended.append(ticker.now()))  # before 'finished'
        job.finished.connect(lambda ok, msg: result.append((ok, msg)))
        run_loop(job.finished)
        run_loop(ms=1000)  # the new round's labels are drawn
        t_end = ticker.now()
        if not result[0][0]:
            raise SystemExit(f"the round failed: {result[0][1]}")
        exit_at = ended[-1]
        running = ticker.blocks(t0, exit_at)
        worst_at = (ticker.worst(t0, exit_at) - t0) / 1000
        idle_from = ticker.now()
        run_loop(ms=int(min(t_end - t0, 30_000)))  # the same timer on the idle viewer
        loading = max(ticker.blocks(exit_at - 1000, t_end, ending_after=True))
        idle = ticker.blocks(idle_from)
        ticker.timer.stop()
        full_gcs.stop()
        return {"full_gc_ms": full_gcs.longest(t0, idle_from), "full_gcs": full_gcs.count(t0, idle_from),
                "event_loop_block_ms": max(running), "event_loop_block_p99_ms": float(np.percentile(running, 99)),
                "round_seconds": (exit_at - t0) / 1000, "event_loop_worst_at_s": worst_at, "result_loading_ms": loading,
                "idle_block_ms": max(idle), "idle_block_p99_ms": float(np.percentile(idle, 99))}


def time_cancel(widget, root: Path) -> dict:
    """Seconds from Cancel to the child's exit, cancelled once the round trains (its first step)."""
    with rounds_on_a_copy(widget, root, 50):
        job = widget.run_step("round")
        training = QEventLoop()
        job.progressed.connect(lambda ev: training.quit() if ev.event == "step" else None)
        training.exec()
        ended = []
        job.proc.stateChanged.connect(lambda state: ended.append(time.perf_counter()))
        t0 = time.perf_counter()
        widget.cancel()
        run_loop(job.finished)
        return {"cancel_s": ended[-1] - t0, "cancel_killed": job.proc.exitStatus() != job.proc.ExitStatus.NormalExit}


def time_segment(widget, repeat: int = 3) -> dict:
    """The event loop's longest blocks while the dock segments its shown photo with Segment's child,
    the click (``segment()`` run from the event loop, as a button's click is) apart from the rest
    (the child's answer filling the layer, and every frame in between): the first request (the
    click starts the child and adds the empty layer), then ``repeat`` more (the child is loaded;
    the answer replaces the layer's pixels). The child's own work is not on the event loop."""
    viewer, target, clicks, blocks = widget.viewer, "image segmentation", [], []
    for _ in range(repeat + 1):
        run_loop(ms=300)
        ticker, answered = Ticker(), QEventLoop()
        t0, span = ticker.now(), []

        def click(ticker=ticker, span=span, answered=answered) -> None:
            span.append(ticker.now())
            widget.segmenting.segment("image")
            span.append(ticker.now())
            widget.segmenting.worker.answered.connect(answered.quit)  # after the panel's own handler

        QTimer.singleShot(0, click)
        answered.exec()
        widget.segmenting.worker.answered.disconnect(answered.quit)
        run_loop(ms=300)  # the layer drawn
        t = [t0] + [a for a in ticker.ticks if a > t0]  # t0: the clock when the click was posted
        gaps = [(a, b, b - a - ticker.interval) for a, b in zip(t, t[1:])]
        clicks.append(max(g for a, b, g in gaps if a <= span[0] and b >= span[1]))
        blocks.append(max(g for a, b, g in gaps if not (a <= span[0] and b >= span[1])))
        ticker.timer.stop()
        assert target in viewer.layers
    widget.segmenting.stop()
    return {"segment_first_click_ms": clicks[0], "segment_first_block_ms": blocks[0],
            "segment_click_ms": max(clicks[1:]), "segment_block_ms": max(blocks[1:]),
            "segment_redraw_ms": time_redraw(widget)}


def time_redraw(widget, repeat: int = 3) -> float:
    """The event loop's block for one repaint of the canvas and nothing else (the camera nudged
    by a ten-thousandth of its zoom, and back), median of ``repeat``: the floor under any action
    that changes pixels, set by the OpenGL in use (a software one under Xvfb)."""
    camera, blocks = widget.viewer.scene.camera, []
    for _ in range(repeat):
        run_loop(ms=300)
        ticker = Ticker()
        t0 = ticker.now()
        zoom = camera.zoom
        QTimer.singleShot(0, lambda zoom=zoom: setattr(camera, "zoom", zoom * 1.0001))
        run_loop(ms=300)
        camera.zoom = zoom
        blocks.append(max(ticker.blocks(t0)))
        ticker.timer.stop()
    return statistics.median(blocks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--round-epochs", type=int, default=1)
    ap.add_argument("--only", choices=("switch", "sp-cam", "event-loop", "cancel", "segment"),
                    help="measure just this part")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None,
                    help="also write the results as JSON here (e.g. benchmarks/results/gui.json)")
    a = ap.parse_args()
    parts = {a.only} if a.only else {"switch", "sp-cam", "event-loop", "cancel", "segment"}
    import napari

    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    root = project_root(a.project)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SPN annotator")
    widget.open_project(root)
    settle(app)
    res = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "project": str(root)}
    if "switch" in parts:
        res.update(time_switches(widget, app, list(range(min(a.images, len(widget.annotator.project))))))
    if "sp-cam" in parts:
        res.update(time_sp_cam_refresh(widget, app, root))
    if "event-loop" in parts:
        res.update(time_event_loop(widget, root, a.round_epochs))
    if "cancel" in parts:
        res.update(time_cancel(widget, root))
    if "segment" in parts:
        res.update(time_segment(widget))
    res["of_goal"] = {k: res[k] / g for k, g in GOALS.items() if k in res}
    widget.close()
    viewer.close()
    if a.out:
        write_results(a.out, {**res, "command": command_line()})
    if a.json:
        print(json.dumps(res))
        return
    print(f"{res['cpu']} ({res['threads']} threads), project {root}")
    if "switch" in parts:
        print(f"  switch image: cached {res['switch_cached_ms']:.1f} ms (max {res['switch_cached_max_ms']:.1f}; "
              f"dock {res['switch_cached_dock_ms']:.1f} + redraw {res['switch_cached_redraw_ms']:.1f}), "
              f"first visit {res['switch_cold_ms']:.1f} ms (max {res['switch_cold_max_ms']:.1f}) — "
              f"{res['of_goal']['switch_cached_ms']:.2f} of the 100 ms goal")
    if "sp-cam" in parts:
        print(f"  SP-CAM refresh, 500×500, {res['superpixels']} superpixels, side {res['sp_cam_side']}: "
              f"{res['sp_cam_refresh_s']:.3f} s — {res['of_goal']['sp_cam_refresh_s']:.2f} of the 1.5 s goal")
    if "cancel" in parts:
        print(f"  Cancel while the round trains: the child gone after {res['cancel_s']:.2f} s "
              f"({'killed after the grace time' if res['cancel_killed'] else 'a clean stop on SIGTERM'}) — "
              f"{res['of_goal']['cancel_s']:.2f} of the 2 s goal")
    if "segment" in parts:
        print(f"  Segment the shown photo, the first time (the child starts): the click {res['segment_first_click_ms']:.0f} ms "
              f"(it adds the empty layer), then {res['segment_first_block_ms']:.0f} ms at most until the answer is "
              f"drawn; again: the click {res['segment_click_ms']:.0f} ms, then {res['segment_block_ms']:.0f} ms — "
              f"goals 50 ms; one repaint of the canvas alone {res['segment_redraw_ms']:.0f} ms")
    if "event-loop" not in parts:
        return
    print(f"  event loop while a round runs in the child ({res['round_seconds']:.0f} s): longest block "
          f"{res['event_loop_block_ms']:.1f} ms, 99th percentile {res['event_loop_block_p99_ms']:.1f} ms "
          f"(idle viewer: {res['idle_block_ms']:.1f} / {res['idle_block_p99_ms']:.1f} ms) — "
          f"{res['of_goal']['event_loop_block_ms']:.2f} of the 50 ms goal")
    print(f"  (the longest block began {res['event_loop_worst_at_s']:.1f} s into the round)")
    print(f"  then loading the new round (table, history, the shown image's new labels, one redraw): "
          f"{res['result_loading_ms']:.0f} ms")
    print(f"  Python's full garbage collections from the round's start to the end of loading: "
          f"{res['full_gcs']}, longest {res['full_gc_ms']:.0f} ms")


if __name__ == "__main__":
    main()
