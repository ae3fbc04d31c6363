"""Refinement rounds: DecoupledNet trained on the current labels with people's corrections on top.

Round 0 is the SPN's pseudo-labels (SP-CAM by default). Round k ≥ 1 trains a DecoupledNet — from
the SPN's encoder and classifier for the first, from the parent round's net after that — on the
parent round's labels with every corrected pixel overriding them (rejected images left out), and
its predictions become round k's labels. Every round is kept in the project: its checkpoint,
labels, config, seed and metrics. ``rollback`` makes an earlier round current again; the next
round then grows from it, and later rounds stay in the history.

Which labels each round trains on and what a user sees is :mod:`spn_napari.labels`; the rounds'
records live in the project's database (:meth:`Project.add_round`, :meth:`Project.rounds`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed
from .batches import FigureGroundSamples, MultiScaleBatches, collate
from .cam import METHODS, upsample_cam
from .data.transforms import fit_to_canvas
from .errors import ProjectError, SpnError
from .evaluate import round_metrics
from .events import Event
from .features import view_maps, views
from .labels import labels_kind, present_classes, pseudo_method, round0_method, training_target
from .models.decoupled import IGNORE, DecoupledConfig, DecoupledNet, decoupled_loss
from .store import Project
from .suggest import write_index
from .train import (autocast, batch_inputs, compile_convs, drop_state, feature_cache, fit, load_checkpoint, load_spn,
                    resolve_device, seed_everything, training_scales)

__all__ = ["RoundConfig", "run_round", "history", "round_uncertainty", "rollback", "current_round", "load_decoupled",
           "predict_labels", "view_probabilities", "round_views", "image_class_probabilities", "predict_round_labels", "round0_source", "round0_method_for", "ensure_round0"]


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
    reviewed_weight: int = 10  # a corrected image is drawn this many times as often as the others
    ignore_band: float = 0.2  # round 1: ignore pixels whose SPN evidence is this close to the threshold
    cache: bool = True  # train and predict from the frozen encoder's cached maps (spn_napari.features)
    predict_sides: tuple[int, ...] | None = None  # test-time sides; None: the middle training side (round_views)
    predict_flip: bool = False  # also predict each side's mirrored canvas, averaged


def _model_kind(r: int) -> str:
    return f"round/{r}/model"


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


def _round(project: Project, r: int) -> dict:
    for entry in history(project):
        if entry["round"] == r:
            return entry
    have = ", ".join(str(e["round"]) for e in history(project)) or "none yet"
    raise ProjectError(f"{project.root}: there is no round {r} (rounds: {have}) — "
                       f"see `spn-napari history {project.root}`.")


def rollback(project: Project, r: int) -> dict:
    """Make round r current again (nothing is deleted); returns its record."""
    entry = _round(project, r)
    project.set_current_round(r)
    return entry


@dataclass(frozen=True)
class _Targets:
    """FigureGroundSamples' target reader (module level, so loader workers can pickle it)."""

    ignore_band: float = 0.0
    method: str | None = None  # round 0's pseudo-label method (labels.round0_method)

    def __call__(self, project: Project, i: int) -> np.ndarray:
        target = training_target(project, i, ignore_band=self.ignore_band, method=self.method)
        info = project.images[i]
        return np.full((info.height, info.width), IGNORE, np.uint8) if target is None else target


