"""Segmentation metrics: confusion matrix, per-class IoU and mIoU, ignoring label 255."""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE", "confusion_matrix", "iou_per_class", "mean_iou", "ConfusionMeter"]

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


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the defined per-label IoUs (background included, as in PASCAL VOC)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class ConfusionMeter:
    """Accumulates a confusion matrix image by image (constant memory)."""

    def __init__(self, n_labels: int) -> None:
        self.cm = np.zeros((n_labels, n_labels), np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.cm += confusion_matrix(pred, gt, len(self.cm))

    def summary(self, names: list[str]) -> dict:
        """{'miou', 'per_class': {name: iou}, 'pixel_accuracy'}; names include 'background'."""
        iou = iou_per_class(self.cm)
        total = self.cm.sum()
        return {"miou": mean_iou(self.cm),
                "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
                "pixel_accuracy": float(np.trace(self.cm) / total) if total else float("nan")}
