"""The dock's live propagation child (``spn-napari live``): every saved correction relabels the
project in the background, the viewer never waits (:class:`~.server_child.ServerChild`).

At most one refit is in flight: the photos saved meanwhile go into the next request together, so
a hurried person's ten answers cost one or two refits, not ten, and the newest labels come last."""

from __future__ import annotations

from qtpy.QtCore import Signal

from ..jobs import live_command
from .server_child import ServerChild


class LiveWorker(ServerChild):
    """``changed(images)`` after a save -> ``relabelled(dict)``: the child's 'done' event
    ({"changed", "photos", "round", "seconds", ...}) or an 'error' one ({"message"}); also an
    'error' when the project cannot be propagated at all (no pseudo-labels: "id" None)."""

    relabelled = Signal(dict)

    def __init__(self, project, parent=None) -> None:
        super().__init__(lambda: live_command(self.project), "Propagate: the live head's process had stopped; "
                         "starting a new one", parent)
        self.project = project
        self._pending: set[int] = set()
        self._due = False  # a refit is asked for and not sent yet
        self._waiting: int | None = None  # the request in flight
        self.answered.connect(self._answered)

    def changed(self, images=()) -> None:
        """Photos whose corrections were just saved (none: refit on what is saved): refit after them,
        now or after the refit in flight."""
        self._pending.update(int(i) for i in images)
        self._due = True
        if self._waiting is None:
            self._flush()

    def _flush(self) -> None:
        if self._due:
            images, self._pending, self._due = sorted(self._pending), set(), False
            self._waiting = self.send({"images": images})

    def _answered(self, ev: dict) -> None:
        if ev.get("id") is None or ev.get("id") == self._waiting:
            if ev.get("id") is not None:
                self._waiting = None
            self.relabelled.emit(ev)
            self._flush()

    def stop(self) -> None:
        super().stop()
        self._pending.clear()
        self._due, self._waiting = False, None
