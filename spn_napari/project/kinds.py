"""The names of a project's artifacts, built in one place (a rename is one edit here).

An artifact kind names what :class:`~spn_napari.project.store.Project` keeps (``project.read(kind, i)``,
``project.file(kind)``): per-image arrays and files, each made by one ``spn-napari`` step.
Constants for the fixed kinds, functions for the families. Corrections are not artifacts: the
store keeps each as a group of its own (``Project.save_correction``), named in ``store.py`` alone.
"""

from __future__ import annotations

__all__ = ["SUPERPIXELS", "SPN", "SP_CAM", "CAM", "SUGGESTIONS", "DESCRIPTORS", "pseudo_labels", "method_of", "round_labels",
           "round_model", "feature_maps", "live_labels", "maker"]

SUPERPIXELS = "superpixels"
"""(H, W) int32 SLIC labels 0..N-1 per image (``superpixels``)."""

SPN = "spn"
"""The SPN's checkpoint file (``train-spn``)."""

SP_CAM = "cams/sp-cam"
"""(N, C) float32 SP-CAM scores per image, one row per superpixel (``pseudo-labels``)."""

CAM = "cams/cam"
"""(C, g, g) float32 CAM per image on the backbone's grid (``pseudo-labels``)."""

SUGGESTIONS = "suggestions/index"
"""The ranked superpixels to check, one .npz file (:mod:`spn_napari.review.suggest`)."""


DESCRIPTORS = "descriptors"
"""Every superpixel's descriptor, one .npz file (:mod:`spn_napari.evidence.descriptors`)."""


def pseudo_labels(method: str) -> str:
    """(H, W) uint8 pseudo-labels of ``method`` ('fused', 'sp-cam', 'cam') per image (``pseudo-labels``)."""
    return f"pseudo/{method}"


def method_of(kind: str) -> str | None:
    """The method of a :func:`pseudo_labels` kind ('pseudo/fused' -> 'fused'); None for other kinds.
    (:func:`spn_napari.labels.pseudo_method` is another question: which method a project uses.)"""
    return kind.split("/", 1)[1] if kind.startswith("pseudo/") else None


def round_labels(r: int) -> str:
    """(H, W) uint8 labels of round r per image: round 0 a copy of the pseudo-labels (``round``)."""
    return f"round/{int(r)}/labels"


def round_model(r: int) -> str:
    """Round r's DecoupledNet checkpoint file (``round``)."""
    return f"round/{int(r)}/model"


def feature_maps(encoder: str, side: int) -> str:
    """(Cb, g, g) float16 backbone maps of a frozen ``encoder`` at canvas ``side`` per image
    (:mod:`spn_napari.evidence.features`)."""
    return f"features/{encoder}/{int(side)}"


def live_labels(r: int) -> str:
    """The live head's labels for round r's labels (round 0 also before any round), one .npz file
    (:mod:`spn_napari.project.live_labels`; ``propagate``)."""
    return f"live/{int(r)}"


def maker(kind: str, root) -> str:
    """The command that makes artifact ``kind`` in the project at ``root``, for error messages."""
    if kind.startswith("round/"):
        return f"spn-napari round {root}"
    if kind == DESCRIPTORS or kind.startswith("live/"):
        return f"spn-napari propagate {root}"
    step = {SUPERPIXELS: "superpixels", SPN: "train-spn"}.get(kind, "pseudo-labels")
    method = f" --method {kind.split('/', 1)[1]}" if kind.startswith(("pseudo/", "cams/")) else ""
    return f"spn-napari {step} {root}{method}"
