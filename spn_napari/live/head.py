"""Live label propagation: every check a person makes relabels the whole project, between rounds.

A *live head* is one multinomial linear layer over every superpixel's descriptor
(:mod:`spn_napari.evidence.descriptors`), each superpixel's choice restricted to its photo's tags (with a
background class, background too). It is fitted on

- every superpixel a person set (more than half its pixels in the photo's correction: an answered
  suggestion, a superpixel fill, a stroke, an Accepted photo), weighing :attr:`PropagateConfig.weight`,
  the class they gave it;
- every other superpixel, weighing how sure the SP-CAM evidence is of the round's label for it
  (its margin over the best other candidate, at least :attr:`PropagateConfig.floor`), that label.
  With many superpixels a sample of :attr:`PropagateConfig.sample` of them (always the same one for
  one seed) keeps a refit inside a second or two.

Then it relabels every superpixel of every unreviewed photo that no person set, replacing the
round's labels there (:attr:`PropagateConfig.paint`): the pseudo-labels are replaced where the
head is surer, so a click teaches every photo at once instead of after a round. A person's pixels
are never changed: corrections are painted over everything. The result is kept as ``live/<r>``
(:mod:`spn_napari.project.live_labels`): atomic, rolled back with the rounds, and what a round trains on.
Every refit starts from zero weights and is deterministic, so the labels are a function of what is
saved: the same corrections, round and seed give the same labels, and undoing an answer undoes its
propagation at the next refit.

:class:`LiveHead` keeps the table in memory for the dock and the simulated annotator (answer,
refit, relabel, rank, save); :func:`propagate` is the batch step, ``spn-napari propagate``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..errors import ProjectError, SpnError
from ..events import Event
from ..evidence.descriptors import DescriptorConfig, Descriptors, compute_descriptors, read_descriptors
from ..evidence.maps import evidence_candidates
from ..label_events import live_ranking
from ..labels import base_kind
from ..project import kinds
from ..project.live_labels import ARRAYS, KEEP, QUEUE_KEPT, UNSET, LiveLabels, live_round, read_live, write_live
from ..project.store import Project

__all__ = ["PropagateConfig", "LiveHead", "propagate", "PAINT"]

PAINT = ("all", "changed")


@dataclass(frozen=True)
class PropagateConfig:
    """The live head's settings; recorded with its labels."""

    weight: float = 30.0  # a superpixel a person set weighs this much (an unchecked one: its margin, ≤ 1)
    floor: float = 0.05  # the least weight of an unchecked superpixel's round label
    l2: float = 1e-3  # weight decay of the head's weights (not its biases)
    iters: int = 20  # L-BFGS iterations a refit runs at most (held out as good as 40, in half the time)
    sample: int = 100_000  # unchecked superpixels a refit fits on at most
    paint: str = "all"  # PAINT: "all" paints every unreviewed superpixel with the head's class,
    # "changed" only those where it differs from the round's label (which keeps the round's detail)
    seed: int = 0
    descriptors: DescriptorConfig = field(default_factory=DescriptorConfig)

    def check(self) -> None:
        if self.paint not in PAINT:
            raise SpnError(f"--paint {self.paint}: use {' or '.join(PAINT)}.")
        if self.weight <= 0 or not 0 <= self.floor <= 1:
            raise SpnError(f"--weight {self.weight} / floor {self.floor}: use a positive weight and a floor in [0, 1].")


