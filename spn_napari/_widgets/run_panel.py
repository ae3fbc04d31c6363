"""The dock's "run" panel: one CLI step at a time in a child process, with progress, ETA, a live
loss plot and Cancel. One bar covers the whole job and the label names its phase in words, with
the phase's own ETA (:class:`spn_napari.job_progress.JobProgress` reads the events). The event
loop only ever reads what the child printed (QProcess signals).

The run settings (device, epochs, superpixels, label method) are a magicgui form, as napari
plugins build their forms; the progress bar and the loss plot stay hand-written Qt (they are
repainted under a throttle, see ``_redraw``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

from magicgui.widgets import ComboBox, Container, SpinBox
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..job_progress import JobProgress, Shown
from ..jobs import command, devices
from .child_job import ChildJob
from .line_plot import LinePlot
from .steady_label import SteadyLabel

REDRAW_MS = 250  # the dock shows the child's progress at most this often
BAR_STEPS = 1000  # the bar's range: the job's fraction done, in thousandths

BUTTONS = (("superpixels", "Superpixels"), ("train-spn", "Train SPN"),
           ("pseudo-labels", "Pseudo-labels"), ("round", "Run refinement round"))
METHODS = ("auto", "fused", "sp-cam", "cam")  # pseudo-labels --method (spn_napari.evidence.cam.METHODS and auto)


class RunPanel(QWidget):
    """Buttons for the pipeline's steps, a device selector, progress, loss plot and Cancel.

    ``project_root()`` names the open project (None: nothing open); ``before_start()`` runs before
    each child starts (the dock saves the corrections there, which the child reads). Emits
    ``step_started(step)`` when a child starts and ``step_finished(step, ok, message)`` when it ends.
    """

    step_started = Signal(str)
    step_finished = Signal(str, bool, str)

    def __init__(self, project_root: Callable[[], object], before_start: Callable[[], object],
                 notify: Callable[..., None], parent=None) -> None:
        super().__init__(parent)
        self._root, self._before_start, self._notify = project_root, before_start, notify
        self.job: ChildJob | None = None
        self.device = ComboBox(label="device", choices=devices(), tooltip="where the steps run")
        self.epochs = SpinBox(label="epochs (0: default)", min=0, max=1000, value=0,
                              tooltip="Train SPN and rounds: epochs (0: each step's own default)")
        self.n_segments = SpinBox(label="superpixels (0: 300)", min=0, max=5000, step=50, value=0,
                                  tooltip="Superpixels: about this many per image (0: the default, 300)")
        self.method = ComboBox(label="labels", choices=METHODS, value="auto",
                               tooltip="Pseudo-labels: auto (fused without a background class, SP-CAM with "
                                       "one), fused, sp-cam or cam")
        self.form = Container(widgets=[self.device, self.epochs, self.n_segments, self.method], labels=True)
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.step_buttons = []
        for step, text in BUTTONS:
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, step=step: self.run_step(step))
            buttons.addWidget(b)
            self.step_buttons.append(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, BAR_STEPS)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        prog = QHBoxLayout()
        prog.addWidget(self.progress)
        prog.addWidget(self.cancel_btn)
        self.info = SteadyLabel()
        self.loss_plot = LinePlot("training loss (per step)")
        self._latest: Shown | None = None  # what the next redraw shows
        self._losses, self._tracker = [], JobProgress()
        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)
        layout.addLayout(prog)
        layout.addWidget(self.info)
        layout.addWidget(self.loss_plot)

    def run_step(self, step: str) -> ChildJob | None:
        """Start one CLI step on the open project in a child process (one at a time)."""
        root = self._root()
        if root is None:
            self._notify("open a project first")
            return None
        return self.start(step, command(step, root, device=self.device.value, extra=self.step_options(step)))

    def step_options(self, step: str) -> list[str]:
        """The CLI options of ``step`` that the form sets (a 'default' value adds none)."""
        if step in ("train-spn", "round") and self.epochs.value > 0:
            return ["--epochs", str(self.epochs.value)]
        if step == "superpixels" and self.n_segments.value > 0:
            return ["--n-segments", str(self.n_segments.value)]
        if step == "pseudo-labels":
            return ["--method", self.method.value]
        return []

    def start(self, step: str, argv: list[str]) -> ChildJob | None:
        """Run ``argv`` (a CLI command with ``--progress jsonl``) as the child for ``step``."""
        if self.running():
            self._notify("a job is already running — wait for it or cancel it")
            return None
        self._before_start()
        self.job = ChildJob(argv, self)
        self.job.progressed.connect(self._on_event)
        self.job.finished.connect(lambda ok, msg, step=step: self._on_finished(step, ok, msg))
        with self._one_repaint():
            self._set_progress(0.0)  # empty until the first event (not Qt's busy bar: it would
            self.cancel_btn.setEnabled(True)  # recompose the window ~30 times a second)
            self.info.setText(f"{step}: starting…")
            self.loss_plot.clear()
        self._latest, self._losses, self._tracker = None, [], JobProgress(step)
        self.job.start()
        self.step_started.emit(step)
        return self.job

    def running(self) -> bool:
        return self.job is not None and self.job.running()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def stop(self) -> None:
        """End the running child, if any, and wait for it (the dock is closing): no signal follows."""
        self._redraw_timer.stop()
        if self.job is not None:
            self.job.stop()
            self.job = None

    def set_steps_enabled(self, on: bool) -> None:
        """Enable or disable the step buttons (disabled while a run goes on; Cancel stays)."""
        for b in self.step_buttons:
            b.setEnabled(on)

    def _on_event(self, ev) -> None:
        """Note the child's event (the tracker times it now); the widgets show it at the next
        redraw tick (see _redraw)."""
        if ev.event == "step" and "loss" in ev.data:
            self._losses.append((ev.step, ev.data["loss"]))
        self._latest = self._tracker.update(ev, time.monotonic())
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw(self) -> None:
        """Show the latest progress and the new losses in one repaint. Throttled to REDRAW_MS: in a
        napari window every repaint recomposes the whole window (its canvas is an OpenGL widget),
        ~20 ms under software OpenGL, so one repaint per child line would eat the event loop."""
        shown, self._latest = self._latest, None
        with self._one_repaint():
            self._show_losses()
            if shown is None:
                return
            self._set_progress(shown.fraction)
            self.info.setText(shown.line())

    def _show_losses(self) -> None:
        if self._losses:
            self.loss_plot.extend(self._losses)
            self._losses = []

    def _set_progress(self, fraction: float) -> None:
        """The bar at ``fraction`` (0..1) of the job."""
        self.progress.setValue(round(fraction * BAR_STEPS))

    @contextmanager
    def _one_repaint(self):
        """Turn this panel's changes into one scheduled repaint. QProgressBar repaints at once
        (synchronously) when its range or value changes, so a progress step plus the label and the
        plot cost two or three whole-window recompositions back to back (~20 ms each under
        software OpenGL, 40-60 ms without the event loop in between); with updates off, they
        become the one update that re-enabling them schedules."""
        self.setUpdatesEnabled(False)
        try:
            yield
        finally:
            self.setUpdatesEnabled(True)

    def _on_finished(self, step: str, ok: bool, message: str) -> None:
        self._redraw_timer.stop()
        self._latest = None  # the final state below replaces the child's last event
        with self._one_repaint():
            self._show_losses()
            self._set_progress(1.0 if ok else 0.0)
            self.cancel_btn.setEnabled(False)
            self.info.setText(f"{step}: done" if ok else message)
        if not ok:
            self._notify(f"{step}: {message}", error=not message.startswith("cancelled"))
        self.step_finished.emit(step, ok, message)
