"""The annotator's session over a project, without Qt: what the napari dock shows and edits.

The dock widget (``_widgets/``) is a thin view over :class:`Annotator`: it asks for an image's
layers (:meth:`Annotator.view`, cached so switching back is instant), applies the edit tools to a
label array (:func:`superpixel_fill`, :func:`swap_class`) and hands the edited labels back to
:meth:`Annotator.save`, which turns them into a correction — the pixels that differ from the
model's labels, plus every pixel set before — and stores it atomically. Accepting an image keeps
all its current labels as the person's (the whole image becomes set) and marks it reviewed.

In a project without a background class, label value 0 is "no label": a pixel a person sets to 0
(napari's eraser) is not a correction, so it falls back to the model's label.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import ProjectError
from ..evidence.cam import paint_superpixels, upsample_cam
from ..labels import apply_correction, base_labels, pseudo_method, round0_method, unsure_pixels
from ..project import kinds
from ..project.history import round_uncertainty
from ..project.store import Project
from .suggest import check_answer

__all__ = ["Annotator", "ImageView", "superpixel_fill", "swap_class", "contours", "tags_by_area", "UNSURE_BAND"]

UNSURE_BAND = 0.2
"""The evidence band the dock's Unsure layer shows: the band round 1 leaves out of its loss
(:attr:`spn_napari.rounds.refine.RoundConfig.ignore_band`'s default), so the layer shows the pixels the
first round will not learn from unless a person sets them."""


@dataclass
class ImageView:
    """Everything shown for one image; arrays are (H, W) unless noted."""

    index: int
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # uint8, the current labels with the image's corrections
    base: np.ndarray  # uint8, the model's labels (current round or pseudo-labels)
    set_mask: np.ndarray  # bool, pixels a person set
    superpixels: np.ndarray | None  # int32 labels 0..N-1
    evidence: dict[str, np.ndarray]  # method -> (C, H, W) float32 class maps
    edges: np.ndarray | None  # uint8, 1 on superpixel contours (see contours()); None without superpixels
    unsure: np.ndarray | None  # uint8, 1 where the SPN's evidence is unsure (Annotator._unsure); None without it
    tags: tuple[int, ...] = ()  # the image's classes (0-based), the most labelled area first (tags_by_area)


def contours(sp: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour lies in another superpixel."""
    edge = np.zeros(sp.shape, bool)
    edge[:, :-1] |= sp[:, :-1] != sp[:, 1:]
    edge[:-1, :] |= sp[:-1, :] != sp[1:, :]
    return edge


def tags_by_area(tags, labels: np.ndarray) -> tuple[int, ...]:
    """The 0-based classes ``tags`` ordered by the area their label (class + 1) covers in
    ``labels``, largest first; ties keep the tags' order."""
    tags = list(tags)
    if not tags:
        return ()
    area = np.bincount(labels.ravel(), minlength=max(tags) + 2)  # (L,)
    return tuple(sorted(tags, key=lambda c: (-int(area[c + 1]), tags.index(c))))


def superpixel_fill(sp: np.ndarray, points) -> np.ndarray:
    """(H, W) bool mask of every superpixel under the (row, col) ``points`` (a click or a drag)."""
    ids = {int(sp[int(r), int(c)]) for r, c in points
           if 0 <= int(r) < sp.shape[0] and 0 <= int(c) < sp.shape[1]}
    return np.isin(sp, list(ids))


def swap_class(labels: np.ndarray, a: int, b: int) -> np.ndarray:
    """(H, W) bool mask of the pixels of class value ``a`` (to be set to ``b``)."""
    return labels == a


class Annotator:
    """One project open for review. ``cache`` image views are kept for fast switching."""

    def __init__(self, project: Project, *, cache: int = 8) -> None:
        self.project = project
        self._cache: OrderedDict[int, ImageView] = OrderedDict()
        self._size = cache
        self._answered: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # image: (labels, set) not written yet
        self._undo: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (image, superpixel, labels, set) before answers
        self._stale: set[int] = set()  # cached views whose labels the live head changed since

    # ---- the image list ------------------------------------------------------------------
    def columns(self) -> dict:
        """The image list's columns, each read in bulk (one read of the reviews and of the
        round's uncertainty for all images, not one per image): ``name``, ``review`` and ``tags``
        (the class names joined) as lists, ``confidence`` as an (n,) float64 array, 1 - the
        current round's uncertainty rounded to 3 places, NaN where unknown (before round 1)."""
        p = self.project
        names = p.classes
        unc = round_uncertainty(p)
        confidence = np.full(len(p), np.nan) if unc is None else np.round(1.0 - np.asarray(unc, np.float64), 3)
        return {"name": [im.name for im in p.images], "review": list(p.reviews()),
                "tags": [", ".join(names[t] for t in im.tags) for im in p.images], "confidence": confidence}

    def next_unreviewed(self, after: int) -> int | None:
        """The next unreviewed image after ``after`` (wrapping around), or None."""
        return self.project.next_with_review("unreviewed", after)

    def next_step(self) -> str | None:
        """What the project needs before it has labels to review ('superpixels', 'train-spn',
        'pseudo-labels'), or None once it has them."""
        p = self.project
        if p.rounds() or pseudo_method(p) is not None:
            return None
        return next(step for step, kind in (("superpixels", kinds.SUPERPIXELS), ("train-spn", kinds.SPN),
                                            ("pseudo-labels", None)) if kind is None or not p.artifact(kind))

    # ---- one image -----------------------------------------------------------------------
    def view(self, i: int) -> ImageView:
        if i in self._cache:
            self._cache.move_to_end(i)
            if i in self._stale:  # relabelled by the live head since it was read
                self._read_labels(self._cache[i])
            return self._cache[i]
        if i in self._answered:  # its answers must be in the store before it is read from there
            self.write_answers()
        p = self.project
        sp = p.read(kinds.SUPERPIXELS, i) if p.artifact(kinds.SUPERPIXELS) else None
        try:
            base = base_labels(p, i, sp)
        except ProjectError:  # no pseudo-labels yet: all 0 (background or no label); the person may paint
            info = p.images[i]
            base = np.zeros((info.height, info.width), np.uint8)
        corr = p.correction(i)
        set_mask = corr[1] if corr is not None else np.zeros(base.shape, bool)
        labels = apply_correction(base.copy(), corr)
        evidence = {}
        if sp is not None and p.artifact(kinds.SP_CAM):
            evidence["sp-cam"] = paint_superpixels(p.read(kinds.SP_CAM, i), sp)
        if p.artifact(kinds.CAM):
            evidence["cam"] = upsample_cam(p.read(kinds.CAM, i), *base.shape)
        edges = None if sp is None else contours(sp).astype(np.uint8)  # once per visit, not per switch
        v = ImageView(i, p.images[i].name, p.image(i), labels, base, set_mask, sp, evidence, edges,
                      self._unsure(i) if evidence else None, tags_by_area(p.images[i].tags, labels))
        self._cache[i] = v
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return v

    def _unsure(self, i: int) -> np.ndarray | None:
        """(H, W) uint8, 1 where image i's evidence for its best two tags (with a background
        class: for the best tag and the threshold) lies within :data:`UNSURE_BAND`, normalised as
        its pseudo-labels were made — the pixels round 1 ignores (:func:`spn_napari.labels.unsure_pixels`)."""
        p = self.project
        method = round0_method(p)
        if method is None or not (p.artifact(kinds.SP_CAM) and p.artifact(kinds.CAM)):
            return None
        return unsure_pixels(p, i, method, UNSURE_BAND).astype(np.uint8)

    # ---- answers (Check suggestions) ---------------------------------------------------------
    def answer(self, i: int, superpixel: int, value: int) -> ImageView:
        """Set superpixel ``superpixel`` of image i to label ``value`` in its view at once, as
        :func:`spn_napari.review.suggest.answer` sets it in the store (its pixels become set to that
        label; a later answer stands), and keep the correction for :meth:`write_answers`. The
        dock writes it while the person looks at the next suggestion, so the save (~20 ms) is
        not in their wait; every other read or write of the image writes it first."""
        v = self.view(i)
        check_answer(self.project, v.superpixels, superpixel, value)
        where = v.superpixels == int(superpixel)  # (H, W)
        self._undo.append((i, int(superpixel), v.labels[where].copy(), v.set_mask[where].copy()))
        labels, set_mask = v.labels.copy(), v.set_mask.copy()  # new arrays: a kept pair never changes
        labels[where], set_mask[where] = int(value), True
        v.labels, v.set_mask = labels, set_mask
        self._answered[i] = (labels, set_mask)
        return v

    def undo_answer(self, i: int, superpixel: int) -> ImageView:
        """Take back the last :meth:`answer` of image i's ``superpixel``: its pixels get the labels
        and set mask they had before it, kept for :meth:`write_answers` as an answer is."""
        at = next((k for k in range(len(self._undo) - 1, -1, -1) if self._undo[k][:2] == (i, int(superpixel))), None)
        if at is None:
            raise ProjectError(f"{self.project.images[i].name}: superpixel {superpixel} has no answer to undo.")
        _, _, old_labels, old_set = self._undo.pop(at)
        v = self.view(i)
        where = v.superpixels == int(superpixel)  # (H, W)
        labels, set_mask = v.labels.copy(), v.set_mask.copy()
        labels[where], set_mask[where] = old_labels, old_set
        v.labels, v.set_mask = labels, set_mask
        self._answered[i] = (labels, set_mask)
        return v

    @property
    def unwritten(self) -> int:
        """How many images have answers not in the store yet."""
        return len(self._answered)

    def write_answers(self) -> list[int]:
        """Store the corrections :meth:`answer` kept, one atomic save per image; returns the images
        written. A failed save raises, and it and the rest stay kept for the next call."""
        written = []
        for i in list(self._answered):
            labels, set_mask = self._answered[i]
            self.project.save_correction(i, np.where(set_mask, labels, 0), set_mask)
            del self._answered[i]
            written.append(i)
        return written

    def relabelled(self, shown: int | None = None) -> None:
        """The live head relabelled the project (:mod:`spn_napari.live.head`): take the store's new
        snapshot; image ``shown``'s view reads its labels again now, the other cached views when
        they are next asked for (their photo, superpixels and evidence stay). The answers not
        written yet are written first."""
        self.write_answers()
        self.project.reload()
        self._stale = set(self._cache)
        if shown is not None and shown in self._cache:
            self._read_labels(self._cache[shown])

    def _read_labels(self, v: ImageView) -> None:
        """Read view ``v``'s labels again from the store (the round's, the head's, the correction)."""
        self._stale.discard(v.index)
        p = self.project
        try:
            base = base_labels(p, v.index, v.superpixels)
        except ProjectError:
            return  # no labels: nothing the head could have changed
        corr = p.correction(v.index)
        v.base, v.labels = base, apply_correction(base, corr)
        v.set_mask = corr[1] if corr is not None else np.zeros(base.shape, bool)

    def forget(self, i: int | None = None) -> None:
        """Drop cached views (after a round or a reload changed the labels); ``i``: only image
        i's (its correction was saved from elsewhere, e.g. a suggestion's answer)."""
        self.write_answers()
        if i is not None:
            self._cache.pop(i, None)
            return
        self._cache.clear()
        self.project.reload()

    # ---- saving ----------------------------------------------------------------------------
    def save(self, i: int, labels: np.ndarray, *, review: str | None = None, accept_all: bool = False) -> bool:
        """Store ``labels`` as image i's correction when they differ from what is saved (or when
        the review status changes); returns whether anything was written. Without a background
        class, pixels of value 0 are left unset (see the module's docstring)."""
        v = self.view(i)
        labels = np.asarray(labels, np.uint8)
        set_mask = np.ones_like(v.set_mask) if accept_all else (v.set_mask | (labels != v.base))
        if not self.project.has_background:
            set_mask &= labels != 0
        changed = not (np.array_equal(set_mask, v.set_mask) and np.array_equal(labels, v.labels))
        if not changed and (review is None or review == self.project.review(i)):
            return False
        if set_mask.any():
            self.project.save_correction(i, np.where(set_mask, labels, 0), set_mask, review=review)
        elif review is not None:
            self.project.set_review(i, review)
        self._answered.pop(i, None)  # the view held them: written with the rest
        v.labels, v.set_mask = labels.copy(), set_mask
        return True

    def accept(self, i: int, labels: np.ndarray) -> None:
        """The person approves the image as it is labelled now: all its pixels become theirs."""
        self.save(i, labels, review="reviewed", accept_all=True)

    def reject(self, i: int, labels: np.ndarray) -> None:
        """Leave the image out of training (its edits so far are kept)."""
        self.save(i, labels, review="rejected")