def _majority(sp: np.ndarray, labels: np.ndarray, n: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the most frequent label of each superpixel (over ``mask``'s pixels only, when given)
    and (N,) how many pixels were counted."""
    idx = sp.ravel().astype(np.int64) * 256 + labels.ravel()
    w = None if mask is None else mask.ravel()
    counts = np.bincount(idx, weights=w, minlength=n * 256).reshape(n, 256)  # (N, 256)
    return counts.argmax(1).astype(np.uint8), counts.sum(1)


def person_labels(project: Project, i: int, sp: np.ndarray, n: int) -> np.ndarray:
    """(N,) uint8 the label a person gave each superpixel of image i: the majority of its set
    pixels where more than half of it is set, else :data:`~spn_napari.project.live_labels.UNSET`."""
    corr = project.correction(i)
    if corr is None:
        return np.full(n, UNSET, np.uint8)
    value, count = _majority(sp, corr[0], n, corr[1])
    area = np.bincount(sp.ravel(), minlength=n)
    return np.where(count * 2 > area, value, UNSET).astype(np.uint8)


def _prior(values: np.ndarray, cand: np.ndarray, base: np.ndarray, floor: float) -> np.ndarray:
    """(N,) how much the head trusts each superpixel's round label ``base`` (N,): the evidence's
    margin of that label over the best other candidate (``values`` (K,), ``cand`` (K, N) from
    :func:`~spn_napari.evidence.maps.evidence_candidates`), in [floor, 1]; 1 for a photo's only
    candidate, 0 for a label that is no candidate."""
    lut = np.full(256, -1, np.int64)
    lut[values] = np.arange(len(values))
    at = lut[base]  # (N,) the label's row in cand, -1 when it is none
    if len(values) < 2:
        return np.where(at >= 0, 1.0, 0.0)
    cols = np.arange(len(base))
    own = cand[at.clip(0), cols]
    others = cand.copy()
    others[at.clip(0), cols] = -np.inf
    return np.where(at >= 0, np.clip(own - others.max(0), floor, 1.0), 0.0)


class LiveHead:
    """The live head and its table of every superpixel, in memory.

    Open with :meth:`open` (a generator: reading the table is a pass over the photos the first
    time a round's labels are propagated); then :meth:`set_person` / :meth:`update_image` as a
    person answers, :meth:`refit`, :meth:`relabel`, :meth:`save`; :meth:`ranking` orders the
    superpixels to check next by the head's own doubt."""

    def __init__(self, project: Project, cfg: PropagateConfig, desc: Descriptors, live: LiveLabels, r: int) -> None:
        self.project, self.cfg, self.r = project, cfg, r
        self.desc, self.live = desc, live
        self.image = desc.image_of()  # (M,) int64
        n_values = len(project.classes) + 1
        allowed = np.zeros((len(project), n_values), bool)  # (n, L) candidate label values per photo
        for i, info in enumerate(project.images):
            allowed[i, [c + 1 for c in info.tags]] = True
            if project.has_background:
                allowed[i, 0] = True
        self.allowed = allowed
        self.x = torch.from_numpy(desc.desc)  # (M, D) float16: half the memory of a 20,000-photo table
        w = live.weight
        d = desc.desc.shape[1] + 1  # the bias is a last input of 1
        self.weight = torch.from_numpy(w.astype(np.float32)) if w.shape == (n_values, d) else torch.zeros(n_values, d)
        self.refits = int(live.meta.get("refits", 0))
        self.last_changed = (0, 0)  # superpixels and photos the last relabel changed

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, project: Project, cfg: PropagateConfig = PropagateConfig()) -> Iterator[Event]:
        """Make the descriptors when missing, read the current round's live labels or build the
        table from its labels, bring the person's superpixels up to date; returns the head
        (``head = yield from LiveHead.open(project)``)."""
        cfg.check()
        base_kind(project)  # a ProjectError naming the step when there are no labels yet
        for kind, step in ((kinds.SUPERPIXELS, "superpixels"), (kinds.SP_CAM, "pseudo-labels")):
            if project.artifact(kind) is None:
                raise ProjectError(f"{project.root}: no {step} yet — run `spn-napari {step} {project.root}` first.")
        if project.artifact(kinds.DESCRIPTORS) is None:
            yield from compute_descriptors(project, cfg.descriptors)
        desc = read_descriptors(project)
        r = live_round(project)
        live = read_live(project, r)
        live = None if live is None else copy.deepcopy(live)  # the head changes its arrays: not the cache's
        made_from = {"descriptors": project.artifact(kinds.DESCRIPTORS)["version"],
                     "base_version": project.require(base_kind(project))["version"]}
        stale = live is None or any(live.meta.get(k) != v for k, v in made_from.items())
        if stale or any(getattr(live, a) is None for a in ARRAYS if a != "queue"):  # or a file without every array
            live = yield from cls._table(project, cfg, desc)
        head = cls(project, cfg, desc, live, r)
        if live.meta.get("corrections") != project.corrections_version():
            yield from head._people()
        return head

    @staticmethod
    def _table(project: Project, cfg: PropagateConfig, desc: Descriptors) -> Iterator[Event]:
        """A fresh table from the round's labels: each superpixel's majority and prior, the
        person's superpixels, and no head yet."""
        m = len(desc.area)
        base, prior, person = np.zeros(m, np.uint8), np.zeros(m, np.float16), np.full(m, UNSET, np.uint8)
        kind = base_kind(project)
        corrected = project.corrected()
        for i in range(len(project)):
            rows = desc.rows(i)
            n = rows.stop - rows.start
            sp = project.read(kinds.SUPERPIXELS, i)  # (H, W)
            b, _ = _majority(sp, project.read(kind, i), n)  # (N,)
            base[rows] = b
            prior[rows] = _prior(*evidence_candidates(project, i), b, cfg.floor)
            if corrected[i]:
                person[rows] = person_labels(project, i, sp, n)
            yield Event("table", i + 1, len(project))
        meta = {"refits": 0, "corrections": project.corrections_version(), "seed": cfg.seed,
                "descriptors": project.artifact(kinds.DESCRIPTORS)["version"], "base": kind,
                "base_version": project.require(kind)["version"]}
        return LiveLabels(desc.offsets, np.full(m, KEEP, np.uint8), np.full(m, KEEP, np.uint8),
                          np.ones(m, np.float16), base, prior, person, desc.area, np.zeros((0, 0), np.float32), meta=meta)

    def _people(self) -> Iterator[Event]:
        """Read every corrected photo's person superpixels again (corrections saved elsewhere)."""
        corrected = self.project.corrected()
        self.live.person[:] = UNSET
        for done, i in enumerate(range(len(self.project)), 1):
            if corrected[i]:
                self.update_image(i)
            yield Event("table", done, len(self.project))
        self.live.meta["corrections"] = self.project.corrections_version()

    # ---- a person's answers ----------------------------------------------------------------
    def _rows(self, i: int) -> slice:
        """Image i's rows of the table; an SpnError for an image the project does not have."""
        if not 0 <= i < len(self.project):
            raise SpnError(f"image {i}: the project has {len(self.project)} images (0..{len(self.project) - 1}).")
        return self.desc.rows(i)

    def set_person(self, i: int, superpixel: int, value: int) -> None:
        """Superpixel ``superpixel`` of image i was set to ``value`` by a person (an answer, a fill)."""
        rows = self._rows(i)
        if not 0 <= superpixel < rows.stop - rows.start:
            raise SpnError(f"superpixel {superpixel}: image {self.project.images[i].name} has "
                           f"{rows.stop - rows.start} superpixels.")
        self.live.person[rows.start + int(superpixel)] = int(value)

    def update_image(self, i: int) -> None:
        """Read image i's correction again (a stroke, a fill, Accept: anything saved for it)."""
        rows = self._rows(i)
        sp = self.project.read(kinds.SUPERPIXELS, i)
        self.live.person[rows] = person_labels(self.project, i, sp, rows.stop - rows.start)

    # ---- the head ----------------------------------------------------------------------------
    def _inputs(self, rows: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows``' inputs (R, D + 1) float32 (descriptor, 1) and candidate masks (R, L) (every
        label for a photo without candidates, whose superpixels the head never labels)."""
        x = self.x[rows].float()
        x = torch.cat([x, torch.ones(len(x), 1)], 1)
        ok = self.allowed[self.image[rows]]
        ok[~ok.any(1)] = True
        return x, torch.from_numpy(ok)

    def refit(self) -> float:
        """Fit the head on the person's superpixels and the (sampled) rest; returns the seconds."""
        t0 = time.perf_counter()
        live, cfg = self.live, self.cfg
        person = live.person != UNSET
        has = self.allowed[self.image].sum(1) > 0  # (M,) photos with at least one candidate
        anchor = np.flatnonzero(~person & has & (live.prior > 0))
        if len(anchor) > cfg.sample:
            anchor = np.sort(np.random.default_rng(cfg.seed).choice(anchor, cfg.sample, replace=False))
        rows = np.concatenate([np.flatnonzero(person & has), anchor])
        target = np.concatenate([live.person[person & has], live.base[anchor]]).astype(np.int64)
        weight = np.concatenate([np.full(int((person & has).sum()), cfg.weight), live.prior[anchor].astype(np.float64)])
        ok = self.allowed[self.image[rows], target]  # a label outside the photo's candidates teaches nothing
        rows, target, weight = rows[ok], target[ok], weight[ok]
        if len(rows) == 0:
            return time.perf_counter() - t0
        x, mask = self._inputs(rows)  # (R, D + 1), (R, L)
        t = torch.from_numpy(target)
        w = torch.from_numpy(weight / weight.sum()).float()  # (R,)
        cols = torch.arange(len(t))
        wy = torch.zeros(mask.shape)  # (R, L): each row's weight at its target
        wy[cols, t] = w
        shut = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))  # (R, L): 0, -inf off the candidates
        decay = torch.ones_like(self.weight)
        decay[:, -1] = 0  # biases are not decayed
        p = torch.zeros_like(self.weight).requires_grad_(True)  # from zero: the labels are a function of the corrections
        opt = torch.optim.LBFGS([p], lr=1, max_iter=cfg.iters, history_size=10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            """The weighted cross-entropy plus L2 and its gradient, written out (a third of what
            autograd's graph costs): d/dW = (softmax(z) · w − w · onehot)ᵀ x + 2 λ W."""
            with torch.no_grad():
                logp = torch.log_softmax(torch.addmm(shut, x, p.T), 1)  # (R, L)
                loss = -(w * logp[cols, t]).sum() + cfg.l2 * (decay * p * p).sum()
                g = torch.exp(logp) * w[:, None] - wy  # (R, L)
                p.grad = g.T @ x + 2 * cfg.l2 * decay * p  # (L, D + 1)
            return loss

        opt.step(closure)
        self.weight = p.detach()
        self.refits += 1
        return time.perf_counter() - t0

    @torch.no_grad()
    def relabel(self, chunk: int = 262_144) -> tuple[int, int]:
        """Give every unreviewed photo's superpixels no person set the head's class (updates the
        labels, second choices and margins); returns (superpixels, photos) whose label changed."""
        live, cfg = self.live, self.cfg
        unreviewed = np.asarray(self.project.reviews()) == "unreviewed"
        before = live.current()
        m = len(live.labels)
        for start in range(0, m, chunk):
            rows = slice(start, min(m, start + chunk))
            x, ok = self._inputs(rows)
            z = (x @ self.weight.T).masked_fill(~ok, float("-inf"))  # (R, L)
            top = torch.topk(torch.softmax(z, 1), 2, dim=1)
            best, second = top.indices[:, 0].numpy().astype(np.uint8), top.indices[:, 1].numpy().astype(np.uint8)
            pb, ps = top.values[:, 0].numpy(), top.values[:, 1].numpy()
            single = ps <= 0
            live.second[rows] = np.where(single, KEEP, second)
            live.margin[rows] = np.where(single, 1.0, pb - ps).astype(np.float16)
            free = unreviewed[self.image[rows]] & (live.person[rows] == UNSET) & (self.allowed[self.image[rows]].sum(1) > 0)
            if cfg.paint == "changed":
                free &= best != live.base[rows]
            live.labels[rows] = np.where(free, best, KEEP)
        after = live.current()
        moved = np.flatnonzero(after != before)
        self.last_changed = (len(moved), len(np.unique(self.image[moved])))
        return self.last_changed

    def save(self) -> None:
        """Commit the labels and the head as the round's live labels (atomic)."""
        self.live.weight = self.weight.numpy().astype(np.float32)
        # the best checks by the head's doubt, ranked by what listens (the suggestions), kept in the same file
        self.live.queue = live_ranking(self.live, np.asarray(self.project.reviews()) == "unreviewed", QUEUE_KEPT)
        self.live.meta.update({"refits": self.refits, "corrections": self.project.corrections_version(),
                               "seed": self.cfg.seed, "changed": list(self.last_changed),
                               "config": {k: v for k, v in asdict(self.cfg).items() if k != "descriptors"}})
        write_live(self.project, self.r, self.live)

    # ---- what to check next -----------------------------------------------------------------
    def ranking(self) -> np.ndarray:
        """(S, 6) rows (image, superpixel, current, proposed, score, pixels) of every superpixel
        worth a check, best first, by the head's doubt, as the ranker ranks them
        (:func:`spn_napari.label_events.live_ranking`: the suggestions' ``live_rows``)."""
        return live_ranking(self.live, np.asarray(self.project.reviews()) == "unreviewed", None)

def propagate(project: Project, cfg: PropagateConfig = PropagateConfig(), *, recompute: bool = False) -> Iterator[Event]:
    """The batch step (``spn-napari propagate``): make the descriptors if missing (``recompute``:
    again, with the live labels), refit the head on every correction, relabel the unreviewed
    photos and commit. Yields 'descriptors' and 'table' progress, then 'done' with
    {"changed": superpixels, "photos": photos whose labels changed, "seconds", "refit_seconds"}."""
    t0 = time.perf_counter()
    cfg.check()
    if recompute:
        base_kind(project)
        yield from compute_descriptors(project, cfg.descriptors)
    head = yield from LiveHead.open(project, cfg)
    refit = head.refit()
    changed, photos = head.relabel()
    head.save()
    yield Event("done", 1, 1, {"changed": changed, "photos": photos, "refits": head.refits,
                               "seconds": time.perf_counter() - t0, "refit_seconds": refit})
