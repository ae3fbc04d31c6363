"""An annotator's effort in clicks and looks, on superpixels (the annotator model of the effort curves).

One *click* sets one whole superpixel to a class, as the dock's superpixel fill does. One *look* is
a superpixel shown and found correct. A superpixel's label is the class most of its pixels carry
(its majority), and its true class the majority of its ground truth (pixels marked 255, "not
labelled", left out). A person fixing a whole image looks at every superpixel and clicks each one
whose label is not its true class; what lies inside a superpixel (sub-superpixel errors) stays as
it is. How much mIoU that leaves on the table is the *superpixel oracle*: every superpixel given its
true class.

Why superpixels: they are the unit the dock's fill paints and the unit SP-CAM scores, and counting
in them makes a whole mask and a handful of suggested fixes comparable (Cai et al., CVPR 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import superpixel_majority
from ..metrics import IGNORE, ConfusionMeter
from ..project.kinds import SUPERPIXELS
from ..project.store import Project

__all__ = ["WholeImageFix", "fix_whole_image", "oracle_labels", "superpixel_oracle"]


@dataclass(frozen=True)
class WholeImageFix:
    """What fixing one whole image costs and gives: ``labels`` (H, W) after the clicks."""

    labels: np.ndarray
    clicks: int
    looks: int


def fix_whole_image(sp: np.ndarray, labels: np.ndarray, gt: np.ndarray) -> WholeImageFix:
    """A person fixes image (``sp``, current ``labels``, truth ``gt`` with 255 unlabelled) whole:
    every superpixel looked at, each whose majority label is not its true majority clicked to it."""
    truth = superpixel_majority(sp, gt, ignore=IGNORE)  # (N,)
    have = superpixel_majority(sp, labels)  # (N,)
    wrong = (truth != IGNORE) & (have != truth)  # (N,)
    fixed = np.where(wrong[sp], truth[sp], labels).astype(np.uint8)
    return WholeImageFix(fixed, int(wrong.sum()), int(truth.size))


def oracle_labels(sp: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(H, W) every superpixel given its true majority class (255 where it has no truth)."""
    return superpixel_majority(sp, gt, ignore=IGNORE)[sp]


def superpixel_oracle(project: Project) -> dict:
    """The metrics (:func:`spn_napari.evaluate.score_labels`) of the superpixel oracle: the best
    any annotator who clicks whole superpixels can reach with the project's superpixels."""
    meter = ConfusionMeter(1 + len(project.classes))
    n = 0
    for i in range(len(project)):
        gt = project.ground_truth(i)
        if gt is not None:
            meter.add(oracle_labels(project.read(SUPERPIXELS, i), gt), gt)
            n += 1
    return {**meter.summary(project.label_names(), background=project.has_background), "images": n}
