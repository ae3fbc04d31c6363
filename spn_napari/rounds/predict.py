"""A round's DecoupledNet predicting labels: its test-time views, one image's probabilities and
labels, and every project image's labels committed as an artifact.

:func:`spn_napari.rounds.refine.run_round` predicts the project's images with it after training; the
:class:`~spn_napari.predict.segmenter.Segmenter` predicts new photos exactly the same way, without importing
the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .. import distributed
from ..data.transforms import fit_to_canvas
from ..events import Event
from ..evidence.cam import upsample_cam
from ..evidence.features import view_maps, views
from ..labels import present_classes
from ..models.decoupled import DecoupledNet
from ..project.store import Project

__all__ = ["round_views", "view_probabilities", "predict_labels", "image_class_probabilities", "predict_round_labels"]


def round_views(scales, sides=None, flip: bool | None = None) -> list[tuple[int, bool]]:
    """The (side, mirrored) views a round's DecoupledNet predicts with, its probabilities averaged.

    Default: the middle training side alone. Unlike the SPN's evidence, larger or mirrored views
    did not help the round's labels on held-out folds of msrc-dev (held-out 0.626 mIoU against
    0.627 for the middle side, at 2–6× the time: benchmarks/round_views.py, docs/real-photos.md);
    ``sides``/``flip`` (``round --predict-sides/--predict-flip``) ask for them."""
    scales = sorted(int(s) for s in scales)
    return views(sides or (scales[len(scales) // 2],), bool(flip))


def _passes(side) -> list[tuple[int, bool]]:
    """A canvas side, or (side, mirrored) views, as the list of views."""
    return [(int(side), False)] if np.isscalar(side) else [(int(s), bool(m)) for s, m in side]


@torch.no_grad()
def view_probabilities(model: DecoupledNet, image: np.ndarray, classes: list[int], side: int, mirrored: bool,
                       device: torch.device, backbone: torch.Tensor | None = None) -> np.ndarray:
    """(1 + K, H, W) probabilities of one view: row 0 background, row k + 1 ``classes[k]``.

    A mirrored view flips the whole square canvas, so its maps flip back cell for cell;
    ``backbone`` (Cb, g, g): the frozen encoder's map of this view, used instead of the image."""
    h, w = image.shape[:2]
    if backbone is not None:
        probs = model.segment(None, classes, backbone=backbone[None].to(device))  # (1+K, side, side)
    else:
        x, _, _ = fit_to_canvas(image, None, side)  # (3, side, side)
        probs = model.segment((x.flip(-1) if mirrored else x)[None].to(device), classes)  # (1+K, side, side)
    if mirrored:
        probs = probs.flip(-1)
    return upsample_cam(probs.cpu().numpy(), h, w)  # (1+K, H, W)


@torch.no_grad()
def predict_labels(model: DecoupledNet, image: np.ndarray, classes, side, device: torch.device, *,
                   background: bool = True, backbone=None) -> tuple[np.ndarray, float]:
    """One image's labels (H, W) uint8 and its uncertainty (mean of 1 - the winning probability).

    ``side``: a canvas side, or the (side, mirrored) views (:func:`round_views`) whose
    probabilities are averaged. ``background=False``: the background row is dropped and each
    pixel takes the most probable of ``classes`` (probabilities renormalised over them); no
    classes leaves every pixel 0. ``backbone``: the frozen encoder's cached map (Cb, g, g) of the
    image at a single ``side``, or {(side, mirrored): map} for views, used instead of running the
    encoder."""
    passes = _passes(side)
    maps = backbone if isinstance(backbone, dict) else {passes[0]: backbone} if backbone is not None else {}
    classes = sorted(int(c) for c in classes)
    probs = sum(view_probabilities(model, image, classes, s, m, device, maps.get((s, m)))
                for s, m in passes) / len(passes)  # (1+K, H, W)
    lut = np.array([0] + [c + 1 for c in classes], np.uint8)
    if not background and classes:
        probs, lut = probs[1:] / np.maximum(probs[1:].sum(0), 1e-12), lut[1:]  # (K, H, W), (K,)
    return lut[probs.argmax(0)], float(1.0 - probs.max(0).mean())


@torch.no_grad()
def image_class_probabilities(model: DecoupledNet, image: np.ndarray, side: int, device: torch.device,
                              backbone: torch.Tensor | None = None) -> np.ndarray:
    """(C,) the classifier's probability of each class in ``image`` at canvas ``side``
    (``backbone`` (Cb, g, g): its cached map, used instead of the image)."""
    if backbone is not None:
        p = model.class_probabilities(None, backbone=backbone[None].to(device))
    else:
        x, _, _ = fit_to_canvas(image, None, side)  # (3, side, side)
        p = model.class_probabilities(x[None].to(device))
    return p[0].cpu().numpy()  # (C,)


def predict_round_labels(project: Project, model: DecoupledNet, kind: str, side, device: torch.device, *,
                         cache: dict[int, str] | None = None, meta: dict | None = None) -> Iterator[Event]:
    """Predict every image's labels with ``model`` (eval mode) at canvas ``side`` (or the
    (side, mirrored) views of :func:`round_views`) and commit them as artifact ``kind``; returns
    each image's uncertainty, in image order. With ``cache`` the frozen encoder's maps come from
    it for the sides it holds, through its float16 for the other views.

    Under torchrun each rank predicts and writes its share of the images ('image' events count
    that share), rank 0 commits once all are written, and every rank gets every uncertainty.

    Without a background class an image with a single class has nothing to choose between (its
    labels are certain): its uncertainty is 1 - the classifier's probability of that class, how
    little the round's net agrees with the tag, so such photos do not all read "certain"."""
    passes = _passes(side)
    mine, values = distributed.shard(len(project)), {}
    with distributed.sharded_writers(project, [kind], meta=meta) as writers:
        for done, i in enumerate(mine, 1):
            maps = view_maps(project, model.encoder, i, passes, cache, device) if cache else None
            image, classes = project.image(i), present_classes(project, i)
            labels, u = predict_labels(model, image, classes, passes, device,
                                       background=project.has_background, backbone=maps)
            if not project.has_background and len(classes) == 1:
                side0 = passes[0][0]
                u = 1.0 - float(image_class_probabilities(model, image, side0, device,
                                                          None if maps is None else maps.get((side0, False)))[classes[0]])
            writers[kind].put(i, labels)
            values[i] = round(u, 5)
            yield Event("image", done, len(mine))
    for part in distributed.gather(values):
        values.update(part)
    return [values[i] for i in range(len(project))]
