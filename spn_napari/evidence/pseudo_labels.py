"""SPN inference: class evidence per image (SP-CAM and CAM) and round-0 pseudo-labels.

For every image the trained SPN runs once per view — each test-time side, and its mirror image —
and the evidence is averaged over the views; from the same forward passes we keep SP-CAM scores
(N, C) — the top classifier on each superpixel's pooled feature — and the CAM baseline (C, h, w)
— the bottom classifier at every location of z. Both are stored in the project (compact: the
maps are painted or upsampled on read), and the chosen method's labels (``fused``: the two
averaged after normalisation) become the pseudo-labels. :class:`EvidenceSettings` say how; they
are recorded with the artifacts, so a new photo is predicted the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..data.transforms import fit_to_canvas
from ..errors import SpnError
from ..events import Event
from ..label_events import labels_changed
from ..models.spn import SPN
from ..ops import label_canvas, superpixel_pool
from ..project import kinds
from ..project.store import Project
from ..runtime import load_spn, resolve_device
from .descriptors import DescriptorConfig, compute_descriptors
from .features import feature_cache, view_maps, views
from .maps import (
    Evidence,
    EvidenceSettings,
    check_method,
    check_normalise,
    evidence_sides,
    label_evidence,
)

__all__ = ["PseudoLabelConfig", "resolve_settings", "view_evidence", "aggregate_evidence",
           "image_evidence", "view_backbones", "make_pseudo_labels"]


@dataclass(frozen=True)
class PseudoLabelConfig:
    method: str = "auto"  # "auto" (fused without a background class, else sp-cam) | "fused" | "sp-cam" | "cam"
    device: str = "auto"
    threshold: float = 0.5  # fraction of each class map's maximum (projects with a background class)
    classes: str = "tags"  # which classes to map: the image's "tags" or the SPN's "predicted" ones
    sides: tuple[int, ...] | None = None  # canvas sides the evidence is averaged over; None: evidence_sides
    flip: bool | None = None  # also each side's mirror image; None: on without a background class
    normalise: str | None = None  # "max" | "shared"; None: each method's DEFAULT_NORMALISE
    multi_scale: bool = False  # every training side (overrides ``sides``)


def resolve_settings(cfg: PseudoLabelConfig, scales: Sequence[int], background: bool) -> EvidenceSettings:
    """``cfg`` with its automatic choices made for a project (``scales``: the SPN's training sides)."""
    method = cfg.method if cfg.method != "auto" else ("sp-cam" if background else "fused")
    check_method(method)
    check_normalise(cfg.normalise)
    scales = sorted(scales)
    if cfg.multi_scale:
        sides = tuple(scales)
    elif cfg.sides:
        sides = tuple(sorted(int(s) for s in cfg.sides))
    else:  # photos without background: the measured test-time sides; else the middle side, as before
        sides = (scales[len(scales) // 2],) if background else evidence_sides(scales)
    flip = (not background) if cfg.flip is None else bool(cfg.flip)
    return EvidenceSettings(method=method, sides=sides, flip=flip, normalise=cfg.normalise, threshold=cfg.threshold)


@torch.no_grad()
def view_evidence(model: SPN, image: np.ndarray | None, sp_canvas: torch.Tensor, n: int, side: int, mirrored: bool,
                  device: torch.device, backbone: torch.Tensor | None = None) -> Evidence:
    """One view's evidence as tensors: sp_scores (N, C), cam (C, s/32, s/32), probs (C,).

    sp_canvas (1, L, L) and n from :func:`label_canvas`; ``backbone`` (Cb, g, g) the frozen
    encoder's map of this view, used instead of the image. A mirrored view flips the whole square
    canvas, so its maps flip back cell for cell onto the unmirrored canvas."""
    if backbone is not None:
        z, feat = model.features(backbone=backbone[None].to(device))
    else:
        x, _, _ = fit_to_canvas(image, None, side)  # (3, s, s)
        x = x.flip(-1) if mirrored else x
        z, feat = model.features(x[None].to(device))  # (1, Cz, s/32, s/32), (1, K, 2s/32, 2s/32)
    if mirrored:
        z, feat = z.flip(-1), feat.flip(-1)
    side_full = sp_canvas.shape[-1]
    if feat.shape[-1] > side_full:  # an image smaller than the canvas: pool at canvas size
        feat = F.interpolate(feat, size=(side_full, side_full), mode="bilinear", align_corners=False)
    pooled = superpixel_pool(feat.float(), sp_canvas, [n])  # (N, K), features upsampled to the image
    return Evidence(sp_scores=model.superpixel_scores(pooled),
                    cam=model.cam(z.float())[0],  # (C, s/32, s/32)
                    probs=torch.sigmoid(model.top(pooled.mean(0, keepdim=True)))[0])


def aggregate_evidence(parts: Sequence[Evidence], aggregate: str = "mean") -> Evidence:
    """Views' evidence (tensors, :func:`view_evidence`) -> one image's, as numpy: the mean (or
    max) over views; CAMs are resized to the finest view's grid first."""
    grid = max(e.cam.shape[-1] for e in parts)
    cams = torch.stack([F.interpolate(e.cam[None], size=(grid, grid), mode="bilinear", align_corners=False)[0]
                        for e in parts])  # (V, C, grid, grid)
    sp_scores, probs = torch.stack([e.sp_scores for e in parts]), torch.stack([e.probs for e in parts])
    if aggregate == "max":
        return Evidence(sp_scores=sp_scores.amax(0).cpu().numpy(), cam=cams.amax(0).cpu().numpy(),
                        probs=probs.amax(0).cpu().numpy())
    return Evidence(sp_scores=sp_scores.mean(0).cpu().numpy(), cam=cams.mean(0).cpu().numpy(),
                    probs=probs.mean(0).cpu().numpy())


@torch.no_grad()
def image_evidence(model: SPN, image: np.ndarray | None, sp: np.ndarray, sides: Iterable[int],
                   device: torch.device, backbone: dict | None = None, *, flip: bool = False,
                   aggregate: str = "mean") -> Evidence:
    """Run ``model`` on one image at each side (and, with ``flip``, on its mirror image); average
    the evidence over those views (``aggregate="max"``: max-pool, as projects made before flips).

    image (H, W, 3) uint8, sp (H, W) int labels 0..N-1; ``backbone`` {side or (side, mirrored):
    (Cb, g, g)} the frozen encoder's maps (the cache's), used instead of the image for the views
    it holds.
    """
    sp_canvas, n = label_canvas(sp, device)  # (1, L, L), L = max(H, W)
    parts = []
    for side, mirrored in views(sides, flip):
        f = None
        if backbone:
            f = backbone.get((side, mirrored), None if mirrored else backbone.get(side))
        parts.append(view_evidence(model, image, sp_canvas, n, side, mirrored, device, f))
    return aggregate_evidence(parts, aggregate)


def view_backbones(project: Project, model: SPN, i: int, settings: EvidenceSettings, cache: dict[int, str] | None,
                   device: torch.device) -> dict | None:
    """{(side, mirrored): (Cb, g, g)} backbone maps of image i for every view of a cacheable
    (frozen) encoder (:func:`~spn_napari.evidence.features.view_maps`); None for other encoders (the SPN
    runs on the image)."""
    if not getattr(model.encoder, "cacheable", False):
        return None
    return view_maps(project, model.encoder, i, views(settings.sides, settings.flip), cache, device)


def make_pseudo_labels(project: Project, cfg: PseudoLabelConfig = PseudoLabelConfig()) -> Iterator[Event]:
    """Compute and commit SP-CAM and CAM evidence and the chosen method's pseudo-labels.

    Artifacts: 'cams/sp-cam', 'cams/cam' and 'pseudo/<method>', each recording the
    :class:`EvidenceSettings` in its meta, and the superpixel descriptors when the project has
    none (:mod:`spn_napari.evidence.descriptors`); streams one image at a time. Under torchrun each rank
    computes and writes its share of the images ('image' events count that share) and rank 0
    commits once all are written.
    """
    if cfg.method != "auto":
        check_method(cfg.method)
    if cfg.classes not in ("tags", "predicted"):
        raise SpnError(f"--classes {cfg.classes}: use 'tags' or 'predicted'.")
    project.require(kinds.SPN)
    device = resolve_device(cfg.device)
    model, ckpt = load_spn(project, device)
    settings = resolve_settings(cfg, ckpt["scales"], project.has_background)
    trained = [s for s in settings.sides if s in set(ckpt["scales"])]  # only training sides are cached
    cache = (yield from feature_cache(project, model.encoder, ckpt["config"]["encoder"], trained, device)) if trained else None
    n, t0 = len(project), time.perf_counter()
    deps = (kinds.SUPERPIXELS, kinds.SPN)
    meta = {**settings.meta(), "classes": cfg.classes, "device": cfg.device}
    mine = distributed.shard(n)  # under torchrun each rank does its share; else every image
    made = (kinds.SP_CAM, kinds.CAM, kinds.pseudo_labels(settings.method))
    with distributed.sharded_writers(project, made, depends=deps, meta=meta) as writers:
        w_sp, w_cam, w_lab = (writers[k] for k in made)
        for done, i in enumerate(mine, 1):
            info = project.images[i]
            sp = project.read(kinds.SUPERPIXELS, i)
            backbone = view_backbones(project, model, i, settings, cache, device)
            ev = image_evidence(model, None if backbone else project.image(i), sp, settings.sides, device, backbone,
                                flip=settings.flip, aggregate=settings.aggregate)
            w_sp.put(i, ev.sp_scores.astype(np.float32))
            w_cam.put(i, ev.cam.astype(np.float32))
            classes = info.tags if cfg.classes == "tags" else np.flatnonzero(ev.probs > 0.5)
            w_lab.put(i, label_evidence(ev, sp, classes, settings, background=project.has_background))
            yield Event("image", done, len(mine))
    if distributed.is_main():
        project.set_settings(evidence=settings.meta())
        if project.current_round() is None:  # the pseudo-labels are the labels
            labels_changed(project)
        if project.artifact(kinds.DESCRIPTORS) is None:  # what the live head propagates checks with
            for ev in compute_descriptors(project, DescriptorConfig(device=cfg.device), spn=(model, ckpt)):
                if ev.event != "done":  # progress only: the step's own 'done' ends it
                    yield ev
    yield Event("done", n, n, {"seconds": time.perf_counter() - t0, "method": settings.method,
                               "settings": settings.meta()})
