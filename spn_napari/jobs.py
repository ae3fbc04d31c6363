"""Long work for the GUI, run as a child process: ``python -m spn_napari CMD ... --progress jsonl``.

The child prints one JSON event a line (see :mod:`spn_napari.events`); the GUI reads them without
blocking and cancels with SIGTERM, which the CLI turns into a clean stop (the project keeps its
last completed step). A child process — not a thread — so cancelling frees its GPU memory at once
and a crash or out-of-memory in training cannot take the viewer down.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .events import Event

__all__ = ["STEPS", "command", "init_command", "predict_command", "serve_command", "live_command", "default_project_for", "parse_event",
           "error_message", "devices", "child_threads"]

STEPS = {
    "superpixels": ["superpixels"],
    "train-spn": ["train-spn"],
    "pseudo-labels": ["pseudo-labels"],  # the dock adds --method (auto by default)
    "cam-labels": ["pseudo-labels", "--method", "cam"],
    "round": ["round"],
}
"""The GUI's buttons and the CLI commands they run."""

CHILD_NICE = 10
"""CPU priority of the dock's child processes (Unix nice): the training's threads yield to the
viewer, whose event loop otherwise waits up to ~100 ms for a core on a 2-core machine."""

_TAKES_DEVICE = {"train-spn", "pseudo-labels", "cam-labels", "round"}


def command(step: str, project, *, device: str = "auto", extra: list[str] | None = None) -> list[str]:
    """argv of the child process for one GUI step on ``project``."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}: one of {', '.join(STEPS)}")
    argv = [sys.executable, "-m", "spn_napari", *STEPS[step], str(project), "--progress", "jsonl"]
    if step in _TAKES_DEVICE:
        argv += ["--device", device]
    return argv + list(extra or [])


def init_command(dataset, project, *, background: bool = True) -> list[str]:
    """argv of the child process that imports data set folder ``dataset`` into a new ``project``
    (``background=False``: every pixel is one of the classes, ``init --no-background``)."""
    argv = [sys.executable, "-m", "spn_napari", "init", str(project), "--from", str(dataset), "--progress", "jsonl"]
    return argv + ([] if background else ["--no-background"])


def predict_command(project, inputs, out, *, device: str = "auto", round_no: int | None = None) -> list[str]:
    """argv of the child process that labels image files ``inputs`` with ``project``'s model
    (round ``round_no``; default the current one) into ``out/NAME.png`` (``spn-napari predict``)."""
    argv = [sys.executable, "-m", "spn_napari", "predict", str(project), *map(str, inputs), "--out", str(out),
            "--device", device, "--progress", "jsonl"]
    return argv + ([] if round_no is None else ["--round", str(round_no)])


def serve_command(project, *, device: str = "auto") -> list[str]:
    """argv of the long-lived child that answers the dock's Segment requests (``spn-napari serve``)."""
    return [sys.executable, "-m", "spn_napari", "serve", str(project), "--device", device]


def live_command(project) -> list[str]:
    """argv of the long-lived child that keeps the dock's live head (``spn-napari live``)."""
    return [sys.executable, "-m", "spn_napari", "live", str(project)]


def child_threads() -> int:
    """Torch threads of the dock's children: every core but one, which stays the viewer's (on a
    2-core machine a training on both cores blocked the event loop for up to 164 ms, niced or not)."""
    import os
    return max(1, (os.cpu_count() or 1) - 1)


def default_project_for(dataset) -> Path:
    """Where the dock puts the project made from a data set folder: a sibling ``NAME-project``
    (``NAME-project-2``, … when that exists), so the data set itself is never written to."""
    dataset = Path(dataset).resolve()
    candidate, k = dataset.with_name(f"{dataset.name}-project"), 2
    while candidate.exists():
        candidate, k = dataset.with_name(f"{dataset.name}-project-{k}"), k + 1
    return candidate


def parse_event(line: str) -> Event | None:
    """One stdout line -> Event, or None for anything that is not an event line."""
    try:
        d = json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(d, dict) or "event" not in d:
        return None
    step, total = d.pop("step", 0), d.pop("total", 0)
    return Event(d.pop("event"), step, total, d)


def error_message(stderr: str, code: int) -> str:
    """What to tell the user when a child ends badly: its one-line error, or the last line of
    an unexpected crash, never a whole traceback."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("spn-napari: error:"):
            return ln.removeprefix("spn-napari: error:").strip()
    if code in (-9, 137):
        return "the job was killed (out of memory?) — try a smaller --batch-size or fewer images"
    last = lines[-1] if lines else f"exit status {code}"
    return f"the job failed: {last}"


def devices() -> list[str]:
    """'auto', 'cpu' and every visible CUDA device, for the GUI's device selector."""
    import torch
    return ["auto", "cpu", *[f"cuda:{k}" for k in range(torch.cuda.device_count())]]
