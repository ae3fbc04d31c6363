"""The dock's long-lived Segment child (``spn-napari serve``), read through QProcess signals.

The model stays loaded in the child between requests, so a second Segment costs the labelling
alone; the viewer never waits for either (:class:`~.server_child.ServerChild`)."""

from __future__ import annotations

from ..jobs import serve_command
from .server_child import ServerChild


class PredictWorker(ServerChild):
    """``request(image, out, tags)`` -> ``answered(dict)`` (the server's 'done' or 'error' event as
    a dict, with "event"); ``notice(str)`` for what the person should know (a restart)."""

    def __init__(self, project, device: str = "auto", parent=None) -> None:
        super().__init__(lambda: serve_command(self.project, device=self.device),
                         "Segment: the model's process had stopped; starting a new one (the first "
                         "answer takes a few seconds again)", parent)
        self.project, self.device = project, device

    def request(self, image, out, tags=None, model_round: int | None = None) -> int:
        """Ask for image file ``image`` labelled into ``out`` (tags: class names, or None for
        the model's classifier; ``model_round``: that round's model, None the current one);
        returns the request's id, which its answer carries."""
        return self.send({"image": str(image), "out": str(out), "tags": None if tags is None else list(tags),
                          "round": model_round})
