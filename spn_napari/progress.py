"""Progress display for the command line and the recipes: one module, so that the CLI and
:mod:`spn_napari.pipeline` share it without importing each other."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from .events import Event, run
from .job_progress import PHASE_WORDS

__all__ = ["Progress"]


class Progress:
    """Shows an engine generator's events while draining it: a tqdm bar per stage on a terminal
    (``mode="bar"``; ``"auto"``: a bar when stderr is a terminal), one JSON object a line on stdout
    (``"jsonl"``: the stream the dock's child process reads), or nothing (``"none"``).

    ``Progress(mode, desc)(events)`` returns the last event."""

    def __init__(self, mode: str, desc: str) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode, self.desc, self.bar = mode, desc, None

    def __call__(self, events: Iterable[Event]) -> Event | None:
        try:
            return run(events, self.show)
        finally:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def show(self, ev: Event) -> None:
        if self.mode == "jsonl":
            print(ev.to_json(), flush=True)
        elif self.mode == "bar" and ev.total:
            desc = PHASE_WORDS.get(ev.event, self.desc)
            if self.bar is not None and (self.bar.total != ev.total or self.bar.desc != desc):
                self.close()  # a new stage (the feature cache, then training) gets a bar of its own
            if self.bar is None:
                from tqdm import tqdm
                self.bar = tqdm(total=ev.total, desc=desc, file=sys.stderr, dynamic_ncols=True)
            self.bar.n = ev.step
            if "loss" in ev.data:
                self.bar.set_postfix(loss=f"{ev.data['loss']:.3f}", refresh=False)
            self.bar.refresh()
