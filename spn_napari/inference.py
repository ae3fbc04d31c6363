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

from . import distributed
from .cam import DEFAULT_NORMALISE, METHODS, fuse_scores, paint_superpixels, threshold_maps, uncertain_pixels, upsample_cam
from .errors import SpnError
from .events import Event
from .models.spn import SPN
from .ops import superpixel_pool
from .store import Project
from .data.transforms import fit_to_canvas
from .features import backbone_map, read_features
from .train import feature_cache, load_spn, resolve_device

__all__ = ["PseudoLabelConfig", "EvidenceSettings", "Evidence", "image_evidence", "make_pseudo_labels",
           "evidence_maps", "check_method", "label_canvas", "evidence_sides", "resolve_settings", "label_evidence",
           "label_maps", "EVIDENCE_FACTORS", "project_settings", "unsure_evidence", "view_backbones", "views", "view_evidence",
           "aggregate_evidence"]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise SpnError(f"--method {method}: unknown method — use one of {', '.join(METHODS)}.")
    return method


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


@dataclass(frozen=True)
class EvidenceSettings:
    """How a project's evidence is made and labelled, resolved from a :class:`PseudoLabelConfig`
    and recorded in the artifacts' meta (``project.db``), so predicting a new photo follows the
    same path. Projects made before these settings existed read as ``legacy``."""

    method: str
    sides: tuple[int, ...]
    flip: bool
    normalise: str | None  # None: DEFAULT_NORMALISE per method
    aggregate: str = "mean"  # over views: "mean"; "max" in projects made before flips existed
    threshold: float = 0.5

    def part_normalise(self, method: str) -> str:
        return self.normalise or DEFAULT_NORMALISE[method]

    @classmethod
    def from_meta(cls, meta: dict, method: str, default_sides: Sequence[int]) -> "EvidenceSettings":
        """The settings an artifact's meta records; a project made before them: its sides, no
        flip, the per-class max-normalisation and max over sides (what it did then)."""
        legacy = "flip" not in meta
        return cls(method=method, sides=tuple(meta.get("sides") or default_sides), flip=bool(meta.get("flip", False)),
                   normalise="max" if legacy else meta.get("normalise"),
                   aggregate="max" if legacy else meta.get("aggregate", "mean"),
                   threshold=float(meta.get("threshold", 0.5)))

    def meta(self) -> dict:
        return {"method": self.method, "sides": list(self.sides), "flip": self.flip, "normalise": self.normalise,
                "aggregate": self.aggregate, "threshold": self.threshold}


EVIDENCE_FACTORS = (1.25, 1.5)
"""Default test-time sides, as multiples of the middle training side (docs/real-photos.md)."""


