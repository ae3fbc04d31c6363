"""Simulated annotator: how fast do corrections pay off, and at what effort? `spn-napari simulate PROJECT`.

Each round a share of the not-yet-reviewed images (picked at random, or those whose current labels
are least certain) is fixed as a person fixes a whole image in the dock: every superpixel looked
at, each whose label is not its true class set to it with one click (:mod:`spn_napari.review.effort`),
or (``--annotator masks``) given its exact true mask, sub-superpixel detail included and no clicks
counted; then a refinement round runs. Each round reports the clicks and looks spent so far beside its
mIoU, and the result the superpixel oracle (every superpixel its true class: what clicking whole
superpixels can reach). At the end the same segmentation net is trained once on the full ground
truth, exact masks: the upper bound. It runs on a copy of the project, so the project's own
corrections and rounds are never touched.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ProjectError, SpnError
from ..evaluate import evaluate_labels, round_metrics
from ..events import Event
from ..evidence.maps import evidence_maps
from ..labels import current_labels, round0_method, round0_source, superpixel_majority
from ..live.head import LiveHead, PropagateConfig
from ..project.history import rollback, round_uncertainty
from ..project.kinds import SUPERPIXELS
from ..project.store import Project
from ..rounds.refine import RoundConfig, ensure_round0, run_round
from .effort import fix_whole_image, superpixel_oracle
from .suggest import WINDOW, answer, by_photo, pair_keys, ranked_rows

__all__ = ["SimulateConfig", "simulate", "live_batch", "SELECT", "ANNOTATORS"]

SELECT = ("random", "uncertain")
ANNOTATORS = ("whole", "suggestions", "masks")


@dataclass(frozen=True)
class SimulateConfig:
    rounds: int = 3
    correct_fraction: float = 0.1  # of all images, corrected before each round
    select: str = "random"  # "random" | "uncertain"
    seed: int = 0
    full_supervision: bool = True  # also train once on the full ground truth (the upper bound)
    annotator: str = "whole"  # "whole": fix whole images; "suggestions": check the suggested superpixels;
    # "masks": give the picked images their exact true masks (no clicks counted: drawn, not clicked)
    budget: int | None = None  # "suggestions": clicks per round
    propagate: bool = False  # "suggestions": the live head relabels every photo after each refit_every clicks
    refit_every: int = 95  # clicks between two refits of the live head
    window: int = WINDOW  # "suggestions": checks in one pass of the queue (spn_napari.review.suggest.by_photo)
    propagate_config: PropagateConfig = field(default_factory=PropagateConfig)
    round_config: RoundConfig = field(default_factory=RoundConfig)  # each round's DecoupledNet training


def _sp_cam_uncertainty(project: Project, i: int, method: str) -> float:
    """Round 0: mean over pixels of how close the best tagged class's max-normalised score is to
    the 50 % threshold (1 at the threshold, 0 at 0 or at the max)."""
    maps = evidence_maps(project, i, method)  # (C, H, W)
    tags = list(project.images[i].tags)
    if not tags:
        return 0.0
    peak = np.maximum(maps[tags].reshape(len(tags), -1).max(1), 1e-12)[:, None, None]
    best = np.clip(maps[tags] / peak, 0, 1).max(0)  # (H, W)
    return float(1.0 - np.abs(2 * best - 1).mean())


def _uncertainty(project: Project, method: str) -> list[float]:
    unc = round_uncertainty(project)
    if unc is not None:
        return unc.tolist()
    method = round0_method(project, method)
    return [_sp_cam_uncertainty(project, i, method) for i in range(len(project))]


def _pick(project: Project, count: int, cfg: SimulateConfig, rng: np.random.Generator) -> list[int]:
    reviews, corrected = project.reviews(), project.corrected()
    todo = [i for i in range(len(project)) if reviews[i] == "unreviewed" and not corrected[i]]
    todo = [i for i in todo if project.images[i].has_gt]
    if cfg.select == "random":
        return sorted(rng.permutation(todo)[:count].tolist())
    u = _uncertainty(project, cfg.round_config.start_from)
    return sorted(sorted(todo, key=lambda i: -u[i])[:count])


def _fix_whole(project: Project, images: list[int]) -> tuple[int, int]:
    """Fix each image whole with superpixel clicks (:func:`spn_napari.review.effort.fix_whole_image`) and
    accept it (every pixel the person's, as the dock's Accept); returns (clicks, looks)."""
    clicks = looks = 0
    for i in images:
        fix = fix_whole_image(project.read(SUPERPIXELS, i), current_labels(project, i), project.ground_truth(i))
        project.save_correction(i, fix.labels, np.ones(fix.labels.shape, bool), review="reviewed")
        clicks, looks = clicks + fix.clicks, looks + fix.looks
    return clicks, looks


def _check_suggestions(project: Project, budget: int, window: int = WINDOW) -> tuple[int, int]:
    """A person takes the dock's suggestion queue (the ranking in
    :func:`spn_napari.review.suggest.by_photo`'s order: a photo's suggestions together, in passes of
    ``window`` checks) until ``budget`` clicks are spent: a wrong superpixel costs a click and is
    set to its true class, a right one a look and is marked correct (a superpixel without truth: a
    look, no answer). The answers are saved per image as partial corrections (one save each);
    returns (clicks, looks)."""
    rows = by_photo(ranked_rows(project), window=window)  # (M, 6): image, superpixel, current, ...
    clicks = looks = 0
    answers: dict[int, dict[int, int]] = {}
    truth_of: dict[int, np.ndarray] = {}
    for image, superpixel, current in rows[:, :3].astype(np.int64).tolist():
        if clicks >= budget:
            break
        if image not in truth_of:
            truth_of[image] = superpixel_majority(project.read(SUPERPIXELS, image), project.ground_truth(image),
                                                  ignore=255)
        truth = int(truth_of[image][superpixel])
        if truth == 255 or truth == current:
            looks += 1
            if truth != 255:
                answers.setdefault(image, {})[superpixel] = current
            continue
        clicks += 1
        answers.setdefault(image, {})[superpixel] = truth
    for i, given in answers.items():
        answer(project, i, given)
    return clicks, looks


class _Truth:
    """Each superpixel's true class (its ground truth's majority, 255 without truth), read once a photo."""

    def __init__(self, project: Project) -> None:
        self.project, self._of = project, {}

    def __call__(self, i: int, superpixel: int) -> int:
        if i not in self._of:
            self._of[i] = superpixel_majority(self.project.read(SUPERPIXELS, i), self.project.ground_truth(i),
                                              ignore=255)
        return int(self._of[i][superpixel])


def _live_row(project: Project, clicks: int, looks: int, seconds: float, head: LiveHead) -> dict:
    """One refit's row: what has been spent, the labels' scores, the refit and relabel's seconds."""
    m = evaluate_labels(project, None)
    changed, photos = head.last_changed
    return {"clicks": clicks, "looks": looks, "miou": m["miou"], "mean_class_accuracy": m.get("mean_class_accuracy"),
            "seconds": seconds, "changed": changed, "photos": photos}


