"""The rounds' records: which rounds a project has, which one is current, rolling back.

Read-only views over the project's database (:meth:`Project.rounds`,
:meth:`Project.current_round`), apart from :mod:`spn_napari.rounds`, which trains them: the dock,
the annotator and predicting a photo read the history without importing the training loop.
"""

from __future__ import annotations

import numpy as np

from .errors import ProjectError
from .store import Project

__all__ = ["history", "current_round", "round_uncertainty", "rollback"]


def history(project: Project) -> list[dict]:
    """Every round's record, oldest first: round, parent, created, model, config, seed, seconds, metrics."""
    return project.rounds()


def current_round(project: Project) -> int | None:
    """The round whose labels are current (None before the first round)."""
    return project.current_round()


def round_uncertainty(project: Project, r: int | None = None) -> np.ndarray | None:
    """(n_images,) float64 uncertainty of round r's predictions (default: the current round), each
    image's mean of 1 - the winning probability; None where the round has none (round 0, none yet)."""
    r = current_round(project) if r is None else r
    return None if r is None else project.round_uncertainty(r)


def _entry(project: Project, r: int) -> dict:
    """Round r's record; a ProjectError naming the rounds there are when it has none."""
    for entry in history(project):
        if entry["round"] == r:
            return entry
    have = ", ".join(str(e["round"]) for e in history(project)) or "none yet"
    raise ProjectError(f"{project.root}: there is no round {r} (rounds: {have}) — "
                       f"see `spn-napari history {project.root}`.")


def rollback(project: Project, r: int) -> dict:
    """Make round r current again (nothing is deleted); returns its record."""
    entry = _entry(project, r)
    project.set_current_round(r)
    return entry
