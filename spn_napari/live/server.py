"""The dock's live propagation, kept in a child process: ``spn-napari live PROJECT``.

The live head (:class:`~spn_napari.live.head.LiveHead`) stays in memory between requests, so each
answer costs a refit and a relabelling, not a re-read of every photo. One JSON line a request on
stdin, one JSON event a line on stdout:

- while opening: ``{"event": "opening", "what": "descriptors" | "table", "step": k, "total": n}``
  (the first time a round's labels are propagated the descriptors and the table are made), then
  ``{"event": "ready"}``;
- request ``{"id": 3, "images": [12, 40]}``: those photos' corrections were saved (an answer, a
  fill, a stroke, Accept, an undo); the head reads them again, refits, relabels every unreviewed
  photo and commits, then ``{"event": "done", "id": 3, "changed": superpixels, "photos": n,
  "round": r, "seconds": s, "refit_seconds": s}``;
- a request that cannot be answered: ``{"event": "error", "id": 3, "message": "one line"}``, and
  the server goes on.

Before each request the server re-reads the project: when its current round changed (a round
ended, a rollback) the head is opened anew on that round's labels. End of input ends the server.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from ..errors import SpnError
from ..events import Event
from ..json_lines import answer_lines, emit
from ..project.live_labels import live_round
from ..project.store import Project
from .head import LiveHead, PropagateConfig

__all__ = ["serve_live"]


def _open(project: Project, cfg: PropagateConfig, out: IO[str]) -> LiveHead:
    gen = LiveHead.open(project, cfg)
    try:
        while True:
            ev: Event = next(gen)
            emit(out, {"event": "opening", "what": ev.event, "step": ev.step, "total": ev.total})
    except StopIteration as stop:
        return stop.value


def serve_live(root, cfg: PropagateConfig | None = None, stdin: IO[str] = sys.stdin,
               stdout: IO[str] = sys.stdout) -> int:
    """Answer refit requests from ``stdin`` until it ends (see the module's docstring); returns 0,
    or 2 when the project cannot be propagated at all (the reason as an 'error' event)."""
    project, cfg = Project(root), cfg or PropagateConfig()
    try:
        heads = [_open(project, cfg, stdout)]
    except SpnError as exc:
        emit(stdout, {"event": "error", "id": None, "message": str(exc)})
        return 2

    def refit(req: dict) -> dict:
        t0 = time.perf_counter()
        project.reload()
        if live_round(project) != heads[0].r:  # a round ended, or a rollback: its labels
            heads[0] = _open(project, cfg, stdout)
        head = heads[0]
        for i in req.get("images", []):
            head.update_image(int(i))
        seconds = head.refit()
        changed, photos = head.relabel()
        head.save()
        return {"changed": changed, "photos": photos, "round": head.r, "seconds": time.perf_counter() - t0,
                "refit_seconds": seconds}

    emit(stdout, {"event": "ready", "round": heads[0].r})
    answer_lines(stdin, stdout, refit)
    return 0