def live_batch(head: LiveHead, truth: Callable[[int, int], int], budget: int, every: int, skipped: set,
               allowed: np.ndarray | None = None, taken: list | None = None, window: int = WINDOW
               ) -> tuple[dict[int, dict[int, int]], int, int]:
    """One batch of a simulated person's checks: the live head's suggestions (:meth:`LiveHead.ranking`)
    in the dock's order (:func:`spn_napari.review.suggest.by_photo`), as :func:`_check_suggestions` takes
    the queue, until ``every`` clicks or the ``budget`` left are spent. A wrong superpixel costs a
    click and is set to its true class (``truth(image, superpixel)``), a right one a look and is
    marked correct, one without truth (255) a look and goes into ``skipped``; each answer is set on
    the head. ``allowed``: (n,) bool, the photos that may be checked (all by default). ``taken``:
    every (image, superpixel) checked so far, in order, appended to here: the queue's place in its
    pass, kept over refits as the dock keeps it over re-rankings (None: the batch starts a pass);
    ``window``: the checks of a pass. Returns ({image: {superpixel: label}}, clicks, looks)."""
    answers: dict[int, dict[int, int]] = {}
    clicks = looks = 0
    taken = [] if taken is None else taken
    rows = head.ranking()  # (S, 6), best first
    out = np.zeros(len(rows), bool) if allowed is None else ~allowed[rows[:, 0].astype(np.int64)]
    if skipped:
        gone = np.asarray(sorted(skipped), np.int64)  # (k, 2)
        out |= np.isin(pair_keys(rows[:, 0], rows[:, 1]), pair_keys(gone[:, 0], gone[:, 1]))
    for image, superpixel, current in by_photo(rows[~out], taken, window=window)[:, :3].astype(np.int64).tolist():
        if clicks >= min(every, budget):
            break
        taken.append((image, superpixel))
        true = truth(image, superpixel)
        looks += int(true == 255 or true == current)
        if true == 255:  # no truth to answer with: looked at, left alone
            skipped.add((image, superpixel))
            continue
        clicks += int(true != current)
        answers.setdefault(image, {})[superpixel] = true
        head.set_person(image, superpixel, true)
    return answers, clicks, looks


