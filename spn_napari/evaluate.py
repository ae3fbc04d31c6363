"""Scoring a set of labels (pseudo-labels of a method, later a round) against the ground truth."""

from __future__ import annotations

from .errors import ProjectError
from .metrics import ConfusionMeter
from .rounds import labels_reader
from .store import Project

__all__ = ["evaluate_labels"]


def evaluate_labels(project: Project, kind: str | None) -> dict:
    """mIoU, per-class IoU and pixel accuracy of artifact ``kind`` (None: the current labels,
    corrections included) over images with ground truth.

    Returns ``{"labels": kind, "miou": …, "per_class": {"background": …, name: …}, "images": n}``.
    """
    if not project.has_ground_truth:
        raise ProjectError(f"{project.root}: this project has no ground-truth masks — import a data set "
                           f"with masks/ (or VOC SegmentationClass/) to evaluate.")
    read = labels_reader(project, kind)
    names = ["background", *project.classes]
    meter = ConfusionMeter(len(names))
    count = 0
    for i, info in enumerate(project.images):
        gt = project.ground_truth(i)
        if gt is not None:
            meter.add(read(i), gt)
            count += 1
    return {"labels": kind or "current", **meter.summary(names), "images": count}
