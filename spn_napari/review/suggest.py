"""Which superpixels a person should check next, across the whole project.

Each superpixel of an image nobody has reviewed is scored by how likely a check changes it, from
what the project already has:

- **disagreement**: the class the SP-CAM evidence gives the superpixel (the best of the image's
  tags, each tag's scores divided by its peak over the image, a tag without positive evidence
  last — when no tag has any, the raw scores over their largest magnitude; with a background
  class, background when no tag reaches the 50 % threshold) differs from its current label (the
  class most of its pixels carry now: the current round's labels with corrections);
- **margin**: how close the best two candidates' evidence is (0: a coin flip, 1: no contest);
- **size**: a larger superpixel fixes more pixels with its one click.

The score is ``(1 + w_d × disagreement) × (1 − margin)^w_m × (pixels / mean pixels)^w_s``
(:class:`ScoreWeights`): a clear margin removes it, and a larger superpixel counts for more, less
than in proportion (many small wrong superpixels matter too). The weights (w_d = 0, w_m = 1,
w_s = 0.75: :data:`WEIGHTS`) are those held-out folds of msrc-dev chose on the pseudo-labels by
the pixels the first checks fix (``benchmarks/suggest_fit.py``); disagreement adds nothing once
margin and size are counted. They rank every round's labels too: after round 1 the folds chose
disagreement alone, which fixes more pixels per check, but smaller superpixels; with the clicks as
the budget (looks cost none of it) its curve fell behind (``benchmarks/results/
effort_round_disagreement.json``: 0.701 mIoU after three rounds of 380 clicks, against 0.725).
Each suggestion proposes the most likely other class: the evidence's class
when it disagrees, else the second-best candidate. Superpixels a person already set
(corrected pixels) and images with a single candidate class are passed over: a check cannot
change them.

The ranking is kept in the project as one file (artifact ``suggestions/index``: each image's
:data:`PER_IMAGE` best superpixels), written when pseudo-labels or a round end and whenever it is
found stale, so a queue over 20,000 photos starts from one read instead of reading every photo.
Photos corrected since it was written are scored afresh when it is read.

A person checks them photo by photo (:func:`by_photo`): the ranking says which superpixels are
worth a check, the order takes each photo's together, so that a scene is read once, not once a
click.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ProjectError, SpnError
from ..evidence.maps import evidence_candidates
from ..labels import apply_correction, base_kind, base_labels, superpixel_majority
from ..project import kinds
from ..project.live_labels import KEEP, QUEUE_KEPT, UNSET, LiveLabels, live_round, read_live
from ..project.store import Project

__all__ = ["Suggestion", "ScoreWeights", "WEIGHTS", "superpixel_parts", "image_suggestions", "suggest", "answer", "check_answer", "SuggestionQueue", "write_index", "PER_IMAGE", "by_photo", "WINDOW",
           "ranked_rows", "live_rows", "LIVE_QUEUE", "labels_changed", "pair_keys"]

PER_IMAGE = 64  # superpixels of each photo the ranking keeps: more than a person checks before a round
LIVE_QUEUE = 5000  # a queue over the live head's ranking holds its best this many, and ranks again at its end
LIVE_PARTS = ("offsets", "labels", "second", "margin", "base", "person", "area")  # what live_rows reads
WINDOW = 100  # checks in one pass of by_photo: the best this many rows, grouped by photo


@dataclass(frozen=True)
class Suggestion:
    """Superpixel ``superpixel`` of image ``image`` (``name``): labelled ``current`` now (a label
    value: 0 background or no label, c + 1 class c), ``proposed`` the most likely other label;
    ``score`` how worth a check it is (larger first), ``pixels`` its size."""

    image: int
    name: str
    superpixel: int
    current: int
    proposed: int
    score: float
    pixels: int

    def as_dict(self) -> dict:
        return asdict(self)

    def names(self, project: Project) -> tuple[str, str]:
        """The current and the proposed label in words ('no label' for 0 without a background class)."""
        words = ["background" if project.has_background else "no label", *project.classes]  # by label value
        return words[self.current], words[self.proposed]


@dataclass(frozen=True)
class ScoreWeights:
    """How the three signals make a superpixel's score:
    ``(1 + disagree × disagreement) × (1 − margin)^margin × (pixels / mean pixels)^size``."""

    disagree: float = 0.0
    margin: float = 1.0
    size: float = 0.75

    def score(self, parts: np.ndarray) -> np.ndarray:
        """(M,) scores of :func:`superpixel_parts` rows."""
        d, m, a = parts[:, 3], parts[:, 4], parts[:, 5]
        return (1.0 + self.disagree * d) * (1.0 - m) ** self.margin * a ** self.size


WEIGHTS = ScoreWeights()
"""Chosen on held-out folds (``benchmarks/results/suggest_fit.json``); for a round's labels as for
the pseudo-labels (the module's docstring says why)."""


def superpixel_parts(project: Project, i: int) -> np.ndarray | None:
    """Image i's checkable superpixels with what their score is made of, one (M, 7) float64 array:
    superpixel, current, proposed, disagreement (0/1), margin (0..1), pixels / mean pixels, pixels
    (arrays, not objects: a project has hundreds of thousands of superpixels). None when the image
    has a single candidate class."""
    info = project.images[i]
    if len(info.tags) + project.has_background < 2:
        return None
    sp = project.read(kinds.SUPERPIXELS, i)  # (H, W) ids 0..N-1
    corr = project.correction(i)
    labels = apply_correction(base_labels(project, i, sp), corr)  # (H, W): the current labels
    values, cand = evidence_candidates(project, i)  # (K,), (K, N)
    order = np.argsort(-cand, axis=0, kind="stable")  # (K, N)
    cols = np.arange(cand.shape[1])
    first, second = order[0], order[1]
    margin = np.clip(cand[first, cols] - cand[second, cols], 0.0, 1.0)  # (N,)
    evidence_label = values[first]
    current = superpixel_majority(sp, labels)  # (N,)
    area = np.bincount(sp.ravel(), minlength=len(current))  # (N,)
    disagree = evidence_label != current
    proposed = np.where(disagree, evidence_label, values[second])
    keep = area > 0
    if corr is not None:  # superpixels a person set: checked already
        keep &= np.bincount(sp.ravel(), weights=corr[1].ravel(), minlength=len(current)) == 0
    ids = np.flatnonzero(keep)
    rel = area / max(area.mean(), 1.0)
    return np.stack([ids, current[ids], proposed[ids], disagree[ids], margin[ids], rel[ids], area[ids]],
                    1).astype(np.float64)


def _image_table(project: Project, i: int) -> np.ndarray | None:
    """Image i's checkable superpixels as one (M, 5) float64 array: superpixel, current, proposed,
    score (:data:`WEIGHTS`), pixels."""
    parts = superpixel_parts(project, i)
    if parts is None:
        return None
    return np.stack([parts[:, 0], parts[:, 1], parts[:, 2], WEIGHTS.score(parts), parts[:, 6]], 1)


def _suggestion(project: Project, i: int, row) -> Suggestion:
    return Suggestion(i, project.images[i].name, int(row[0]), int(row[1]), int(row[2]), float(row[3]), int(row[4]))


def image_suggestions(project: Project, i: int) -> list[Suggestion]:
    """Every checkable superpixel of image i, scored (in superpixel order)."""
    table = _image_table(project, i)
    return [] if table is None else [_suggestion(project, i, row) for row in table]


def _stamp(project: Project) -> dict:
    """What the ranking was made from: the labels it compared (the current round's, or the
    pseudo-labels) and the evidence; a change makes the index stale."""
    return {"round": project.current_round(), "labels": base_kind(project),
            "evidence": (project.artifact(kinds.SP_CAM) or {}).get("version"),
            "live": (project.artifact(kinds.live_labels(live_round(project))) or {}).get("version")}


def _rows(project: Project, images) -> np.ndarray:
    """(M, 6) float64 rows (image, superpixel, current, proposed, score, pixels) of ``images``:
    each image's PER_IMAGE best superpixels."""
    tables = []
    for i in images:
        table = _image_table(project, i)
        if table is not None and len(table):
            table = table[np.argsort(-table[:, 3], kind="stable")[:PER_IMAGE]]
            tables.append(np.concatenate([np.full((len(table), 1), i, np.float64), table], 1))
    return np.concatenate(tables) if tables else np.zeros((0, 6))


def live_rows(live: LiveLabels, unreviewed: np.ndarray, limit: int | None = None) -> np.ndarray:
    """(S, 6) float64 rows (image, superpixel, current, proposed, score, pixels), best first (ties:
    image, then superpixel), of the superpixels worth a check where the live head ran
    (:mod:`spn_napari.live.head`): those of ``unreviewed`` (n,) photos no person set with two
    candidates or more, scored by :data:`WEIGHTS` with the head's margin (its best minus its
    second probability) and without disagreement (the head's class is the label), the proposal
    its second choice; ``limit``: the best that many only (a partial sort: 20,000 photos hold
    millions of superpixels). Vectorised over every superpixel: no photo is read."""
    image = live.image_of()  # (M,)
    ok = unreviewed[image] & (live.person == UNSET) & (live.second != KEEP) & (live.area > 0)
    mean_area = np.bincount(image, weights=live.area, minlength=len(unreviewed)) / np.maximum(
        np.diff(live.offsets), 1)  # (n,)
    parts = np.zeros((len(image), 6))
    parts[:, 4] = live.margin.astype(np.float64)
    parts[:, 5] = live.area / np.maximum(mean_area[image], 1.0)
    score = WEIGHTS.score(parts)  # (M,)
    rows = np.flatnonzero(ok)
    if limit is not None and len(rows) > limit:  # the best `limit` (and every tie of the last one)
        cut = -np.partition(-score[rows], limit - 1)[limit - 1]
        rows = rows[score[rows] >= cut]
    local = rows - live.offsets[image[rows]]
    out = np.stack([image[rows], local, live.current()[rows], live.second[rows], score[rows], live.area[rows]],
                   1).astype(np.float64)
    return out[np.lexsort((out[:, 1], out[:, 0], -out[:, 4]))]


def write_index(project: Project) -> np.ndarray:
    """Score every photo and keep the ranking in the project (``suggestions/index``); returns its rows."""
    rows = _rows(project, range(len(project)))
    buf = io.BytesIO()
    np.savez(buf, ids=rows[:, [0, 1, 2, 3, 5]].astype(np.int32), score=rows[:, 4],
             corrected=np.asarray(project.corrected(), bool), corrections=np.int64(project.corrections_version()))
    project.commit_file(kinds.SUGGESTIONS, buf.getvalue(), suffix=".npz", meta=_stamp(project))
    return rows


def _indexed_rows(project: Project) -> np.ndarray:
    """Every unreviewed photo's rows, from the index when it is current (photos corrected since it
    was written scored afresh), else from a new index."""
    entry = project.artifact(kinds.SUGGESTIONS)
    rows = None
    if entry is not None and entry.get("meta") == _stamp(project):
        with np.load(project.file(kinds.SUGGESTIONS)) as z:
            ids, score = z["ids"].astype(np.float64), z["score"]  # (M, 5), (M,)
            rows = np.concatenate([ids[:, :4], score[:, None], ids[:, 4:]], 1)  # (M, 6)
            corrections, was_corrected = int(z["corrections"]), z["corrected"]
        if corrections != project.corrections_version():
            now = np.asarray(project.corrected(), bool)
            if len(was_corrected) != len(now):
                rows = None
            else:
                again = np.flatnonzero(now)  # their answers may have taken superpixels out
                rows = np.concatenate([rows[~np.isin(rows[:, 0], again)], _rows(project, again)])
    if rows is None:
        rows = write_index(project)
    unreviewed = np.asarray(project.reviews()) == "unreviewed"
    return rows[unreviewed[rows[:, 0].astype(np.int64)]] if len(rows) else rows


def ranked_rows(project: Project, limit: int | None = None) -> np.ndarray:
    """(M, 6) rows of every unreviewed photo's suggestions, best first (ties: image, then superpixel):
    the live head's (:func:`live_rows`; ``limit``: the best that many) where it ran on the current
    round's labels, else the index's."""
    for kind, step in ((kinds.SUPERPIXELS, "superpixels"), (kinds.SP_CAM, "pseudo-labels")):
        if project.artifact(kind) is None:
            raise ProjectError(f"{project.root}: no evidence to suggest from yet — run "
                               f"`spn-napari {step} {project.root}` first.")
    live = read_live(project, parts=("offsets", "queue"))
    if live is not None:  # the live head's doubt ranks them: its best as kept, when they are enough
        unreviewed = np.asarray(project.reviews()) == "unreviewed"
        kept = live.queue
        if kept is not None and limit is not None:
            rows = kept[unreviewed[kept[:, 0].astype(np.int64)]]  # photos reviewed since left out
            if len(rows) >= limit or len(kept) < QUEUE_KEPT:  # enough, or every one there was
                return rows
        return live_rows(read_live(project, parts=LIVE_PARTS), unreviewed, limit)
    rows = _indexed_rows(project)  # (M, 6): image, superpixel, current, proposed, score, pixels
    return rows[np.lexsort((rows[:, 1], rows[:, 0], -rows[:, 4]))]


def suggest(project: Project, n: int | None = 20) -> list[Suggestion]:
    """The ``n`` superpixels most worth a check over every unreviewed image (None: all of them;
    at most :data:`PER_IMAGE` of each image), best first (ties: image then superpixel order)."""
    if n is not None and n < 1:
        raise SpnError(f"--n {n}: ask for at least one suggestion, e.g. --n 20.")
    rows = ranked_rows(project, n)
    return [_suggestion(project, int(r[0]), r[1:]) for r in (rows if n is None else rows[:n])]


def pair_keys(image: np.ndarray, superpixel: np.ndarray) -> np.ndarray:
    """One int64 key per (image, superpixel) pair, to match pairs with ``np.isin``."""
    return image.astype(np.int64) * (1 << 32) + superpixel.astype(np.int64)


def _grouped(image: np.ndarray, window: int, first: int | None = None) -> np.ndarray:
    """The order that takes ranked rows of ``image`` (k,) (best first) in passes of ``window`` rows:
    within a pass each photo once, in the order of its best row there (``first``, the photo the
    person is on, before the others in the first pass), with its rows there in rank order."""
    pos = np.arange(len(image))  # (k,)
    group = (pos // window) * (int(image.max(initial=0)) + 1) + image  # (k,): a photo within a pass
    _, start, inverse = np.unique(group, return_index=True, return_inverse=True)
    key = start[inverse]  # (k,): where the row's photo starts in its pass; passes never interleave
    if first is not None:
        key = np.where((pos < window) & (image == first), -1, key)
    return np.lexsort((pos, key))


def by_photo(rows: np.ndarray, taken=(), *, window: int = WINDOW) -> np.ndarray:
    """The order a person checks ranked ``rows`` in, a photo's suggestions together; the one order
    of the dock's queue (:class:`SuggestionQueue`) and of the simulated person
    (:mod:`spn_napari.review.simulate`), so that the effort curve measures what the dock shows.

    ``rows``: (M, K) with K ≥ 2, image and superpixel first, best first (:func:`ranked_rows`, a live
    head's ranking). ``taken``: the (image, superpixel) pairs checked so far (answered or
    skipped), in the order they were; they are left out, and they say where the current pass
    stands. Returns the other rows (M', K), reordered.

    The checks go in passes of ``window``: a pass takes the best ``window`` rows of the photos it
    has not finished, the photo of the best one first with its other rows among them in rank
    order, then the next best photo's; a photo it left is not shown again before the next pass,
    which starts from the best rows left, every photo open again. A pass that went on over a
    re-ranking (the live head relabelled) takes its photo in progress (the last one ``taken``)
    first, and then the best rows left to it of the photos it has not finished.

    Why a window: what is worth a check is spread over photos. A window as wide as the ranking
    would give the first photo all its rows, weak ones included, before the second photo's best
    one; a window of 1 is the ranking as it is, a new photo almost every check. A pass over a
    ranking that did not change checks exactly its best ``window`` rows, only in another order;
    what a wide pass costs is the photos it finished, whose rows a re-ranking puts on top but
    which wait for the next pass. :data:`WINDOW` (100) was chosen on the effort curve with live
    propagation (``benchmarks/effort_curves.py --window``, ``benchmarks/results/effort_window.json``):
    100 gave the ranked order's mIoU per click, 250 and 1000 lost some, and it still takes the
    live head's first 20 suggestions on a handful of photos where the ranked order visits one
    photo after another."""
    if window < 1:
        raise SpnError(f"window {window}: a pass takes at least one suggestion.")
    rows = np.asarray(rows)
    image = rows[:, 0].astype(np.int64)  # (M,)
    taken = [(int(i), int(s)) for i, s in taken]
    if taken:
        done = np.asarray(taken, np.int64)  # (T, 2)
        keep = ~np.isin(pair_keys(image, rows[:, 1]), pair_keys(done[:, 0], done[:, 1]))
        rows, image = rows[keep], image[keep]
    into = len(taken) % window  # checks the current pass has made
    if not into:
        return rows[_grouped(image, window)]
    photo = taken[-1][0]
    left = {i for i, _ in taken[-into:]} - {photo}  # photos the current pass has finished
    here = np.flatnonzero(~np.isin(image, list(left)))[:window - into]  # the rest of this pass
    rest = np.setdiff1d(np.arange(len(rows)), here)  # the later passes', ranked
    first = here[_grouped(image[here], window, photo)]
    return np.concatenate([rows[first], rows[rest][_grouped(image[rest], window)]])


def check_answer(project: Project, sp: np.ndarray, superpixel: int, value: int) -> None:
    """An SpnError unless ``superpixel`` is one of ``sp``'s (H, W) ids and ``value`` a label of the project."""
    n, low = int(sp.max()) + 1, 0 if project.has_background else 1
    top = len(project.classes) + (0 if project.has_background else 1)
    if not 0 <= int(superpixel) < n:
        raise SpnError(f"superpixel {superpixel}: this image has superpixels 0..{n - 1}.")
    if not low <= int(value) <= top:
        raise SpnError(f"label {value}: not a class of this project (use {low}..{top}).")


def answer(project: Project, i: int, answers: dict[int, int]) -> None:
    """Save a person's answers for image i's superpixels: {superpixel: label value} ('accept the
    proposal' and 'pick another class' give that class; 'mark it correct' gives its current
    label). Each answered superpixel's pixels become set to that label in the image's correction,
    beside what it already holds, in one atomic save; a superpixel answered again takes the later
    answer. The image's review status is left as it is: the rest of it is still unchecked.
    (The dock answers in its view first and writes after: :meth:`spn_napari.review.annotator.Annotator.answer`.)"""
    if not answers:
        return
    sp = project.read(kinds.SUPERPIXELS, i)  # (H, W)
    corr = project.correction(i)
    labels, set_mask = (corr[0].copy(), corr[1].copy()) if corr is not None else (
        np.zeros(sp.shape, np.uint8), np.zeros(sp.shape, bool))
    for s, value in answers.items():
        try:
            check_answer(project, sp, s, value)
        except SpnError as exc:
            raise SpnError(f"image {project.images[i].name}: {exc}") from None
        where = sp == int(s)
        labels[where], set_mask[where] = int(value), True
    project.save_correction(i, labels, set_mask)


class SuggestionQueue:
    """The suggestions a person works through in the dock, in :func:`by_photo`'s order (a photo's
    together, the best photo first), with what they cost.

    Built once from the ranking over every unreviewed image (:func:`ranked_rows`: the live head's when
    it ran); :meth:`next` gives the next one not yet answered or skipped, :meth:`answer_current`
    saves an answer at once (:func:`answer`) and counts it: a *click* when it changes the
    superpixel's label (the proposal, or another class), a *look* when it confirms it (marked
    correct). Skipping costs nothing. ``window``: the checks of one pass (:data:`WINDOW`)."""

    def __init__(self, project: Project, *, window: int = WINDOW) -> None:
        self.project = project
        self.window = window
        self._taken: list[tuple[int, int]] = []  # (image, superpixel) answered or skipped, in order
        self._rows = by_photo(ranked_rows(project, LIVE_QUEUE), window=window)  # (M, 6); a Suggestion when reached
        self._at = -1
        self._answered: list[tuple[np.ndarray, int]] = []  # (row, value) of each answer, the last one last
        self.answers = self.clicks = self.looks = 0

    def rerank(self) -> None:
        """Rank again from the project (the live head relabelled it): the current suggestion stays
        current and its photo goes on, those answered or skipped stay out, the photos this pass
        finished stay out until the next pass, the rest follow the new ranking (:func:`by_photo`)."""
        current = self._rows[self._at:self._at + 1] if 0 <= self._at < len(self._rows) else self._rows[:0]
        here = [(int(r[0]), int(r[1])) for r in current]
        rows = ranked_rows(self.project, LIVE_QUEUE + len(self._taken) + 1)  # (M, 6)
        self._rows = np.concatenate([current, by_photo(rows, self._taken + here, window=self.window)])
        self._at = 0 if len(current) else -1

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def current(self) -> Suggestion | None:
        if not 0 <= self._at < len(self._rows):
            return None
        row = self._rows[self._at]
        return _suggestion(self.project, int(row[0]), row[1:])

    def peek(self) -> Suggestion | None:
        """The suggestion after the current one (None at the end), without moving on."""
        at = self._at + 1
        return _suggestion(self.project, int(self._rows[at, 0]), self._rows[at, 1:]) if at < len(self._rows) else None

    def next(self) -> Suggestion | None:
        """Move on to the next suggestion (None at the end)."""
        if 0 <= self._at < len(self._rows):
            self._taken.append((int(self._rows[self._at, 0]), int(self._rows[self._at, 1])))
        self._at = min(self._at + 1, len(self._rows))
        if self._at == len(self._rows) and len(self._rows) >= LIVE_QUEUE:  # the live ranking's best are done
            self._rows, self._at = self._rows[:0], -1
            self.rerank()
            self._at = 0 if len(self._rows) else -1
        return self.current

    def answer_current(self, value: int, save=None) -> Suggestion:
        """Save label ``value`` for the current suggestion's superpixel (``save(suggestion, value)``
        when given, e.g. the dock's view first; default :func:`answer`); returns it."""
        s = self.current
        if s is None:
            raise SpnError("no suggestion to answer: the queue is done — run a round for new ones.")
        if save is None:
            answer(self.project, s.image, {s.superpixel: int(value)})
        else:
            save(s, int(value))
        self.answers += 1
        if int(value) == s.current:
            self.looks += 1
        else:
            self.clicks += 1
        self._answered.append((self._rows[self._at].copy(), int(value)))
        return s

    def undo(self) -> Suggestion | None:
        """Take the last answer back (None when there is none): it is not counted any more, and
        its suggestion becomes the current one again, its photo the one in progress (the caller
        restores the superpixel's pixels, e.g. :meth:`spn_napari.review.annotator.Annotator.undo_answer`)."""
        if not self._answered:
            return None
        row, value = self._answered.pop()
        self.answers -= 1
        if value == int(row[2]):
            self.looks -= 1
        else:
            self.clicks -= 1
        key = (int(row[0]), int(row[1]))
        if key in self._taken:
            del self._taken[len(self._taken) - 1 - self._taken[::-1].index(key)]
        rest = self._rows[max(self._at, 0):]
        rest = rest[pair_keys(rest[:, 0], rest[:, 1]) != pair_keys(row[:1], row[1:2])[0]]
        self._rows, self._at = np.concatenate([row[None], rest]), 0
        return self.current


def labels_changed(project: Project) -> None:
    """A compute step changed the project's labels (:mod:`spn_napari.label_events`): rank their
    superpixels for checks (:func:`write_index`), when the project has what the ranking reads."""
    if project.artifact(kinds.SP_CAM) and project.artifact(kinds.SUPERPIXELS):
        write_index(project)
