"""A long-lived predictor: the project's model stays loaded between requests (the dock's Segment).

``spn-napari serve PROJECT`` reads one JSON request a line on stdin and answers one JSON event a
line on stdout:

- on start: ``{"event": "ready"}``;
- request ``{"id": 7, "image": "in.png", "out": "mask.png", "tags": ["cow", "grass"] | null,
  "round": 2 | null}``: the image file is labelled with the project's current model, or round
  ``round``'s (:class:`~spn_napari.predict.segmenter.Segmenter`; ``tags`` null: the model's classifier
  decides) and the mask written as a palette PNG, then
  ``{"event": "done", "id": 7, "out": "mask.png", "round": r, "seconds": s, "loaded": bool}``;
- a request that cannot be answered: ``{"event": "error", "id": 7, "message": "one line"}``, and
  the server goes on.

Why: started per request, a child spends seconds importing torch and loading the model before
labelling one photo in a fraction of a second. Kept alive, only the first request pays that.
Before each request the server re-reads the project: when its current round, its SPN or its
evidence settings changed (a new round, a rollback, new pseudo-labels) it loads the model anew,
so an answer always comes from the model the project has now. End of input ends the server.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO

from ..data.images import load_image
from ..json_lines import answer_lines, emit
from ..project.kinds import SPN
from ..project.store import Project
from .export import write_mask
from .segmenter import Segmenter

__all__ = ["serve", "model_key"]


def model_key(project: Project, wanted: int | None = None) -> str:
    """What decides which model (and settings) labels an image: the round asked for (``wanted``;
    None: the current one), the SPN's checkpoint and the recorded evidence settings; a change
    means loading the model anew."""
    r = project.current_round() if wanted is None else wanted
    return json.dumps([r, project.artifact(SPN), project.settings.get("evidence")], sort_keys=True, default=str)


def serve(root, device: str = "auto", stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    """Answer requests from ``stdin`` until it ends (see the module's docstring); returns 0."""
    project, state = Project(root), {"segmenter": None, "key": None}

    def label(req: dict) -> dict:
        t0 = time.perf_counter()
        project.reload()
        wanted = req.get("round")
        now = model_key(project, wanted)
        loaded = now != state["key"]
        if loaded:
            state["segmenter"], state["key"] = Segmenter.from_project(project, round_no=wanted, device=device), now
        segmenter = state["segmenter"]
        labels = segmenter.predict(load_image(req["image"]), req.get("tags"))  # (H, W) uint8
        write_mask(req["out"], labels, segmenter.palette)
        return {"out": req["out"], "round": segmenter.round, "seconds": time.perf_counter() - t0, "loaded": loaded}

    emit(stdout, {"event": "ready"})
    answer_lines(stdin, stdout, label)
    return 0
