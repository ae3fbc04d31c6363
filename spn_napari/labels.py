"""Which labels an image has, from the SPN's pseudo-labels through people's corrections to a
round's prediction, and what the next round trains on.

Read top-down, one image's labels go:

1. ``pseudo/fused``, ``pseudo/sp-cam`` or ``pseudo/cam``: the SPN's pseudo-labels, before any round
   (the method :func:`pseudo_method` names);
2. ``round/0/labels``: a copy of them, made when the first round starts;
3. ``round/k/labels``: round k's DecoupledNet prediction (:mod:`spn_napari.rounds.refine`);
4. the live head's superpixel labels over them (:func:`base_labels`), where ``propagate`` or the
   dock's live propagation ran (:mod:`spn_napari.live.head`);
5. the current labels (:func:`current_labels`): those with the pixels a person set in the image's
   correction painted over them — what the viewer shows, ``export`` writes and ``evaluate`` scores;
6. the next round's target (:func:`training_target`): the same, without rejected images, and in
   round 1 without the pixels whose SPN evidence was a coin flip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ProjectError, SpnError
from .evidence.cam import METHODS
from .evidence.maps import unsure_evidence
from .metrics import IGNORE
from .project import kinds
from .project.live_labels import live_doubt, overlay, read_live
from .project.store import Project

__all__ = ["base_kind", "pseudo_method", "base_labels", "current_labels", "apply_correction", "labels_reader", "training_target",
           "training_target_and_set", "round0_method", "round0_source", "present_classes", "unsure_pixels", "superpixel_majority"]


def superpixel_majority(sp: np.ndarray, labels: np.ndarray, n_labels: int = 256,
                        ignore: int | None = None) -> np.ndarray:
    """(N,) the most frequent value of ``labels`` in each superpixel of ``sp`` (H, W, ids 0..N-1);
    ``ignore``: a value never counted (a superpixel of only that value gets it). Ties: the lower value."""
    n = int(sp.max()) + 1
    idx = sp.ravel().astype(np.int64) * n_labels + labels.ravel().astype(np.int64)
    counts = np.bincount(idx, minlength=n * n_labels).reshape(n, n_labels)  # (N, L)
    if ignore is not None:
        only = counts.sum(1) == counts[:, ignore]
        counts[:, ignore] = -1
        return np.where(only, ignore, counts.argmax(1)).astype(np.uint8)
    return counts.argmax(1).astype(np.uint8)


def pseudo_method(project: Project) -> str | None:
    """The method of the project's pseudo-labels: the one ``pseudo-labels`` last wrote (recorded in
    the project's settings), else the first of :data:`~spn_napari.evidence.cam.METHODS` that exists; None
    when none does."""
    last = (project.settings.get("evidence") or {}).get("method")
    if last and project.artifact(kinds.pseudo_labels(last)):
        return last
    return next((m for m in METHODS if project.artifact(kinds.pseudo_labels(m))), None)


def base_kind(project: Project) -> str:
    """The artifact the current labels come from: the current round's labels, or the
    pseudo-labels before any round; a ProjectError naming the step when there are none."""
    r = project.current_round()
    if r is not None:
        return kinds.round_labels(r)
    method = pseudo_method(project)
    if method is None:
        raise ProjectError(f"{project.root}: no pseudo-labels in this project yet — run "
                           f"`spn-napari pseudo-labels {project.root}` first.")
    return kinds.pseudo_labels(method)


def base_labels(project: Project, i: int, sp: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 labels of image i before its correction: the current round's (or the
    pseudo-labels before any round), with the live head's superpixels over them where it ran
    (:mod:`spn_napari.project.live_labels`; ``sp``: image i's superpixels, when the caller has them)."""
    return overlay(project, i, project.read(base_kind(project), i), sp)


def current_labels(project: Project, i: int) -> np.ndarray:
    """(H, W) uint8 labels of image i as the user sees them: :func:`base_labels` with the
    image's corrected pixels painted over them."""
    return apply_correction(base_labels(project, i), project.correction(i))


