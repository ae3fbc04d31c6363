"""Confusion matrix, per-class IoU, mIoU and ConfusionMeter against hand-computed values and a loop."""

from __future__ import annotations

import numpy as np
import pytest

from spn_napari.metrics import (
    IGNORE,
    ConfusionMeter,
    class_accuracy,
    confusion_matrix,
    iou_per_class,
    mean_class_accuracy,
    mean_iou,
)

# 3 labels (0 background, 1, 2); two ground-truth pixels are 255 (ignored).
GT = np.array([[0, 0, 1, 1],
               [0, 2, 1, 255],
               [2, 2, 255, 1]], np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 0, 2],
                 [2, 0, 1, 1]], np.uint8)
# Pixel by pixel (gt -> pred), skipping (1,3) and (2,2) which are 255 in GT:
#   gt 0: (0,0)->0 (0,1)->1 (1,0)->0                    -> [2, 1, 0]
#   gt 1: (0,2)->1 (0,3)->1 (1,2)->0 (2,3)->1           -> [1, 3, 0]
#   gt 2: (1,1)->2 (2,0)->2 (2,1)->0                    -> [1, 0, 2]
CM = np.array([[2, 1, 0],
               [1, 3, 0],
               [1, 0, 2]])
# IoU = tp / (row sum + column sum - tp):
#   label 0: 2 / (3 + 4 - 2) = 2/5
#   label 1: 3 / (4 + 4 - 3) = 3/5
#   label 2: 2 / (3 + 2 - 2) = 2/3
IOU = np.array([2 / 5, 3 / 5, 2 / 3])
MIOU = (2 / 5 + 3 / 5 + 2 / 3) / 3  # = 5/9


def cm_loop(pred: np.ndarray, gt: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n), np.int64)
    for p, g in zip(pred.ravel(), gt.ravel()):
        if g != IGNORE:
            out[g, p] += 1
    return out


def test_confusion_matrix_hand_case():
    cm = confusion_matrix(PRED, GT, 3)
    assert cm.shape == (3, 3) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)
    assert cm.sum() == 10  # 12 pixels - 2 ignored


def test_iou_and_mean_iou_hand_case():
    np.testing.assert_allclose(iou_per_class(CM), IOU, rtol=1e-15)
    assert mean_iou(CM) == pytest.approx(5 / 9, rel=1e-15)
    assert mean_iou(CM) == pytest.approx(MIOU, rel=1e-15)


def test_confusion_matrix_matches_loop_random():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (17, 23)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = IGNORE
    pred = rng.integers(0, 5, gt.shape).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 5), cm_loop(pred, gt, 5))


def test_absent_label_is_nan_and_left_out_of_mean():
    pred = PRED.copy()
    pred[1, 3] = 3  # label 3 predicted only on an ignored pixel: still absent
    cm = confusion_matrix(pred, GT, 4)
    np.testing.assert_array_equal(cm[:3, :3], CM)
    assert (cm[3] == 0).all() and (cm[:, 3] == 0).all()
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou[:3], IOU, rtol=1e-15)
    assert np.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx(5 / 9, rel=1e-15)  # not 5/12: NaN is excluded


def test_label_in_prediction_only_has_zero_iou():
    pred = PRED.copy()
    pred[0, 0] = 3  # was a correct 0; now a false positive of label 3
    cm = confusion_matrix(pred, GT, 4)
    # label 0: tp 1, row 3, col 3 -> 1/5;  label 3: tp 0, union 1 -> 0
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou, [1 / 5, 3 / 5, 2 / 3, 0.0], rtol=1e-15)
    assert mean_iou(cm) == pytest.approx((1 / 5 + 3 / 5 + 2 / 3 + 0) / 4, rel=1e-15)


def test_all_nan_mean_is_nan():
    cm = np.zeros((3, 3), np.int64)
    assert np.isnan(iou_per_class(cm)).all()
    assert np.isnan(mean_iou(cm))


def test_all_ignored_gives_zero_matrix():
    gt = np.full((2, 3), IGNORE, np.uint8)
    np.testing.assert_array_equal(confusion_matrix(np.zeros((2, 3), np.uint8), gt, 3), np.zeros((3, 3)))


def test_size_mismatch_raises():
    with pytest.raises(ValueError):
        confusion_matrix(PRED[:, :3], GT, 3)


def test_same_size_different_shape_raises():
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((4, 3), np.uint8), np.zeros((3, 4), np.uint8), 3)


@pytest.mark.parametrize("where, value", [("pred", 3), ("pred", -1), ("gt", 3), ("gt", 7), ("gt", -1)])
def test_out_of_range_labels_raise(where, value):
    pred, gt = PRED.astype(np.int64), GT.astype(np.int64)
    (pred if where == "pred" else gt)[0, 1] = value
    with pytest.raises(ValueError):
        confusion_matrix(pred, gt, 3)


