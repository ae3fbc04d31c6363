"""The live head's labels as the project keeps them: one file a round, read as an overlay.

The live head (:mod:`spn_napari.live.head`) gives every superpixel of every photo nobody reviewed
a class, from the descriptors and every check a person made. What it gives is kept as artifact
``live/<r>`` (:func:`spn_napari.project.kinds.live_labels`; r is the current round, 0 also before any
round), one ``.npz`` file written atomically with the head's weights, so the labels are project
state like any other: committed in one transaction, rolled back with the rounds (rolling back
to round r brings ``live/r`` back), and what the next round trains on (:mod:`spn_napari.labels`
reads the base labels through :func:`overlay`).

Arrays, one row per superpixel in the descriptors' order (``offsets`` (n + 1,) int64 splits them
by image): ``labels`` (M,) uint8, the label value painted over the round's labels, 255 where they
stay as they are; ``second`` (M,) uint8 the head's second choice; ``margin`` (M,) float16 how sure
it is (best minus second probability); ``base`` (M,) uint8 the round's own label of each
superpixel (its majority) and ``prior`` (M,) float16 how much the head trusts it; ``person`` (M,)
uint8 the label a person gave the superpixel (:data:`UNSET`: none); ``area`` (M,) int32 its pixels;
``weight`` (L, D + 1) float32 the head (L label values); ``queue`` (S, 6) float64 the best
superpixels to check when it was written (:func:`spn_napari.review.suggest.live_rows`), so the dock's
queue reads a few hundred KB instead of ranking millions of superpixels.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProjectError
from . import kinds
from .store import Project

__all__ = ["KEEP", "UNSET", "ARRAYS", "LiveLabels", "live_round", "read_live", "write_live", "overlay", "live_doubt"]

KEEP = 255  # a superpixel the head leaves as the round labelled it
UNSET = 255  # a superpixel no person set
_CACHE: OrderedDict[tuple, LiveLabels] = OrderedDict()  # by file path and parts: a committed version is a new file
_CACHE_SIZE = 6
QUEUE_KEPT = 10_000  # the best rows of the live head's ranking kept with its labels (LiveLabels.queue):
# twice what the dock's queue takes at once (spn_napari.review.suggest.LIVE_QUEUE)
ARRAYS = ("offsets", "labels", "second", "margin", "base", "prior", "person", "area", "weight", "queue")


@dataclass
class LiveLabels:
    """One ``live/<r>`` file in memory (the module's docstring says what each array holds; an array
    :func:`read_live` was not asked for is None)."""

    offsets: np.ndarray
    labels: np.ndarray
    second: np.ndarray
    margin: np.ndarray
    base: np.ndarray
    prior: np.ndarray
    person: np.ndarray
    area: np.ndarray
    weight: np.ndarray
    queue: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def image_of(self) -> np.ndarray:
        """(M,) int64: the image each row belongs to."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def over(self, i: int, base: np.ndarray, sp: np.ndarray) -> np.ndarray:
        """(H, W) uint8: image i's round labels ``base`` with this table's superpixels painted over
        them (``sp`` (H, W): image i's superpixels)."""
        painted = self.labels[self.rows(i)][sp]  # (H, W)
        return np.where(painted != KEEP, painted, base).astype(np.uint8)

    def current(self) -> np.ndarray:
        """(M,) uint8 each superpixel's label before corrections: the head's, else the round's."""
        return np.where(self.labels != KEEP, self.labels, self.base)


def live_round(project: Project) -> int:
    """The round whose live labels are current: the current round, 0 before any round (round 0
    is a copy of the pseudo-labels)."""
    r = project.current_round()
    return 0 if r is None else int(r)


def read_live(project: Project, r: int | None = None, parts: tuple[str, ...] = ARRAYS) -> LiveLabels | None:
    """Round r's live labels (default: the current round's), None when the head never ran on
    them; a ProjectError naming the fix when the file is damaged. ``parts``: the arrays to read
    (the others are None): a photo's overlay needs the offsets and labels alone, a few MB of a
    20,000-photo project's tens."""
    kind = kinds.live_labels(live_round(project) if r is None else r)
    entry = project.artifact(kind)
    if entry is None:
        return None
    path = project.file(kind)
    key = (str(path), tuple(parts))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    try:
        with np.load(path) as z:
            live = LiveLabels(*(z[name] if name in parts and name in z.files else None for name in ARRAYS),
                              meta=dict(entry.get("meta") or {}))
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{path}: the live labels are damaged ({exc}) — run `spn-napari propagate "
                           f"{project.root} --recompute` to make them again.") from None
    if len(live.offsets) != len(project) + 1 or (live.labels is not None and live.offsets[-1] != len(live.labels)):
        raise ProjectError(f"{path}: the live labels do not fit this project's {len(project)} images — run "
                           f"`spn-napari propagate {project.root} --recompute` to make them again.")
    _CACHE[key] = live
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return live


def write_live(project: Project, r: int, live: LiveLabels) -> None:
    """Commit ``live`` as round r's live labels (atomic: one new file, one transaction)."""
    buf = io.BytesIO()
    np.savez(buf, **{name: getattr(live, name) for name in ARRAYS if getattr(live, name) is not None})
    project.commit_file(kinds.live_labels(r), buf.getvalue(), suffix=".npz", depends=(kinds.DESCRIPTORS,),
                        meta=live.meta)


def overlay(project: Project, i: int, base: np.ndarray, sp: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8: image i's round labels ``base`` with the live head's superpixels painted over
    them (``base`` itself when the head has not run; ``sp`` image i's superpixels, read when needed)."""
    live = read_live(project, parts=("offsets", "labels"))
    if live is None:
        return base
    given = live.labels[live.rows(i)]  # (N,)
    if not (given != KEEP).any():
        return base
    sp = project.read(kinds.SUPERPIXELS, i) if sp is None else sp  # (H, W) ids 0..N-1
    return live.over(i, base, sp)


def live_doubt(project: Project, i: int, band: float, sp: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the live head painted image i ((H, W) bool) and where, of those pixels, its best two
    classes are within ``band`` of each other ((H, W) bool): a round leaves its doubt out of
    training as it leaves the evidence's. None when the head has not run."""
    live = read_live(project, parts=("offsets", "labels", "margin"))
    if live is None:
        return None
    rows = live.rows(i)
    sp = project.read(kinds.SUPERPIXELS, i) if sp is None else sp  # (H, W)
    painted = live.labels[rows] != KEEP  # (N,)
    doubt = painted & (live.margin[rows].astype(np.float32) < band)
    return painted[sp], doubt[sp]