def load_decoupled(project: Project, r: int, device: torch.device) -> tuple[DecoupledNet, dict]:
    """Round r's DecoupledNet (eval mode) and its checkpoint dict."""
    ckpt = load_checkpoint(project, _model_kind(r), f"start again from `spn-napari train-spn {project.root}`")
    model = DecoupledNet(DecoupledConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def round_views(scales, sides=None, flip: bool | None = None) -> list[tuple[int, bool]]:
    """The (side, mirrored) views a round's DecoupledNet predicts with, its probabilities averaged.

    Default: the middle training side alone. Unlike the SPN's evidence, larger or mirrored views
    did not help the round's labels on held-out folds of msrc-dev (held-out 0.626 mIoU against
    0.627 for the middle side, at 2–6× the time: benchmarks/round_views.py, docs/real-photos.md);
    ``sides``/``flip`` (``round --predict-sides/--predict-flip``) ask for them."""
    scales = sorted(int(s) for s in scales)
    return views(sides or (scales[len(scales) // 2],), bool(flip))


def _passes(side) -> list[tuple[int, bool]]:
    """A canvas side, or (side, mirrored) views, as the list of views."""
    return [(int(side), False)] if np.isscalar(side) else [(int(s), bool(m)) for s, m in side]


@torch.no_grad()
def view_probabilities(model: DecoupledNet, image: np.ndarray, classes: list[int], side: int, mirrored: bool,
                       device: torch.device, backbone: torch.Tensor | None = None) -> np.ndarray:
    """(1 + K, H, W) probabilities of one view: row 0 background, row k + 1 ``classes[k]``.

    A mirrored view flips the whole square canvas, so its maps flip back cell for cell;
    ``backbone`` (Cb, g, g): the frozen encoder's map of this view, used instead of the image."""
    h, w = image.shape[:2]
    if backbone is not None:
        probs = model.segment(None, classes, backbone=backbone[None].to(device))  # (1+K, side, side)
    else:
        x, _, _ = fit_to_canvas(image, None, side)  # (3, side, side)
        probs = model.segment((x.flip(-1) if mirrored else x)[None].to(device), classes)  # (1+K, side, side)
    if mirrored:
        probs = probs.flip(-1)
    return upsample_cam(probs.cpu().numpy(), h, w)  # (1+K, H, W)


@torch.no_grad()
def predict_labels(model: DecoupledNet, image: np.ndarray, classes, side, device: torch.device, *,
                   background: bool = True, backbone=None) -> tuple[np.ndarray, float]:
    """One image's labels (H, W) uint8 and its uncertainty (mean of 1 - the winning probability).

    ``side``: a canvas side, or the (side, mirrored) views (:func:`round_views`) whose
    probabilities are averaged. ``background=False``: the background row is dropped and each
    pixel takes the most probable of ``classes`` (probabilities renormalised over them); no
    classes leaves every pixel 0. ``backbone``: the frozen encoder's cached map (Cb, g, g) of the
    image at a single ``side``, or {(side, mirrored): map} for views, used instead of running the
    encoder."""
    passes = _passes(side)
    maps = backbone if isinstance(backbone, dict) else {passes[0]: backbone} if backbone is not None else {}
    classes = sorted(int(c) for c in classes)
    probs = sum(view_probabilities(model, image, classes, s, m, device, maps.get((s, m)))
                for s, m in passes) / len(passes)  # (1+K, H, W)
    lut = np.array([0] + [c + 1 for c in classes], np.uint8)
    if not background and classes:
        probs, lut = probs[1:] / np.maximum(probs[1:].sum(0), 1e-12), lut[1:]  # (K, H, W), (K,)
    return lut[probs.argmax(0)], float(1.0 - probs.max(0).mean())


def round0_method_for(project: Project, method: str) -> str:
    """``--start-from`` resolved: "auto" is the project's pseudo-label method (labels.pseudo_method)."""
    if method == "auto":
        return pseudo_method(project) or "fused"
    if method not in METHODS:
        raise SpnError(f"--start-from {method}: use auto, {', '.join(METHODS)}.")
    return method


def round0_source(project: Project, method: str) -> str:
    method = round0_method_for(project, method)
    source = f"pseudo/{method}"
    if project.artifact(source) is None:
        raise ProjectError(f"{project.root}: no {method} pseudo-labels in this project yet — run "
                           f"`spn-napari pseudo-labels {project.root} --method {method}` first.")
    return source


def ensure_round0(project: Project, method: str) -> None:
    """Record the SPN's pseudo-labels as round 0 (a copy, so re-running the SPN cannot change it)."""
    if history(project):
        return
    method = round0_method_for(project, method)
    source = round0_source(project, method)
    with project.writer(labels_kind(0), meta={"source": source}) as w:
        for i in range(len(project)):
            w.put(i, project.read(source, i))
    entry = {"round": 0, "parent": None, "created": time.time(), "model": "spn", "config": {"start_from": method},
             "seed": None, "seconds": 0.0}
    entry["metrics"] = round_metrics(project, 0, None)
    project.add_round(entry)


@torch.no_grad()
def image_class_probabilities(model: DecoupledNet, image: np.ndarray, side: int, device: torch.device,
                              backbone: torch.Tensor | None = None) -> np.ndarray:
    """(C,) the classifier's probability of each class in ``image`` at canvas ``side``
    (``backbone`` (Cb, g, g): its cached map, used instead of the image)."""
    if backbone is not None:
        p = model.class_probabilities(None, backbone=backbone[None].to(device))
    else:
        x, _, _ = fit_to_canvas(image, None, side)  # (3, side, side)
        p = model.class_probabilities(x[None].to(device))
    return p[0].cpu().numpy()  # (C,)


def predict_round_labels(project: Project, model: DecoupledNet, kind: str, side, device: torch.device, *,
                         cache: dict[int, str] | None = None, meta: dict | None = None) -> Iterator[Event]:
    """Predict every image's labels with ``model`` (eval mode) at canvas ``side`` (or the
    (side, mirrored) views of :func:`round_views`) and commit them as artifact ``kind``; returns
    each image's uncertainty, in image order. With ``cache`` the frozen encoder's maps come from
    it for the sides it holds, through its float16 for the other views.

    Under torchrun each rank predicts and writes its share of the images ('image' events count
    that share), rank 0 commits once all are written, and every rank gets every uncertainty.

    Without a background class an image with a single class has nothing to choose between (its
    labels are certain): its uncertainty is 1 - the classifier's probability of that class, how
    little the round's net agrees with the tag, so such photos do not all read "certain"."""
    passes = _passes(side)
    mine, values = distributed.shard(len(project)), {}
    with distributed.sharded_writers(project, [kind], meta=meta) as writers:
        for done, i in enumerate(mine, 1):
            maps = view_maps(project, model.encoder, i, passes, cache, device) if cache else None
            image, classes = project.image(i), present_classes(project, i)
            labels, u = predict_labels(model, image, classes, passes, device,
                                       background=project.has_background, backbone=maps)
            if not project.has_background and len(classes) == 1:
                side0 = passes[0][0]
                u = 1.0 - float(image_class_probabilities(model, image, side0, device,
                                                          None if maps is None else maps.get((side0, False)))[classes[0]])
            writers[kind].put(i, labels)
            values[i] = round(u, 5)
            yield Event("image", done, len(mine))
    for part in distributed.gather(values):
        values.update(part)
    return [values[i] for i in range(len(project))]


def run_round(project: Project, cfg: RoundConfig = RoundConfig()) -> Iterator[Event]:
    """Train round k's DecoupledNet, predict every image's labels, commit and make round k current.

    Yields the training's 'start'/'step'/'epoch' events, 'image' events while predicting, and
    'done' with the round's record. Stopping the generator leaves the rounds as they were (the
    first call records round 0, the pseudo-labels, before it trains).
    """
    device = resolve_device(cfg.device)
    parent = current_round(project)
    if parent is None:
        round0_source(project, cfg.start_from)  # checked before anything is written
    seed_everything(cfg.seed)
    if not parent:
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
    parent = current_round(project)
    k = max(e["round"] for e in history(project)) + 1
    samples, distinct = [], 0
    reviews, corrected = project.reviews(), project.corrected()  # one read each, not one per image
    for i in range(len(project)):
        if reviews[i] == "rejected":
            continue
        present = present_classes(project, i)
        repeat = cfg.reviewed_weight if corrected[i] else 1
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
    data = FigureGroundSamples(project, samples, _Targets(cfg.ignore_band, round0_method(project)), features=cache)
    # Corrected images are listed reviewed_weight times, and each epoch draws as many samples as
    # there are distinct ones: clean labels weigh more while an epoch costs the same.
    sampler = MultiScaleBatches(len(samples), batch_size=cfg.batch_size, scales=scales, seed=cfg.seed,
                                rank=rank, world=world, drop_last=world > 1, epoch_size=distinct)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    t0 = time.perf_counter()
    yield Event("start", 0, cfg.epochs * len(sampler), {"round": k, "parent": parent, "device": str(device),
                                                        "samples": len(samples), "scales": list(scales)})

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        x, f = batch_inputs(batch, device)
        target = batch["target"].to(device)
        with autocast(device, cfg.amp):
            logits = net(x, batch["mask"].to(device), backbone=f)
        valid = target != IGNORE
        hits = ((logits.detach().argmax(1) == target) & valid).sum().item()
        return decoupled_loss(logits, target), {"pixel_accuracy": (hits, int(valid.sum()))}

    yield from fit(model, loader, sampler, step, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   state=cfg.state, fingerprint={"trainer": "decoupled", "round": k, "parent": parent,
                                                 "samples": len(samples), "weight": cfg.reviewed_weight, "band": cfg.ignore_band,
                                                 "corrections": project.corrections_version(), "seed": cfg.seed,
                                                 "cached": bool(cache)})
    model.eval()
    passes = round_views(scales, cfg.predict_sides, cfg.predict_flip)
    uncertainty = yield from predict_round_labels(project, model, labels_kind(k), passes, device, cache=cache,
                                                  meta={"parent": parent, "views": passes})
    if not distributed.is_main():  # rank 0 saves the model, scores and records the round
        distributed.barrier()
        yield Event("done", k, k, {"round": k, "rank": rank})
        return
    buf = io.BytesIO()
    torch.save(model.to("cpu").to_checkpoint(classes=list(project.classes), scales=list(scales),
                                             round=k, parent=parent, views=[list(v) for v in passes]), buf)
    project.commit_file(_model_kind(k), buf.getvalue(), suffix=".pt")
    entry = {"round": k, "parent": parent, "created": time.time(), "model": _model_kind(k),
             "config": {**asdict(cfg), "scales": list(scales), "views": [list(v) for v in passes]}, "seed": cfg.seed,
             "seconds": time.perf_counter() - t0}
    project.reload()
    entry["metrics"] = round_metrics(project, k, parent)  # corrections saved meanwhile (the GUI) count
    project.add_round(entry, uncertainty)
    if project.artifact("cams/sp-cam") and project.artifact("superpixels"):
        write_index(project)  # the suggestions for the new labels (spn_napari.suggest)
    drop_state(cfg.state)
    distributed.barrier()
    yield Event("done", k, k, entry)