def test_meter_over_two_images_equals_concatenation():
    rng = np.random.default_rng(1)
    gt2 = rng.integers(0, 3, (5, 7)).astype(np.uint8)
    gt2[0, :3] = IGNORE
    pred2 = rng.integers(0, 3, (5, 7)).astype(np.uint8)
    meter = ConfusionMeter(3)
    meter.add(PRED, GT)
    np.testing.assert_array_equal(meter.cm, CM)
    meter.add(pred2, gt2)
    concat = confusion_matrix(np.concatenate([PRED.ravel(), pred2.ravel()]),
                              np.concatenate([GT.ravel(), gt2.ravel()]), 3)
    np.testing.assert_array_equal(meter.cm, concat)
    np.testing.assert_array_equal(meter.cm, CM + cm_loop(pred2, gt2, 3))


def test_meter_summary_hand_case():
    meter = ConfusionMeter(4)
    meter.add(PRED, GT)
    s = meter.summary(["background", "a", "b", "c"])
    assert s["miou"] == pytest.approx(5 / 9, rel=1e-15)
    assert s["per_class"]["background"] == pytest.approx(2 / 5)
    assert s["per_class"]["a"] == pytest.approx(3 / 5)
    assert s["per_class"]["b"] == pytest.approx(2 / 3)
    assert s["per_class"]["c"] is None  # NaN -> None (JSON-safe)
    assert s["pixel_accuracy"] == pytest.approx(7 / 10)  # trace 2+3+2 over 10 counted pixels
    # recall per ground-truth label: 2/3, 3/4, 2/3; label 3 is not in the ground truth
    assert s["mean_class_accuracy"] == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3, rel=1e-15)


# Without a background class: labels 1..3 are the classes, the ground truth never holds 0, and a
# prediction of 0 ("no label") is an error for the true class.
GT_NB = np.array([[1, 1, 2, 2],
                  [1, 3, 2, 255],
                  [3, 3, 255, 2]], np.uint8)
PRED_NB = np.array([[1, 2, 2, 2],
                    [0, 3, 1, 2],
                    [3, 0, 2, 2]], np.uint8)
#   gt 1: (0,0)->1 (0,1)->2 (1,0)->0           -> [1, 1, 1, 0]
#   gt 2: (0,2)->2 (0,3)->2 (1,2)->1 (2,3)->2  -> [0, 1, 3, 0]
#   gt 3: (1,1)->3 (2,0)->3 (2,1)->0           -> [1, 0, 0, 2]
CM_NB = np.array([[0, 0, 0, 0],
                  [1, 1, 1, 0],
                  [0, 1, 3, 0],
                  [1, 0, 0, 2]])
# IoU (row + column - tp): 1: 1/(3+2-1) = 1/4, 2: 3/(4+4-3) = 3/5, 3: 2/(3+2-2) = 2/3; label 0: 0/2
# class accuracy (tp / row): 1: 1/3, 2: 3/4, 3: 2/3


def test_no_background_hand_case():
    cm = confusion_matrix(PRED_NB, GT_NB, 4)
    np.testing.assert_array_equal(cm, CM_NB)
    np.testing.assert_allclose(class_accuracy(cm), [np.nan, 1 / 3, 3 / 4, 2 / 3], rtol=1e-15)
    assert mean_iou(cm, background=False) == pytest.approx((1 / 4 + 3 / 5 + 2 / 3) / 3, rel=1e-15)
    assert mean_iou(cm) == pytest.approx((0 + 1 / 4 + 3 / 5 + 2 / 3) / 4, rel=1e-15)  # label 0 as a class
    assert mean_class_accuracy(cm, background=False) == pytest.approx(7 / 12, rel=1e-15)
    assert mean_class_accuracy(cm) == pytest.approx(7 / 12, rel=1e-15)  # label 0 absent from the truth
    meter = ConfusionMeter(4)
    meter.add(PRED_NB, GT_NB)
    s = meter.summary(["sky", "grass", "cow"], background=False)
    assert list(s["per_class"]) == ["sky", "grass", "cow"]
    np.testing.assert_allclose(list(s["per_class"].values()), [1 / 4, 3 / 5, 2 / 3], rtol=1e-15)
    assert s["miou"] == pytest.approx(91 / 180, rel=1e-15)
    assert s["mean_class_accuracy"] == pytest.approx(7 / 12, rel=1e-15)
    assert s["pixel_accuracy"] == pytest.approx(6 / 10)
    with pytest.raises(ValueError, match="names"):
        meter.summary(["background", "sky", "grass", "cow"], background=False)


def test_class_accuracy_matches_loop_random():
    rng = np.random.default_rng(2)
    gt = rng.integers(1, 5, (19, 13)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = IGNORE
    pred = rng.integers(0, 5, gt.shape).astype(np.uint8)
    cm = confusion_matrix(pred, gt, 5)
    for c in range(1, 5):
        counted = gt == c
        assert class_accuracy(cm)[c] == pytest.approx((pred[counted] == c).mean(), rel=1e-12)
    assert np.isnan(class_accuracy(cm)[0])
