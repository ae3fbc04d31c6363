"""Segmentation metrics: confusion matrix, per-class IoU and mIoU, per-class accuracy (recall) and
its mean, ignoring label 255.

Label values: 0 background, c+1 class c. In a project without a background class (``init
--no-background``) the matrix keeps row and column 0: the ground truth never holds 0, and a
prediction of 0 ("no label") counts as an error for the true class, but label 0 has no score of
its own and stays out of the means.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE", "confusion_matrix", "iou_per_class", "mean_iou", "class_accuracy", "mean_class_accuracy",
           "ConfusionMeter"]

IGNORE = 255


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, n_labels: int, ignore: int = IGNORE) -> np.ndarray:
    """(n_labels, n_labels) int64 counts, rows = ground truth, columns = prediction.

    Pixels whose ground truth is ``ignore`` are skipped; predictions outside 0..n_labels-1 are an error.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction of shape {pred.shape}, ground truth {gt.shape}")
    pred, gt = pred.ravel(), gt.ravel()
    keep = gt != ignore
    p, g = pred[keep].astype(np.int64), gt[keep].astype(np.int64)
    if p.size and (p.max() >= n_labels or p.min() < 0 or g.max() >= n_labels or g.min() < 0):
        raise ValueError(f"labels outside 0..{n_labels - 1}")
    return np.bincount(g * n_labels + p, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of each label; NaN where the label is in neither prediction nor ground truth."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray, *, background: bool = True) -> float:
    """Mean of the defined per-label IoUs (background included, as in PASCAL VOC);
    ``background=False``: of labels 1.. only (label 0's predictions still count as errors)."""
    return _nanmean(iou_per_class(cm)[0 if background else 1:])


def class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Accuracy (recall) of each label: true positives / its ground-truth pixels; NaN where the
    ground truth lacks it. MSRC results report the mean of these (with the pixel accuracy)."""
    tp = np.diag(cm).astype(np.float64)
    gt = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gt > 0, tp / gt, np.nan)


def mean_class_accuracy(cm: np.ndarray, *, background: bool = True) -> float:
    """Mean of :func:`class_accuracy` over the labels present in the ground truth (``background=
    False``: label 0 left out)."""
    return _nanmean(class_accuracy(cm)[0 if background else 1:])


def _nanmean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


class ConfusionMeter:
    """Accumulates a confusion matrix image by image (constant memory)."""

    def __init__(self, n_labels: int) -> None:
        self.cm = np.zeros((n_labels, n_labels), np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.cm += confusion_matrix(pred, gt, len(self.cm))

    def summary(self, names: list[str], *, background: bool = True) -> dict:
        """{'miou', 'per_class': {name: iou}, 'pixel_accuracy', 'mean_class_accuracy'}.

        ``names`` name labels 0.. ('background' first); ``background=False``: they name labels
        1.. (the classes) and label 0 is neither a row of per_class nor part of the means.
        """
        first = 0 if background else 1
        if len(names) != len(self.cm) - first:
            raise ValueError(f"{len(names)} names for labels {first}..{len(self.cm) - 1}")
        iou = iou_per_class(self.cm)[first:]
        total = self.cm.sum()
        return {"miou": mean_iou(self.cm, background=background),
                "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
                "pixel_accuracy": float(np.trace(self.cm) / total) if total else float("nan"),
                "mean_class_accuracy": mean_class_accuracy(self.cm, background=background)}
