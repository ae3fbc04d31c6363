"""Refinement rounds: DecoupledNet trained on the current labels with people's corrections on top.

Round 0 is the SPN's pseudo-labels (SP-CAM by default). Round k ≥ 1 trains a DecoupledNet — from
the SPN's encoder and classifier for the first, from the parent round's net after that — on the
parent round's labels with every corrected pixel overriding them (rejected images left out), and
its predictions become round k's labels. Every round is kept in the project: its checkpoint,
labels, config, seed and metrics. ``rollback`` makes an earlier round current again; the next
round then grows from it, and later rounds stay in the history.

Which labels each round trains on and what a user sees is :mod:`spn_napari.labels`; the rounds'
records live in the project's database (:meth:`Project.add_round`, read through
:mod:`spn_napari.project.history`); a round's net predicts through :mod:`spn_napari.rounds.predict`.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed
from ..batches import FigureGroundSamples, MultiScaleBatches, collate
from ..errors import ProjectError, SpnError
from ..evaluate import round_metrics
from ..events import Event
from ..evidence.features import feature_cache
from ..label_events import labels_changed
from ..labels import present_classes, round0_method, round0_source, training_target_and_set
from ..live.head import propagate
from ..models.decoupled import IGNORE, DecoupledNet, decoupled_loss
from ..project import kinds
from ..project.store import Project
from ..runtime import load_decoupled, load_spn, resolve_device
from ..train import autocast, batch_inputs, compile_convs, drop_state, fit, seed_everything, training_scales
from .predict import predict_round_labels, round_views

__all__ = ["RoundConfig", "WEIGHT_ON", "weighed_by_image", "run_round", "ensure_round0"]


@dataclass(frozen=True)
class RoundConfig:
    """DecoupledNet training settings for one round; stored with the round."""

    epochs: int = 9  # ~30 s each on the 200-image demo, 2 CPU cores (a round stays under 5 min)
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scales: tuple[int, ...] | None = None  # canvas sides; None: the SPN's (scaled to the data)
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    seed: int = 0
    start_from: str = "auto"  # round 0's labels: the pseudo-labels of this method ("auto": the project's)
    state: str | None = None  # training-state file: resume from it if present, rewrite it every epoch
    compile: bool = False  # torch.compile the segmentation net's conv stages
    reviewed_weight: int = 10  # a person's labels weigh this many times as much as the model's
    reviewed_weight_on: str = "auto"  # how a person's labels weigh more (WEIGHT_ON): "images" draws a
    # corrected image reviewed_weight times as often; "pixels" weighs each pixel a person set
    # reviewed_weight times in the loss (a photo with a few checked superpixels is not drawn more
    # often for the unchecked rest of it); "auto" draws reviewed photos (fixed whole, or accepted)
    # more often and weighs the set pixels of the partly corrected rest
    ignore_band: float = 0.2  # round 1: ignore pixels whose SPN evidence is this close to the threshold
    cache: bool = True  # train and predict from the frozen encoder's cached maps (spn_napari.evidence.features)
    predict_sides: tuple[int, ...] | None = None  # test-time sides; None: the middle training side (round_views)
    predict_flip: bool = False  # also predict each side's mirrored canvas, averaged


WEIGHT_ON = ("auto", "images", "pixels")


def weighed_by_image(cfg: RoundConfig, corrected: list[bool], reviews: list[str]) -> list[bool]:
    """Which images a round draws ``reviewed_weight`` times as often; the other corrected ones have
    their set pixels weigh that much instead (``reviewed_weight_on``; see RoundConfig)."""
    if cfg.reviewed_weight_on == "images":
        return list(corrected)
    if cfg.reviewed_weight_on == "pixels":
        return [False] * len(corrected)
    return [c and r == "reviewed" for c, r in zip(corrected, reviews)]


@dataclass(frozen=True)
class _Targets:
    """FigureGroundSamples' target reader (module level, so loader workers can pickle it).

    With ``weigh`` (not None) it returns (labels, person) for FigureGroundSamples' weights: the
    pixels a person set in the images of ``weigh``, None for the rest.
    """

    ignore_band: float = 0.0
    method: str | None = None  # round 0's pseudo-label method (labels.round0_method)
    weigh: frozenset[int] | None = None

    def __call__(self, project: Project, i: int) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
        target, person = training_target_and_set(project, i, ignore_band=self.ignore_band, method=self.method)
        if target is None:
            info = project.images[i]
            target = np.full((info.height, info.width), IGNORE, np.uint8)
        if self.weigh is None:
            return target
        return target, person if i in self.weigh else None


def ensure_round0(project: Project, method: str) -> None:
    """Record the SPN's pseudo-labels as round 0 (a copy, so re-running the SPN cannot change it)."""
    if project.rounds():
        return
    method = round0_method(project, method)
    source = round0_source(project, method)
    with project.writer(kinds.round_labels(0), meta={"source": source}) as w:
        for i in range(len(project)):
            w.put(i, project.read(source, i))
    entry = {"round": 0, "parent": None, "created": time.time(), "model": kinds.SPN, "config": {"start_from": method},
             "seed": None, "seconds": 0.0}
    entry["metrics"] = round_metrics(project, 0, None)
    project.add_round(entry)


