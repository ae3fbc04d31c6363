"""One JSON object a line: how the dock's long-lived children (``spn-napari serve``, ``spn-napari
live``) talk, a request a line on stdin, an event a line on stdout."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO

from .errors import SpnError

__all__ = ["emit", "answer_lines"]


def emit(out: IO[str], event: dict) -> None:
    """Write ``event`` as one line and flush it (the reader waits for whole lines)."""
    out.write(json.dumps(event) + "\n")
    out.flush()


def answer_lines(stdin: IO[str], stdout: IO[str], answer: Callable[[dict], dict]) -> None:
    """Answer each request line of ``stdin`` until it ends: ``answer(request)``'s dict as
    ``{"event": "done", "id": the request's id, ...}``; a request that cannot be answered (one of
    the engine's errors, a file that cannot be read, a malformed line) as ``{"event": "error",
    "id": ..., "message": "one line"}``, and the next request is read."""
    for line in stdin:
        if not line.strip():
            continue
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            emit(stdout, {"event": "done", "id": rid, **answer(req)})
        except (SpnError, OSError, KeyError, ValueError, TypeError) as exc:
            message = str(exc) if isinstance(exc, SpnError) else f"{type(exc).__name__}: {exc}"
            emit(stdout, {"event": "error", "id": rid, "message": message})
