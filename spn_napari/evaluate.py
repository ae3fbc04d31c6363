"""Scoring a set of labels (pseudo-labels of a method, a round's) against the ground truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ProjectError
from .labels import apply_correction, labels_reader
from .metrics import IGNORE, ConfusionMeter
from .project.kinds import round_labels
from .project.store import Project

__all__ = ["evaluate_labels", "score_labels", "round_metrics", "largest_tag_labels"]


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


def round_metrics(project: Project, r: int, parent: int | None) -> dict:
    """mIoU of the project's labels with round r current (corrections applied) over all images,
    over the images nobody corrected, and of the model's own labels; the share of pixels changed
    since the parent round. One pass: each image's labels, correction and truth are read once."""
    names, bg = project.label_names(), project.has_background
    full, model, raw = (ConfusionMeter(1 + len(project.classes)) for _ in range(3))
    n_gt = n_raw = corrected = diff = total = 0
    reviews = project.reviews()  # one read, not one per image
    for i in range(len(project)):
        labels = project.read(round_labels(r), i)
        corr = project.correction(i)
        touched = corr is not None or reviews[i] == "reviewed"
        corrected += touched
        gt = project.ground_truth(i)
        if gt is not None:
            full.add(apply_correction(labels, corr), gt)
            model.add(labels, gt)
            n_gt += 1
            if not touched:
                raw.add(labels, gt)
                n_raw += 1
        if parent is not None:
            diff += int((labels != project.read(round_labels(parent), i)).sum())
            total += labels.size
    out: dict = {"corrected": corrected}
    if n_gt:
        s, sm = full.summary(names, background=bg), model.summary(names, background=bg)
        out.update(miou=s["miou"], per_class=s["per_class"], mean_class_accuracy=s["mean_class_accuracy"],
                   miou_unreviewed=raw.summary(names, background=bg)["miou"] if n_raw else None,
                   miou_model=sm["miou"], mean_class_accuracy_model=sm["mean_class_accuracy"])
    if parent is not None:
        out["changed"] = diff / max(1, total)
    return out


def largest_tag_labels(project: Project, i: int) -> np.ndarray:
    """Baseline (H, W) labels: every pixel the class that covers most of image i's ground truth
    (an oracle choice among its tags: what a method that cannot localise gets at best)."""
    gt = project.ground_truth(i)
    counts = np.bincount(gt[gt != IGNORE].ravel(), minlength=len(project.classes) + 1)
    counts[0] = 0  # background is not a tag
    return np.full(gt.shape, int(counts.argmax()), np.uint8)
