"""The frozen encoder's output, computed once per image and canvas side and kept in the project.

A frozen encoder (lite0) gives the same backbone map for the same image at the same side every
time, so recomputing it in every epoch, in SP-CAM/CAM inference and in every DecoupledNet round
is wasted work: it is most of a training step's cost on a CPU. This module computes the maps
once — artifact ``features/<encoder>/<side>`` (:func:`spn_napari.project.kinds.feature_maps`), one
(Cb, g, g) float16 array per image, g the canvas side over the backbone's stride — and the trainers
and inference read them back.

The maps depend only on the images and the encoder's (fixed, pretrained) weights, so they have
no artifact dependencies; a new encoder or side is a new artifact beside the others. Training
from the cache draws no horizontal flips (a flipped image's features are not the flipped
features); the multi-scale sides remain the augmentation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .. import distributed
from ..data.transforms import fit_to_canvas
from ..errors import SpnError
from ..events import Event
from ..project.kinds import feature_maps
from ..project.store import Project

__all__ = ["cached_sides", "compute_features", "feature_cache", "read_features", "backbone_map", "views",
           "view_maps", "image_view_maps"]

DTYPE = np.float16  # half the bytes; the maps are ReLU6 outputs of BN-ed convs, well inside fp16's range


def views(sides: Iterable[int], flip: bool) -> list[tuple[int, bool]]:
    """The test-time (side, mirrored) passes a prediction is averaged over: each side, and with
    ``flip`` also its mirrored square canvas."""
    return [(int(s), f) for s in sides for f in ((False, True) if flip else (False,))]


def cached_sides(project: Project, encoder: str, sides: Iterable[int]) -> dict[int, str]:
    """{side: artifact kind} for those of ``sides`` whose maps the project holds."""
    return {int(s): feature_maps(encoder, s) for s in sides if project.artifact(feature_maps(encoder, s))}


def read_features(project: Project, kind: str, i: int) -> torch.Tensor:
    """Image i's cached backbone map (Cb, g, g) as float32."""
    return torch.from_numpy(project.read(kind, i).astype(np.float32))


@torch.no_grad()
def backbone_map(encoder: torch.nn.Module, image: np.ndarray, side: int, device: torch.device, *,
                 flip: bool = False) -> np.ndarray:
    """The (Cb, g, g) float16 map the cache holds for ``image`` (H, W, 3) uint8 at ``side``
    (``flip``: of the mirrored square canvas, a test-time view; not cached).

    Predicting a new image through it (``read_features``' float32 of it) gives the numbers a
    trainer or round got from the cache for a project image, bit for bit."""
    x, _, _ = fit_to_canvas(image, None, side)  # (3, side, side)
    x = x.flip(-1) if flip else x
    f = encoder.backbone(x[None].to(device))[0]  # (Cb, g, g)
    return f.float().cpu().numpy().astype(DTYPE)


@torch.no_grad()
def compute_features(project: Project, encoder: torch.nn.Module, name: str, sides: Iterable[int],
                     device: torch.device) -> Iterator[Event]:
    """Compute and commit the backbone maps of every image at each of ``sides`` not cached yet.

    Yields an 'image' event per image, then 'done' with the seconds spent. Stopping early
    discards the partial maps (nothing is committed until every image is written). Under
    torchrun every rank computes its share and rank 0 commits once all are written.
    """
    missing = sorted(int(s) for s in sides if not project.artifact(feature_maps(name, s)))
    n, t0 = len(project), time.perf_counter()
    if not missing:
        yield Event("done", n, n, {"seconds": 0.0, "sides": []})
        return
    encoder = encoder.to(device).eval()
    mine = distributed.shard(n)  # under torchrun each rank computes its share of the images
    with distributed.sharded_writers(project, [feature_maps(name, s) for s in missing]) as writers:
        for done, i in enumerate(mine, 1):
            image = project.image(i)
            for s in missing:
                writers[feature_maps(name, s)].put(i, backbone_map(encoder, image, s, device))
            yield Event("image", done, len(mine), {"sides": missing})
    yield Event("done", n, n, {"seconds": time.perf_counter() - t0, "sides": missing})


def feature_cache(project: Project, encoder: torch.nn.Module, name: str, sides, device: torch.device,
                  enabled: bool = True) -> Iterator[Event]:
    """Make sure a frozen encoder's maps are cached for ``sides`` (computing the missing ones,
    each rank its share under torchrun; 'features' events) and return {side: artifact}; None when
    the encoder is not cacheable or ``enabled`` is off."""
    if not (enabled and getattr(encoder, "cacheable", False)):
        return None
    for ev in compute_features(project, encoder, name, sides, device):
        if ev.event == "image":  # progress only: nothing to show when every side is cached
            yield Event("features", ev.step, ev.total, ev.data)
    project.reload()
    cache = cached_sides(project, name, sides)
    if len(cache) != len(set(sides)):
        raise SpnError(f"{project.root}: the feature cache for {name} is incomplete — run the command again.")
    return cache


def image_view_maps(encoder: torch.nn.Module, image: np.ndarray, passes: Iterable[tuple[int, bool]],
                    device: torch.device) -> dict[tuple[int, bool], torch.Tensor]:
    """{(side, mirrored): (Cb, g, g) float32} backbone maps of ``image`` (H, W, 3) for each test-time
    pass, through the cache's float16 (:func:`backbone_map`), as a cached project image's are."""
    return {(int(s), bool(m)): torch.from_numpy(backbone_map(encoder, image, s, device, flip=m).astype(np.float32))
            for s, m in passes}


def view_maps(project: Project, encoder: torch.nn.Module, i: int, passes: Iterable[tuple[int, bool]],
              cache: dict[int, str] | None, device: torch.device) -> dict[tuple[int, bool], torch.Tensor]:
    """{(side, mirrored): (Cb, g, g) float32} backbone maps of project image i for each test-time
    pass (:func:`views`): the cache's for the sides it holds, the others computed through the
    cache's float16 (:func:`image_view_maps`) and not stored — test-time sides and mirrored views
    would add more than a training set's worth of maps."""
    passes = [(int(s), bool(m)) for s, m in passes]
    cached = {p for p in passes if not p[1] and cache and p[0] in cache}
    out = {p: read_features(project, cache[p[0]], i) for p in cached}
    rest = [p for p in passes if p not in cached]
    if rest:
        out.update(image_view_maps(encoder, project.image(i), rest, device))
    return out