def apply_correction(labels: np.ndarray, corr: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``labels`` with a correction's set pixels painted over them (``corr`` from Project.correction)."""
    if corr is None:
        return labels
    fixed, set_mask = corr
    return np.where(set_mask, fixed, labels).astype(np.uint8)


def labels_reader(project: Project, kind: str | None) -> Callable[[int], np.ndarray]:
    """i -> (H, W) labels: of artifact ``kind``, or the current labels when ``kind`` is None."""
    if kind is None:
        base_kind(project)  # fails early, naming the missing step
        return lambda i: current_labels(project, i)
    project.require(kind)
    return lambda i: project.read(kind, i)


def round0_method(project: Project, start_from: str = "auto") -> str | None:
    """The pseudo-label method round 0's labels come from ('fused', 'sp-cam' or 'cam'): the one
    recorded with round 0 when the project has it; before, ``start_from`` as a round's
    ``--start-from`` says it, checked: "auto" is the method the project's pseudo-labels have
    (:func:`pseudo_method`; None without any)."""
    zero = next((e for e in project.rounds() if e["round"] == 0), None)
    if zero:
        return zero["config"]["start_from"]
    if start_from == "auto":
        return pseudo_method(project)
    if start_from not in METHODS:
        raise SpnError(f"--start-from {start_from}: use auto, {', '.join(METHODS)}.")
    return start_from


def round0_source(project: Project, start_from: str = "auto") -> str:
    """The pseudo-labels round 0 copies (``pseudo/<method>``, method by :func:`round0_method`); a
    ProjectError naming the step to run when the project does not have them."""
    method = round0_method(project, start_from)
    source = kinds.pseudo_labels(method or "fused")
    if project.artifact(source) is None:
        what, option = (f"{method} pseudo-labels", f" --method {method}") if method else ("pseudo-labels", "")
        raise ProjectError(f"{project.root}: no {what} in this project yet — run "
                           f"`spn-napari pseudo-labels {project.root}{option}` first.")
    return source


def training_target(project: Project, i: int, kind: str | None = None, *,
                    ignore_band: float = 0.0, method: str | None = None) -> np.ndarray | None:
    """Image i's target for the next round: ``kind``'s labels (default: the current ones),
    corrected pixels overriding them pixel for pixel; None when the image is rejected.

    With ``ignore_band`` > 0 and round 0 (the SPN's pseudo-labels) as the base, pixels whose
    evidence lies within the band of the 50 % threshold are IGNORE unless a person set them; where
    the live head painted the labels, those whose best two classes it scores within the band.
    ``method``: :func:`round0_method`, looked up when not given (a trainer reading every image
    passes it once rather than have each sample query the rounds).
    """
    return training_target_and_set(project, i, kind, ignore_band=ignore_band, method=method)[0]


def training_target_and_set(project: Project, i: int, kind: str | None = None, *, ignore_band: float = 0.0,
                            method: str | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`training_target` and the pixels a person set in it ((H, W) bool; None without a
    correction), from one read of the correction (a trainer that weighs those pixels needs both)."""
    if project.review(i) == "rejected":
        return None, None
    current = base_kind(project)
    kind = kind or current
    band = ignore_band > 0 and kind == kinds.round_labels(0) and bool(project.artifact(kinds.SP_CAM)
                                                                      and project.artifact(kinds.CAM))
    live = kind == current and read_live(project, parts=("offsets",)) is not None  # the head's labels on it
    sp = project.read(kinds.SUPERPIXELS, i) if live and band else None  # (H, W): its labels' and its doubt's
    labels = base_labels(project, i, sp) if kind == current else project.read(kind, i)
    if band:
        method = method or round0_method(project)
        unsure = unsure_pixels(project, i, method, ignore_band)  # (H, W)
        doubt = live_doubt(project, i, ignore_band, sp) if live else None  # where the head painted: its doubt
        if doubt is not None:
            unsure = np.where(doubt[0], doubt[1], unsure)
        labels = np.where(unsure, IGNORE, labels).astype(np.uint8)
    corr = project.correction(i)
    return apply_correction(labels, corr), None if corr is None else corr[1]


def unsure_pixels(project: Project, i: int, method: str, band: float) -> np.ndarray:
    """(H, W) bool: image i's pixels whose ``method`` evidence is within ``band`` of the threshold
    (without background: whose best two tags are that close), normalised as its labels were made."""
    return unsure_evidence(project, i, method, band)


def present_classes(project: Project, i: int) -> list[int]:
    """Image i's classes (0-based): its tags, plus any class a person painted in its correction."""
    present = set(project.images[i].tags)
    corr = project.correction(i)
    if corr is not None:
        present |= {int(v) - 1 for v in np.unique(corr[0][corr[1]]) if 0 < v <= len(project.classes)}
    return sorted(present)