def _check_live(project: Project, head: LiveHead, budget: int, every: int, truth: _Truth, skipped: set,
                spent: tuple[int, int], window: int = WINDOW) -> Iterator[dict]:
    """Batches of :func:`live_batch`, each saved as the answers' partial corrections, then the head
    refitted and every photo relabelled, until ``budget`` clicks are spent or nothing is left to
    check: one queue, its passes going on over the refits. Yields a row (:func:`_live_row`) per
    refit, with ``spent`` (clicks, looks) before it added."""
    clicks = looks = 0
    taken: list[tuple[int, int]] = []  # the queue's checks so far, in order
    while clicks < budget:
        answers, c, k = live_batch(head, truth, budget - clicks, every, skipped, taken=taken, window=window)
        clicks, looks = clicks + c, looks + k
        if not answers:
            return  # every photo checked
        for i, given in answers.items():
            answer(project, i, given)
        t0 = time.perf_counter()
        head.refit()
        head.relabel()
        seconds = time.perf_counter() - t0
        head.save()
        yield _live_row(project, spent[0] + clicks, spent[1] + looks, seconds, head)


def _correct_exactly(project: Project, images: list[int]) -> None:
    """Each image's whole true mask as its correction (full supervision, and ``--annotator masks``:
    what simulate did before it counted clicks). Masks are drawn, not clicked."""
    for i in images:
        gt = project.ground_truth(i)
        project.save_correction(i, np.where(gt == 255, 0, gt), gt != 255, review="reviewed")


def _reset(sim: Project) -> None:
    """The copy starts like a fresh project: no corrections, nothing reviewed, round 0 current."""
    sim.reset_reviews()
    if sim.rounds():
        rollback(sim, 0)


def _round_zero(sim: Project) -> dict:
    """Round 0's metrics recomputed without corrections (the copy may have had some when it was made)."""
    return {"metrics": round_metrics(sim, 0, None)}