def _propagated(project: Project) -> Iterator[Event]:
    """The live head over the new round's labels, refitted on every correction (spn_napari.live.head)."""
    for ev in propagate(project):
        if ev.event != "done":  # progress only: the round's own 'done' ends it
            yield ev


def run_round(project: Project, cfg: RoundConfig = RoundConfig()) -> Iterator[Event]:
    """Train round k's DecoupledNet, predict every image's labels, commit and make round k current.

    Yields the training's 'start'/'step'/'epoch' events ('start' also says whether the labels will
    be propagated, for the progress shown), 'image' events while predicting, and 'done' with the
    round's record. When the parent round's labels were propagated (the live head,
    :mod:`spn_napari.live.head`), the new round's are too, with every correction, before 'done'.
    Stopping the generator leaves the rounds as they were (the first call records round 0, the
    pseudo-labels, before it trains).
    """
    if cfg.reviewed_weight_on not in WEIGHT_ON:
        raise SpnError(f"--reviewed-weight-on {cfg.reviewed_weight_on}: use {', '.join(WEIGHT_ON)}.")
    device = resolve_device(cfg.device)
    parent = project.current_round()
    if parent is None:
        round0_source(project, cfg.start_from)  # checked before anything is written
    seed_everything(cfg.seed)
    if parent is None or parent == 0:  # no round yet, or round 0, whose labels are the SPN's: grow from the SPN
        spn, ckpt = load_spn(project, torch.device("cpu"))
        model = DecoupledNet.from_spn(spn)
    else:
        model, ckpt = load_decoupled(project, parent, torch.device("cpu"))
    scales = tuple(cfg.scales) if cfg.scales else (tuple(ckpt.get("scales", ())) or training_scales(project, cfg.scales))
    model = model.to(device)
    if distributed.is_main():
        ensure_round0(project, cfg.start_from)
    distributed.barrier()
    project.reload()
    parent = project.current_round()
    k = max(e["round"] for e in project.rounds()) + 1
    samples, distinct = [], 0
    reviews, corrected = project.reviews(), project.corrected()  # one read each, not one per image
    by_image = weighed_by_image(cfg, corrected, reviews)
    by_pixel = frozenset(i for i, c in enumerate(corrected) if c and not by_image[i] and reviews[i] != "rejected")
    for i in range(len(project)):
        if reviews[i] == "rejected":
            continue
        present = present_classes(project, i)
        repeat = cfg.reviewed_weight if by_image[i] else 1
        samples += [(i, c) for c in present] * repeat
        distinct += len(present)
    if not samples:
        raise ProjectError(f"{project.root}: no image is left to train on (all rejected or untagged) — "
                           f"mark some images unreviewed or reviewed.")
    cache = yield from feature_cache(project, model.encoder, model.cfg.encoder, scales, device, cfg.cache)
    if cfg.compile:
        compile_convs(model.seg)
    net = distributed.wrap(model, device)
    rank, world = distributed.rank_world()
    weigh = by_pixel if by_pixel and cfg.reviewed_weight != 1 else None  # None: no weights (as "images")
    data = FigureGroundSamples(project, samples, _Targets(cfg.ignore_band, round0_method(project), weigh),
                               features=cache, weight=cfg.reviewed_weight)
    # Images weighed by image are listed reviewed_weight times (the others' set pixels weigh more
    # in the loss), and each epoch draws as many samples as there are distinct ones: clean labels
    # weigh more while an epoch costs the same.
    sampler = MultiScaleBatches(len(samples), batch_size=cfg.batch_size, scales=scales, seed=cfg.seed,
                                rank=rank, world=world, drop_last=world > 1, epoch_size=distinct)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    t0 = time.perf_counter()
    will_propagate = project.artifact(kinds.live_labels(parent)) is not None  # the live head's table follows
    yield Event("start", 0, cfg.epochs * len(sampler), {"round": k, "parent": parent, "device": str(device),
                                                        "samples": len(samples), "scales": list(scales),
                                                        "epochs": cfg.epochs, "propagate": will_propagate})

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        x, f = batch_inputs(batch, device)
        target = batch["target"].to(device)
        with autocast(device, cfg.amp):
            logits = net(x, batch["mask"].to(device), backbone=f)
        valid = target != IGNORE
        hits = ((logits.detach().argmax(1) == target) & valid).sum().item()
        weight = batch["weight"].to(device) if "weight" in batch else None  # (B, S, S)
        return decoupled_loss(logits, target, weight), {"pixel_accuracy": (hits, int(valid.sum()))}

    yield from fit(model, loader, sampler, step, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   state=cfg.state, fingerprint={"trainer": "decoupled", "round": k, "parent": parent,
                                                 "samples": len(samples), "weight": cfg.reviewed_weight, "weight_on": cfg.reviewed_weight_on, "band": cfg.ignore_band,
                                                 "corrections": project.corrections_version(), "seed": cfg.seed,
                                                 "cached": bool(cache)})
    model.eval()
    passes = round_views(scales, cfg.predict_sides, cfg.predict_flip)
    uncertainty = yield from predict_round_labels(project, model, kinds.round_labels(k), passes, device, cache=cache,
                                                  meta={"parent": parent, "views": passes})
    if not distributed.is_main():  # rank 0 saves the model, scores and records the round
        distributed.barrier()
        yield Event("done", k, k, {"round": k, "rank": rank})
        return
    buf = io.BytesIO()
    torch.save(model.to("cpu").to_checkpoint(classes=list(project.classes), scales=list(scales),
                                             round=k, parent=parent, views=[list(v) for v in passes]), buf)
    project.commit_file(kinds.round_model(k), buf.getvalue(), suffix=".pt")
    entry = {"round": k, "parent": parent, "created": time.time(), "model": kinds.round_model(k),
             "config": {**asdict(cfg), "scales": list(scales), "views": [list(v) for v in passes]}, "seed": cfg.seed,
             "seconds": time.perf_counter() - t0}
    project.reload()
    entry["metrics"] = round_metrics(project, k, parent)  # corrections saved meanwhile (the GUI) count
    project.add_round(entry, uncertainty)
    labels_changed(project)
    if project.artifact(kinds.live_labels(parent)) is not None:  # the parent's labels were propagated:
        yield from _propagated(project)  # so are the round's, with every correction (a round alone lowered them)
    drop_state(cfg.state)
    distributed.barrier()
    yield Event("done", k, k, entry)
