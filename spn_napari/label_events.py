"""A project's labels changed: the compute steps say so, and what keeps something made from the
labels listens.

Pseudo-labels (before any round) and a finished round change a project's current labels, and the
live head relabels them. The suggestion index and the live head's ranking of checks
(:mod:`spn_napari.review.suggest`) are made from them, but the compute steps must not know about the
review queue: they call :func:`labels_changed` and :func:`live_ranking`, and the package's top
level wires who answers (``spn_napari/__init__.py``), by name, so that no listener is imported
before it is needed and no compute module imports one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

__all__ = ["listen", "listeners", "labels_changed", "rank_with", "live_ranking"]

_LISTENERS: list[tuple[str, str]] = []  # (module, function) called with the project, in order
_RANKER: list[tuple[str, str]] = []  # at most one (module, function): ranks the live head's labels for checks


def listen(module: str, function: str) -> None:
    """Call ``module.function(project)`` whenever a project's labels change (once per pair)."""
    if (module, function) not in _LISTENERS:
        _LISTENERS.append((module, function))


def listeners() -> list[Callable]:
    """The listening functions, imported."""
    return [getattr(importlib.import_module(m), f) for m, f in _LISTENERS]


def labels_changed(project) -> None:
    """Tell every listener that ``project``'s current labels changed."""
    for fn in listeners():
        fn(project)


def rank_with(module: str, function: str) -> None:
    """``module.function(live, unreviewed, limit)`` ranks the live head's labels for checks: the
    head keeps its best rows with its labels, in the same atomic file
    (:attr:`spn_napari.project.live_labels.LiveLabels.queue`), so the dock's queue reads them at once."""
    _RANKER[:] = [(module, function)]


def live_ranking(live, unreviewed: np.ndarray, limit: int | None) -> np.ndarray:
    """(S, 6) float64 the ranker's best ``limit`` rows (None: all) for ``live`` (:class:`LiveLabels`) and the
    ``unreviewed`` (n,) bool photos; no rows when nothing ranks (the queue ranks afresh then)."""
    if not _RANKER:
        return np.zeros((0, 6))
    module, function = _RANKER[0]
    return getattr(importlib.import_module(module), function)(live, unreviewed, limit)
