"""A CLI step in a child process, read through QProcess signals: the Qt event loop never waits."""

from __future__ import annotations

import time

from qtpy.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ..jobs import CHILD_NICE, child_threads, error_message, parse_event

CANCEL_GRACE_MS = 1500  # SIGTERM first (clean stop); SIGKILL if the child is still there after this


def child_process(argv: list[str], parent=None) -> QProcess:
    """A QProcess (not started) for ``argv`` as the dock runs its children: at a lower CPU
    priority and with every core but one (:data:`~spn_napari.jobs.CHILD_NICE`,
    :func:`~spn_napari.jobs.child_threads`), so the viewer keeps a core."""
    proc = QProcess(parent)
    proc.setProgram(argv[0])
    proc.setArguments(argv[1:])
    env = QProcessEnvironment.systemEnvironment()
    env.insert("SPN_NAPARI_NICE", str(CHILD_NICE))
    env.insert("SPN_NAPARI_THREADS", str(child_threads()))
    proc.setProcessEnvironment(env)
    return proc


class ChildJob(QObject):
    """Runs ``argv``; emits ``progressed(Event)`` per JSON line, then ``finished(ok, message)``."""

    progressed = Signal(object)
    finished = Signal(bool, str)

    def __init__(self, argv: list[str], parent=None) -> None:
        super().__init__(parent)
        self.argv, self.started_at, self.last = argv, None, None
        self.cancelled = False
        self._buf, self._err = b"", b""
        self.proc = child_process(argv, self)
        self.proc.readyReadStandardOutput.connect(self._read_out)
        self.proc.readyReadStandardError.connect(self._read_err)
        self.proc.finished.connect(self._done)
        self.proc.errorOccurred.connect(self._failed_to_start)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc.start()

    def running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def cancel(self) -> None:
        if self.running():
            self.cancelled = True
            self.proc.terminate()  # SIGTERM: the CLI cancels cleanly
            QTimer.singleShot(CANCEL_GRACE_MS, self._kill_if_alive)

    def stop(self) -> None:
        """End the child now and say nothing (the dock is closing): its signals are disconnected
        first, then SIGTERM, and SIGKILL after :data:`CANCEL_GRACE_MS`. Waits for the end, so no
        QProcess is destroyed while its process runs."""
        for signal in (self.proc.readyReadStandardOutput, self.proc.readyReadStandardError,
                       self.proc.finished, self.proc.errorOccurred):
            signal.disconnect()
        if self.running():
            self.cancelled = True
            self.proc.terminate()
            if not self.proc.waitForFinished(CANCEL_GRACE_MS):
                self.proc.kill()
                self.proc.waitForFinished(CANCEL_GRACE_MS)

    def _kill_if_alive(self) -> None:
        if self.running():
            self.proc.kill()

    def _read_out(self) -> None:
        self._buf += bytes(self.proc.readAllStandardOutput())
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            ev = parse_event(line.decode("utf-8", "replace"))
            if ev is not None:
                self.last = ev
                self.progressed.emit(ev)

    def _read_err(self) -> None:
        self._err += bytes(self.proc.readAllStandardError())

    def _done(self, code: int, status) -> None:
        self._read_out()
        self._read_err()
        if self.cancelled:
            self.finished.emit(False, "cancelled — the project keeps its last completed step")
        elif code == 0 and status == QProcess.ExitStatus.NormalExit:
            self.finished.emit(True, "")
        else:
            crashed = status != QProcess.ExitStatus.NormalExit
            self.finished.emit(False, error_message(self._err.decode("utf-8", "replace"), -9 if crashed else code))

    def _failed_to_start(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.finished.emit(False, f"could not start {self.argv[0]}")