def simulate(project: Project, cfg: SimulateConfig = SimulateConfig(), *, work: Path | str | None = None
             ) -> Iterator[Event]:
    """Run the simulation on a copy of ``project`` at ``work`` (default: PROJECT-simulate-TIME).

    Yields each round's events (data tagged with "sim_round"), an event 'sim_round' when a round
    has finished ({"start_miou", "row": that round's row below}), and 'done' whose data is the
    result: {"start_miou", "rounds": [{"round", "miou", "mean_class_accuracy", "miou_unreviewed",
    "corrected", "clicks", "looks", "changed", "seconds"}, ...] (clicks and looks: spent so far),
    "superpixel_oracle_miou", "full_supervision_miou", "full_supervision_mean_class_accuracy", "work"}.

    With ``propagate`` each round's budget is spent on the live head's suggestions, refitting it
    and relabelling every photo after each ``refit_every`` clicks (:func:`_check_live`), before
    the round (``rounds`` 0: no round at all), and after the last round the head propagates every
    check so far over its labels (a row without clicks); the result's "live" holds a row per refit
    ({"round", "clicks", "looks", "miou", "mean_class_accuracy", "seconds", "changed", "photos"},
    seconds: the refit and the relabelling), and an event 'sim_live' carries each as it lands.
    """
    if cfg.select not in SELECT:
        raise SpnError(f"--select {cfg.select}: use random or uncertain.")
    if cfg.annotator not in ANNOTATORS:
        raise SpnError(f"--annotator {cfg.annotator}: use whole, suggestions or masks.")
    if cfg.propagate and cfg.annotator != "suggestions":
        raise SpnError(f"--propagate: the live head relabels after checked suggestions — use it with "
                       f"--annotator suggestions (not {cfg.annotator}).")
    if cfg.propagate and cfg.budget is None:
        raise SpnError("--propagate: give the clicks to spend with --budget N (e.g. --budget 1143).")
    if cfg.rounds < (0 if cfg.propagate else 1):
        raise SpnError(f"--rounds {cfg.rounds}: must be at least {0 if cfg.propagate else 1} "
                       f"({'--rounds 0 spends the budget with no round' if cfg.propagate else 'or use --propagate'}).")
    if cfg.refit_every < 1:
        raise SpnError(f"--refit-every {cfg.refit_every}: use at least 1 click between refits, e.g. 95.")
    if cfg.annotator == "suggestions" and (cfg.budget is None or cfg.budget < 1):
        raise SpnError(f"--budget {cfg.budget}: give the clicks a person spends per round, at least 1 "
                       f"(e.g. --budget 500).")
    if not 0 < cfg.correct_fraction <= 1:
        raise SpnError(f"--correct-fraction {cfg.correct_fraction}: use a share in (0, 1], e.g. 0.1.")
    if not project.has_ground_truth:
        raise ProjectError(f"{project.root}: this project has no ground-truth masks, so there is nothing to "
                           f"simulate corrections with — import a data set with masks/ (e.g. the demo data).")
    if not project.rounds():
        round0_source(project, cfg.round_config.start_from)  # fail before copying anything
    root = project.root.resolve()
    work = Path(work) if work else root.with_name(f"{root.name}-simulate-{time.strftime('%Y%m%d-%H%M%S')}")
    if work.exists():
        raise SpnError(f"{work}: already exists — choose another --work folder.")
    # SQLite's shared-memory index (-shm) belongs to the live database's connections: the copy
    # rebuilds its own from the write-ahead log, which is copied with the database.
    shutil.copytree(project.root, work, ignore=shutil.ignore_patterns("*-shm", ".lock"))
    sim = Project(work)
    _reset(sim)
    ensure_round0(sim, cfg.round_config.start_from)
    start = _round_zero(sim)
    rng = np.random.default_rng(cfg.seed)
    per_round = max(1, round(cfg.correct_fraction * len(sim)))
    rows, clicks, looks = [], 0, 0
    live: list[dict] = []
    truth, skipped = _Truth(sim), set()

    def spend_live(budget: int | None = cfg.budget) -> Iterator[Event]:  # with the live head; returns (clicks, looks)
        head = yield from LiveHead.open(sim, cfg.propagate_config)
        r = sim.current_round() or 0
        t0 = time.perf_counter()
        head.refit()
        head.relabel()
        seconds = time.perf_counter() - t0
        head.save()
        live.append({"round": r, **_live_row(sim, clicks, looks, seconds, head)})
        yield Event("sim_live", len(live), 0, {"row": live[-1]})
        for row in _check_live(sim, head, budget, cfg.refit_every, truth, skipped, (clicks, looks), cfg.window):
            live.append({"round": r, **row})
            yield Event("sim_live", len(live), 0, {"row": live[-1]})
        return live[-1]["clicks"] - clicks, live[-1]["looks"] - looks

    def tagged(events: Iterator[Event], r) -> Iterator[Event]:  # each event tagged with its round; their return
        try:
            while True:
                ev = next(events)
                yield Event(ev.event, ev.step, ev.total, {**ev.data, "sim_round": r})
        except StopIteration as stop:
            return stop.value

    if cfg.propagate and cfg.rounds == 0:
        c, k = yield from tagged(spend_live(), 0)
        clicks, looks = clicks + c, looks + k
    for r in range(cfg.rounds):
        if cfg.propagate:
            c, k = yield from tagged(spend_live(), r + 1)
        elif cfg.annotator == "whole":
            c, k = _fix_whole(sim, _pick(sim, per_round, cfg, rng))
        elif cfg.annotator == "masks":
            _correct_exactly(sim, _pick(sim, per_round, cfg, rng))
            c, k = 0, 0  # drawn, not clicked
        else:
            c, k = _check_suggestions(sim, cfg.budget, cfg.window)
        clicks, looks = clicks + c, looks + k
        t0 = time.perf_counter()
        for ev in run_round(sim, cfg.round_config):
            yield Event(ev.event, ev.step, ev.total, {**ev.data, "sim_round": r + 1})
        m = sim.rounds()[-1]["metrics"]
        rows.append({"round": r + 1, "miou": m["miou"], "mean_class_accuracy": m.get("mean_class_accuracy"),
                     "miou_unreviewed": m["miou_unreviewed"],
                     "miou_model": m["miou_model"], "corrected": m["corrected"], "clicks": clicks, "looks": looks,
                     "changed": m["changed"], "seconds": time.perf_counter() - t0})
        # each finished round as it lands (total 0: no progress bar of its own), so that a run cut
        # short still leaves its measured rounds to whoever records them
        yield Event("sim_round", r + 1, 0, {"start_miou": start["metrics"]["miou"], "row": rows[-1]})
    if cfg.propagate and cfg.rounds:  # the last round's labels propagated with every check so far (no click)
        yield from tagged(spend_live(budget=0), cfg.rounds)
    result = {"start_miou": start["metrics"]["miou"], "rounds": rows,
              "superpixel_oracle_miou": superpixel_oracle(sim)["miou"], "full_supervision_miou": None,
              "full_supervision_mean_class_accuracy": None,
              "select": cfg.select, "correct_fraction": cfg.correct_fraction, "annotator": cfg.annotator,
              "budget": cfg.budget, "work": str(work), "propagate": cfg.propagate, "live": live}
    if cfg.full_supervision:
        rollback(sim, 0)  # the upper bound starts where round 1 started: from the SPN
        _correct_exactly(sim, [i for i in range(len(sim)) if sim.images[i].has_gt])
        for ev in run_round(sim, replace(cfg.round_config)):
            yield Event(ev.event, ev.step, ev.total, {**ev.data, "sim_round": "full"})
        full = sim.rounds()[-1]["metrics"]
        result["full_supervision_miou"] = full["miou_model"]
        result["full_supervision_mean_class_accuracy"] = full.get("mean_class_accuracy_model")
    yield Event("done", cfg.rounds, cfg.rounds, result)
