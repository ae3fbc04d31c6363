"""Scoring a set of labels (pseudo-labels of a method, later a round) against the ground truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ProjectError
from .metrics import IGNORE, ConfusionMeter
from .rounds import labels_reader
from .store import Project

__all__ = ["evaluate_labels", "score_labels", "largest_tag_labels"]


def evaluate_labels(project: Project, kind: str | None) -> dict:
    """mIoU, per-class IoU, pixel accuracy and mean class accuracy of artifact ``kind`` (None: the
    current labels, corrections included) over images with ground truth.

    Returns ``{"labels": kind, "miou": …, "per_class": {"background": …, name: …},
    "pixel_accuracy": …, "mean_class_accuracy": …, "images": n}``; a project without a background
    class has no "background" entry, and it is not in the means (see :mod:`spn_napari.metrics`).
    """
    return {"labels": kind or "current", **score_labels(project, labels_reader(project, kind))}


def score_labels(project: Project, read: Callable[[int], np.ndarray]) -> dict:
    """The metrics of :func:`evaluate_labels` for any labels: ``read(i)`` -> (H, W) uint8."""
    if not project.has_ground_truth:
        raise ProjectError(f"{project.root}: this project has no ground-truth masks — import a data set "
                           f"with masks/ (or VOC SegmentationClass/) to evaluate.")
    meter = ConfusionMeter(1 + len(project.classes))
    count = 0
    for i in range(len(project)):
        gt = project.ground_truth(i)
        if gt is not None:
            meter.add(read(i), gt)
            count += 1
    summary = meter.summary(project.label_names(), background=project.has_background)
    return {**summary, "images": count}


def largest_tag_labels(project: Project, i: int) -> np.ndarray:
    """Baseline (H, W) labels: every pixel the class that covers most of image i's ground truth
    (an oracle choice among its tags: what a method that cannot localise gets at best)."""
    gt = project.ground_truth(i)
    counts = np.bincount(gt[gt != IGNORE].ravel(), minlength=len(project.classes) + 1)
    counts[0] = 0  # background is not a tag
    return np.full(gt.shape, int(counts.argmax()), np.uint8)
