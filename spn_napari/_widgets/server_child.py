"""A long-lived child that answers one JSON request a line (``spn-napari serve``, ``spn-napari
live``), read through QProcess signals: the viewer never waits for it.

Requests made before the child said "ready" are queued. A child that died (killed from outside,
out of memory) is noticed at the next request, which starts a new one and says so once; requests
in flight when it died get an error answer, so nothing waits forever. The dock stops it when it
closes or opens another project."""

from __future__ import annotations

import json
from collections.abc import Callable

from qtpy.QtCore import QObject, QProcess, Signal

from ..jobs import error_message, parse_event
from .child_job import child_process


class ServerChild(QObject):
    """``send(request)`` -> ``answered(dict)`` (the child's 'done' or 'error' event as a dict, with
    "event" and the request's "id"); ``progressed(dict)`` for its other events (progress while it
    opens); ``notice(str)`` for what the person should know (a restart)."""

    answered = Signal(dict)
    progressed = Signal(dict)
    notice = Signal(str)

    def __init__(self, argv: Callable[[], list[str]], restart_notice: str, parent=None) -> None:
        super().__init__(parent)
        self._argv, self._restart_notice = argv, restart_notice
        self.proc: QProcess | None = None
        self._ready, self._queue, self._next_id = False, [], 1
        self._inflight: dict[int, dict] = {}  # sent, not answered yet
        self._buf, self._err = b"", b""
        self.starts = 0  # children started so far (the first start is not a restart)

    # ---- the child ---------------------------------------------------------------------------
    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int | None:
        return int(self.proc.processId()) if self.running() else None

    def _start(self) -> None:
        if self.starts and self.proc is not None:  # not after stop(): that one ended on purpose
            self.notice.emit(self._restart_notice)
        self.starts += 1
        self._ready, self._buf, self._err = False, b"", b""
        proc = child_process(self._argv(), self)
        proc.readyReadStandardOutput.connect(self._read_out)
        proc.readyReadStandardError.connect(lambda: self._read_err(proc))
        proc.finished.connect(lambda *_: self._ended(proc))
        self.proc = proc
        proc.start()

    def stop(self) -> None:
        """End the child (the dock closes, or the project changes): close its input, then make sure."""
        if self.running():
            proc, self.proc = self.proc, None
            proc.closeWriteChannel()
            if not proc.waitForFinished(2000):
                proc.kill()
                proc.waitForFinished(1000)
        self._queue.clear()
        self._inflight.clear()

    # ---- requests ----------------------------------------------------------------------------
    def send(self, request: dict) -> int:
        """Queue ``request`` (a JSON object, without "id"), starting the child when needed;
        returns the request's id, which its answer carries."""
        rid, self._next_id = self._next_id, self._next_id + 1
        self._queue.append({"id": rid, **request})
        if not self.running():
            self._start()
        elif self._ready:
            self._send()
        return rid

    def _send(self) -> None:
        while self._queue:
            req = self._queue.pop(0)
            self._inflight[req["id"]] = req
            self.proc.write((json.dumps(req) + "\n").encode())

    def _read_out(self) -> None:
        if self.proc is None:
            return
        self._buf += bytes(self.proc.readAllStandardOutput())
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            ev = parse_event(line.decode("utf-8", "replace"))
            if ev is None:
                continue
            if ev.event == "ready":
                self._ready = True
                self._send()
            elif ev.event in ("done", "error"):
                self._inflight.pop(ev.data.get("id"), None)
                self.answered.emit({"event": ev.event, **ev.data})
            else:
                self.progressed.emit({"event": ev.event, "step": ev.step, "total": ev.total, **ev.data})

    def _read_err(self, proc: QProcess) -> None:
        self._err = (self._err + bytes(proc.readAllStandardError()))[-4000:]

    def _ended(self, proc: QProcess) -> None:
        """The child ended: requests in flight get an error answer (nothing waits forever)."""
        if proc is not self.proc:
            return  # stopped on purpose
        self._ready = False
        crashed = proc.exitStatus() != QProcess.ExitStatus.NormalExit
        message = error_message(self._err.decode("utf-8", "replace"), -9 if crashed else proc.exitCode())
        for req in [*self._inflight.values(), *self._queue]:
            self.answered.emit({"event": "error", "id": req["id"], "message": message})
        self._inflight.clear()
        self._queue.clear()