def evidence_sides(scales: Sequence[int], factors: Sequence[float] = EVIDENCE_FACTORS,
                   multiple: int = 16) -> tuple[int, ...]:
    """Test-time canvas sides: ``factors`` × the middle training side, each a multiple of 16.
    Why: on photos, evidence from canvases larger than the middle training side is finer and
    wins on held-out folds of msrc-dev (docs/real-photos.md); 336 → 416, 512 there."""
    scales = sorted(int(s) for s in scales)
    mid = scales[len(scales) // 2]
    return tuple(sorted({max(2 * multiple, int(np.floor(f * mid / multiple + 0.5)) * multiple) for f in factors}))


def resolve_settings(cfg: PseudoLabelConfig, scales: Sequence[int], background: bool) -> EvidenceSettings:
    """``cfg`` with its automatic choices made for a project (``scales``: the SPN's training sides)."""
    method = cfg.method if cfg.method != "auto" else ("sp-cam" if background else "fused")
    check_method(method)
    if cfg.normalise is not None and cfg.normalise not in ("max", "shared"):
        raise SpnError(f"--normalise {cfg.normalise}: use max or shared.")
    scales = sorted(scales)
    if cfg.multi_scale:
        sides = tuple(scales)
    elif cfg.sides:
        sides = tuple(sorted(int(s) for s in cfg.sides))
    else:  # photos without background: the measured test-time sides; else the middle side, as before
        sides = (scales[len(scales) // 2],) if background else evidence_sides(scales)
    flip = (not background) if cfg.flip is None else bool(cfg.flip)
    return EvidenceSettings(method=method, sides=sides, flip=flip, normalise=cfg.normalise, threshold=cfg.threshold)


@dataclass
class Evidence:
    sp_scores: np.ndarray  # (N, C) SP-CAM score of each superpixel
    cam: np.ndarray  # (C, h, w) CAM over the square canvas of side max(H, W)
    probs: np.ndarray  # (C,) image-level class probabilities (top branch)


def label_canvas(sp: np.ndarray, device: torch.device) -> tuple[torch.Tensor, int]:
    """sp (H, W) labels 0..N-1 -> (1, L, L) int64 on ``device``, L = max(H, W), -1 as padding; N.

    The square canvas the network's features cover at full resolution (image at the top-left).
    """
    h, w = sp.shape
    canvas = torch.full((1, max(h, w), max(h, w)), -1, dtype=torch.long)
    canvas[0, :h, :w] = torch.from_numpy(sp.astype(np.int64))
    return canvas.to(device), int(sp.max()) + 1


def views(sides: Iterable[int], flip: bool) -> list[tuple[int, bool]]:
    """The (side, mirrored) passes the evidence is averaged over."""
    return [(int(s), f) for s in sides for f in ((False, True) if flip else (False,))]


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


def label_maps(sp_scores: np.ndarray | None, cam: np.ndarray | None, sp: np.ndarray | None, height: int, width: int,
               classes: Iterable[int], settings: EvidenceSettings) -> tuple[np.ndarray, str]:
    """The (C, H, W) maps the per-pixel choice is made on, and the normalisation to label them
    with (:func:`~spn_napari.cam.threshold_maps`): one image's stored evidence (``cams/sp-cam``
    scores and superpixels, ``cams/cam``) under ``settings``. The one path from evidence to
    labels, for a project's pseudo-labels, their uncertainty and predicting new photos."""
    method = settings.method
    if method == "sp-cam":
        return paint_superpixels(sp_scores, sp), settings.part_normalise("sp-cam")
    if method == "cam":
        return upsample_cam(cam, height, width), settings.part_normalise("cam")
    return fuse_scores(paint_superpixels(sp_scores, sp), upsample_cam(cam, height, width), classes,
                       sp_normalise=settings.part_normalise("sp-cam"),
                       cam_normalise=settings.part_normalise("cam")), "none"


def label_evidence(ev: Evidence, sp: np.ndarray, classes: Iterable[int], settings: EvidenceSettings, *,
                   background: bool) -> np.ndarray:
    """(H, W) uint8 labels of one image's evidence over ``classes`` under ``settings``."""
    classes = [int(c) for c in classes]
    maps, norm = label_maps(ev.sp_scores, ev.cam, sp, *sp.shape, classes, settings)
    return threshold_maps(maps, classes, settings.threshold, background=background, normalise=norm)


def project_settings(project: Project, method: str) -> EvidenceSettings:
    """The evidence settings the project's ``method`` pseudo-labels were made with (its artifact's
    meta; the stored evidence's for a method whose labels were not written)."""
    art = project.artifact(f"pseudo/{method}") or project.require("cams/sp-cam")
    return EvidenceSettings.from_meta(art.get("meta", {}), method, [])


def evidence_maps(project: Project, i: int, method: str) -> np.ndarray:
    """(C, H, W) class evidence of image i, painted (SP-CAM) or upsampled (CAM) from the store;
    ``fused``: the averaged normalised scores over the image's tags (-inf elsewhere)."""
    check_method(method)
    info = project.images[i]
    sp_scores = project.read("cams/sp-cam", i) if method != "cam" else None
    sp = project.read("superpixels", i) if method != "cam" else None
    cam = project.read("cams/cam", i) if method != "sp-cam" else None
    return label_maps(sp_scores, cam, sp, info.height, info.width, info.tags, project_settings(project, method))[0]


def unsure_evidence(project: Project, i: int, method: str, band: float) -> np.ndarray:
    """(H, W) bool: image i's pixels whose ``method`` evidence, normalised as its labels were
    made, has its best two tags within ``band`` (:func:`~spn_napari.cam.uncertain_pixels`)."""
    check_method(method)
    info = project.images[i]
    settings = project_settings(project, method)
    if method == "sp-cam":  # constant per superpixel: decided per superpixel and painted (4× faster)
        scores = project.read("cams/sp-cam", i)  # (N, C)
        return uncertain_pixels(scores.T[:, :, None], info.tags, band=band, background=project.has_background,
                                normalise=settings.part_normalise("sp-cam"))[:, 0][project.read("superpixels", i)]
    sp_scores = project.read("cams/sp-cam", i) if method == "fused" else None
    sp = project.read("superpixels", i) if method == "fused" else None
    maps, norm = label_maps(sp_scores, project.read("cams/cam", i), sp, info.height, info.width, info.tags, settings)
    return uncertain_pixels(maps, info.tags, band=band, background=project.has_background, normalise=norm)


def view_backbones(project: Project, model: SPN, i: int, settings: EvidenceSettings, cache: dict[int, str] | None,
                   device: torch.device) -> dict | None:
    """{(side, mirrored): (Cb, g, g)} backbone maps of image i for every view of a cacheable
    (frozen) encoder: the cache's for the training sides it holds, the others computed through
    the cache's float16 (as a new photo's are, :class:`~spn_napari.segmenter.Segmenter`) and not
    stored — test-time sides and mirrored views would add more than a training set's worth of
    maps. None for other encoders (the SPN runs on the image)."""
    if not getattr(model.encoder, "cacheable", False):
        return None
    out, image = {}, None
    for side, mirrored in views(settings.sides, settings.flip):
        if not mirrored and cache and side in cache:
            out[(side, False)] = read_features(project, cache[side], i)
        else:
            image = project.image(i) if image is None else image
            out[(side, mirrored)] = torch.from_numpy(
                backbone_map(model.encoder, image, side, device, flip=mirrored).astype(np.float32))
    return out


def make_pseudo_labels(project: Project, cfg: PseudoLabelConfig = PseudoLabelConfig()) -> Iterator[Event]:
    """Compute and commit SP-CAM and CAM evidence and the chosen method's pseudo-labels.

    Artifacts: 'cams/sp-cam', 'cams/cam' and 'pseudo/<method>', each recording the
    :class:`EvidenceSettings` in its meta; streams one image at a time. Under torchrun each rank
    computes and writes its share of the images ('image' events count that share) and rank 0
    commits once all are written.
    """
    if cfg.method != "auto":
        check_method(cfg.method)
    if cfg.classes not in ("tags", "predicted"):
        raise SpnError(f"--classes {cfg.classes}: use 'tags' or 'predicted'.")
    project.require("spn")
    device = resolve_device(cfg.device)
    model, ckpt = load_spn(project, device)
    settings = resolve_settings(cfg, ckpt["scales"], project.has_background)
    trained = [s for s in settings.sides if s in set(ckpt["scales"])]  # only training sides are cached
    cache = (yield from feature_cache(project, model.encoder, ckpt["config"]["encoder"], trained, device)) if trained else None
    n, t0 = len(project), time.perf_counter()
    deps = ("superpixels", "spn")
    meta = {**settings.meta(), "classes": cfg.classes, "device": cfg.device}
    mine = distributed.shard(n)  # under torchrun each rank does its share; else every image
    kinds = ("cams/sp-cam", "cams/cam", f"pseudo/{settings.method}")
    with distributed.sharded_writers(project, kinds, depends=deps, meta=meta) as writers:
        w_sp, w_cam, w_lab = (writers[k] for k in kinds)
        for done, i in enumerate(mine, 1):
            info = project.images[i]
            sp = project.read("superpixels", i)
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
    yield Event("done", n, n, {"seconds": time.perf_counter() - t0, "method": settings.method,
                               "settings": settings.meta()})
