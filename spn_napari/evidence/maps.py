"""From the SPN's evidence to labels: how evidence is made and read (:class:`EvidenceSettings`),
and the one path from one image's evidence to its labels, their uncertainty and the maps the
viewer shows — for a project's pseudo-labels and for predicting a new photo alike.

The settings are recorded in each evidence artifact's meta (``project.db``); a project made
before they existed reads as what it did then (:meth:`EvidenceSettings.from_meta`). Computing
the evidence (the SPN's forward passes) is :mod:`spn_napari.evidence.pseudo_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SpnError
from ..project import kinds
from ..project.store import Project
from .cam import (
    DEFAULT_NORMALISE,
    METHODS,
    fuse_scores,
    paint_superpixels,
    tag_scores,
    threshold_maps,
    uncertain_pixels,
    upsample_cam,
)

__all__ = ["check_method", "check_normalise", "EvidenceSettings", "EVIDENCE_FACTORS", "evidence_sides", "Evidence", "label_maps",
           "label_evidence", "project_settings", "evidence_maps", "unsure_evidence", "evidence_candidates",
           "CANDIDATE_THRESHOLD"]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise SpnError(f"--method {method}: unknown method — use one of {', '.join(METHODS)}.")
    return method


def check_normalise(normalise: str | None) -> str | None:
    """A user's ``--normalise``: None (each method's own), "max" or "shared"."""
    if normalise is not None and normalise not in ("max", "shared"):
        raise SpnError(f"--normalise {normalise}: use max or shared.")
    return normalise


@dataclass(frozen=True)
class EvidenceSettings:
    """How a project's evidence is made and labelled, resolved from a :class:`PseudoLabelConfig`
    and recorded in the artifacts' meta (``project.db``), so predicting a new photo follows the
    same path. Projects made before these settings existed read as what they did then
    (:meth:`from_meta`)."""

    method: str
    sides: tuple[int, ...]
    flip: bool
    normalise: str | None  # None: DEFAULT_NORMALISE per method
    aggregate: str = "mean"  # over views: "mean"; "max" in projects made before flips existed
    threshold: float = 0.5

    def part_normalise(self, method: str) -> str:
        return self.normalise or DEFAULT_NORMALISE[method]

    @classmethod
    def from_meta(cls, meta: dict, method: str, default_sides: Sequence[int]) -> EvidenceSettings:
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


@dataclass
class Evidence:
    """One image's evidence (numpy; tensors for a single view,
    :func:`~spn_napari.evidence.pseudo_labels.view_evidence`)."""

    sp_scores: np.ndarray  # (N, C) SP-CAM score of each superpixel
    cam: np.ndarray  # (C, h, w) CAM over the square canvas of side max(H, W)
    probs: np.ndarray  # (C,) image-level class probabilities (top branch)


def label_maps(sp_scores: np.ndarray | None, cam: np.ndarray | None, sp: np.ndarray | None, height: int, width: int,
               classes: Iterable[int], settings: EvidenceSettings) -> tuple[np.ndarray, str]:
    """The (C, H, W) maps the per-pixel choice is made on, and the normalisation to label them
    with (:func:`~spn_napari.evidence.cam.threshold_maps`): one image's stored evidence (``cams/sp-cam``
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


def _tag_maps(sp_scores: np.ndarray | None, cam: np.ndarray | None, sp: np.ndarray | None, height: int, width: int,
              classes: Iterable[int], settings: EvidenceSettings) -> tuple[list[int], np.ndarray, str]:
    """:func:`label_maps` for the considered classes only: their sorted list, their (K, H, W) maps
    and the normalisation — the same numbers, without painting and upsampling every class."""
    cs = sorted({int(c) for c in classes})
    sub_sp = None if sp_scores is None else np.asarray(sp_scores)[:, cs]  # (N, K)
    sub_cam = None if cam is None else np.asarray(cam)[cs]  # (K, h, w)
    maps, norm = label_maps(sub_sp, sub_cam, sp, height, width, range(len(cs)), settings)
    return cs, maps, norm


