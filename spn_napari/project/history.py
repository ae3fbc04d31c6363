"""Rolling back to a round, and a round's per-image uncertainty.

Which rounds a project has and which one is current are the project's own answers
(:meth:`Project.rounds`, :meth:`Project.current_round`); this module acts on them apart from
:mod:`spn_napari.rounds.refine`, which trains them, so the dock and predicting a photo roll back and read
uncertainty without importing the training loop.
"""

from __future__ import annotations

import numpy as np

from ..errors import ProjectError
from .store import Project

__all__ = ["round_uncertainty", "rollback"]


def round_uncertainty(project: Project, r: int | None = None) -> np.ndarray | None:
    """(n_images,) float64 uncertainty of round r's predictions (default: the current round), each
    image's mean of 1 - the winning probability; None where the round has none (round 0, none yet)."""
    r = project.current_round() if r is None else r
    return None if r is None else project.round_uncertainty(r)


def _entry(project: Project, r: int) -> dict:
    """Round r's record; a ProjectError naming the rounds there are when it has none."""
    for entry in project.rounds():
        if entry["round"] == r:
            return entry
    have = ", ".join(str(e["round"]) for e in project.rounds()) or "none yet"
    raise ProjectError(f"{project.root}: there is no round {r} (rounds: {have}) — "
                       f"see `spn-napari history {project.root}`.")


def rollback(project: Project, r: int) -> dict:
    """Make round r current again (nothing is deleted); returns its record."""
    entry = _entry(project, r)
    project.set_current_round(r)
    return entry