def label_evidence(ev: Evidence, sp: np.ndarray, classes: Iterable[int], settings: EvidenceSettings, *,
                   background: bool) -> np.ndarray:
    """(H, W) uint8 labels of one image's evidence over ``classes`` under ``settings``."""
    if not len(classes := list(classes)):
        return np.zeros(sp.shape, np.uint8)  # no class is possible
    cs, maps, norm = _tag_maps(ev.sp_scores, ev.cam, sp, *sp.shape, classes, settings)  # (K, H, W)
    lut = np.array([0] + [c + 1 for c in cs], np.uint8)
    return lut[threshold_maps(maps, range(len(cs)), settings.threshold, background=background, normalise=norm)]


def project_settings(project: Project, method: str) -> EvidenceSettings:
    """The evidence settings the project's ``method`` pseudo-labels were made with (its artifact's
    meta; the stored evidence's for a method whose labels were not written)."""
    art = project.artifact(kinds.pseudo_labels(method)) or project.require(kinds.SP_CAM)
    return EvidenceSettings.from_meta(art.get("meta", {}), method, [])


def _stored(project: Project, i: int, method: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Image i's stored evidence that ``method`` reads: SP-CAM scores (N, C), CAM (C, h, w) and
    superpixels (H, W); None for what it does not read."""
    uses_sp, uses_cam = method != "cam", method != "sp-cam"
    return (project.read(kinds.SP_CAM, i) if uses_sp else None, project.read(kinds.CAM, i) if uses_cam else None,
            project.read(kinds.SUPERPIXELS, i) if uses_sp else None)


def evidence_maps(project: Project, i: int, method: str) -> np.ndarray:
    """(C, H, W) class evidence of image i, painted (SP-CAM) or upsampled (CAM) from the store;
    ``fused``: the averaged normalised scores over the image's tags (-inf elsewhere)."""
    check_method(method)
    info = project.images[i]
    return label_maps(*_stored(project, i, method), info.height, info.width, info.tags,
                      project_settings(project, method))[0]


def unsure_evidence(project: Project, i: int, method: str, band: float) -> np.ndarray:
    """(H, W) bool: image i's pixels whose ``method`` evidence, normalised as its labels were
    made, has its best two tags within ``band`` (:func:`~spn_napari.evidence.cam.uncertain_pixels`)."""
    check_method(method)
    info = project.images[i]
    settings = project_settings(project, method)
    if method == "sp-cam":  # constant per superpixel: decided per superpixel and painted (4× faster)
        scores = project.read(kinds.SP_CAM, i)  # (N, C)
        return uncertain_pixels(scores.T[:, :, None], info.tags, band=band, background=project.has_background,
                                normalise=settings.part_normalise("sp-cam"))[:, 0][project.read(kinds.SUPERPIXELS, i)]
    if not info.tags:
        return uncertain_pixels(np.zeros((0, info.height, info.width), np.float32), [], band=band,
                                background=project.has_background)
    cs, maps, norm = _tag_maps(*_stored(project, i, method), info.height, info.width, info.tags,
                               settings)  # (K, H, W)
    return uncertain_pixels(maps, range(len(cs)), band=band, background=project.has_background, normalise=norm)


CANDIDATE_THRESHOLD = 0.5  # with a background class: a tag's normalised score below this is background


def evidence_candidates(project: Project, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i's candidate label values (K,) and each one's SP-CAM evidence on each superpixel
    (K, N): each tag's scores over its peak (-1 for a tag without positive evidence; when no tag
    has any, the raw scores over their largest magnitude), and with a background class value 0
    at the threshold."""
    scores = project.read(kinds.SP_CAM, i)  # (N, C)
    cs, norm, ok = tag_scores(scores.T[:, :, None], project.images[i].tags, "max")  # (K, N, 1)
    cand = norm[:, :, 0]  # (K, N) candidates' evidence
    values = [c + 1 for c in cs]
    if project.has_background:  # background competes at the threshold
        cand = np.concatenate([np.full((1, cand.shape[1]), CANDIDATE_THRESHOLD, np.float32), cand])
        values = [0] + values
    cand = np.where(np.isfinite(cand), cand, -1.0) if ok else cand / max(float(np.abs(cand).max()), 1e-12)
    return np.asarray(values), cand
