"""SPN inference: class evidence per image (SP-CAM and CAM) and round-0 pseudo-labels.

For every image the trained SPN runs once per inference side; from the same forward pass we keep
SP-CAM scores (N, C) — the top classifier on each superpixel's pooled feature — and the CAM
baseline (C, h, w) — the bottom classifier at every location of z. Both are stored in the
project (compact: the maps are painted or upsampled on read), and the chosen method's
thresholded masks become the pseudo-labels.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from .cam import METHODS, paint_superpixels, threshold_maps, upsample_cam
from .errors import SpnError
from .events import Event
from .models.spn import SPN
from .ops import superpixel_pool
from .store import Project
from .data.transforms import fit_to_canvas
from .features import read_features
from .train import feature_cache, load_spn, resolve_device

__all__ = ["PseudoLabelConfig", "Evidence", "image_evidence", "make_pseudo_labels", "evidence_maps",
           "check_method", "label_canvas"]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise SpnError(f"--method {method}: unknown method — use one of {', '.join(METHODS)}.")
    return method


@dataclass(frozen=True)
class PseudoLabelConfig:
    method: str = "sp-cam"  # "sp-cam" | "cam"
    device: str = "auto"
    threshold: float = 0.5  # fraction of each class map's maximum
    classes: str = "tags"  # which classes to map: the image's "tags" or the SPN's "predicted" ones
    multi_scale: bool = False  # max over all training sides instead of the middle one


@dataclass
class Evidence:
    sp_scores: np.ndarray  # (N, C) SP-CAM score of each superpixel
    cam: np.ndarray  # (C, h, w) CAM over the square canvas of side max(H, W)
    probs: np.ndarray  # (C,) image-level class probabilities (top branch)


def label_canvas(sp: np.ndarray, device: torch.device) -> tuple[torch.Tensor, int]:
    """sp (H, W) labels 0..N-1 -> (1, L, L) int64 on ``device``, L = max(H, W), -1 as padding; N.

    The square canvas the network's features cover at full resolution (image at the top-left).
    """
    h, w = sp.shape
    canvas = torch.full((1, max(h, w), max(h, w)), -1, dtype=torch.long)
    canvas[0, :h, :w] = torch.from_numpy(sp.astype(np.int64))
    return canvas.to(device), int(sp.max()) + 1


@torch.no_grad()
def image_evidence(model: SPN, image: np.ndarray | None, sp: np.ndarray, sides: Iterable[int],
                   device: torch.device, backbone: dict[int, torch.Tensor] | None = None) -> Evidence:
    """Run ``model`` on one image at each side; max-pool the evidence across sides.

    image (H, W, 3) uint8, sp (H, W) int labels 0..N-1; ``backbone`` {side: (Cb, g, g)} the
    frozen encoder's cached maps, used instead of the image for the sides it holds.
    """
    sp_canvas, n = label_canvas(sp, device)  # (1, L, L), L = max(H, W)
    side_full = sp_canvas.shape[-1]
    scores, cams, probs = [], [], []
    for side in sides:
        if backbone and side in backbone:
            z, feat = model.features(backbone=backbone[side][None].to(device))
        else:
            x, _, _ = fit_to_canvas(image, None, side)
            z, feat = model.features(x[None].to(device))  # (1, Cz, s/32, s/32), (1, K, 2s/32, 2s/32)
        if feat.shape[-1] > side_full:  # an image smaller than the canvas: pool at canvas size
            feat = F.interpolate(feat, size=(side_full, side_full), mode="bilinear", align_corners=False)
        pooled = superpixel_pool(feat.float(), sp_canvas, [n])  # (N, K), features upsampled to the image
        scores.append(model.superpixel_scores(pooled))
        probs.append(torch.sigmoid(model.top(pooled.mean(0, keepdim=True)))[0])
        cams.append(model.cam(z.float())[0])  # (C, s/32, s/32)
    grid = max(c.shape[-1] for c in cams)
    cam = torch.stack([F.interpolate(c[None], size=(grid, grid), mode="bilinear", align_corners=False)[0]
                       for c in cams]).amax(0)
    return Evidence(sp_scores=torch.stack(scores).amax(0).cpu().numpy(), cam=cam.cpu().numpy(),
                    probs=torch.stack(probs).amax(0).cpu().numpy())


def evidence_maps(project: Project, i: int, method: str) -> np.ndarray:
    """(C, H, W) class evidence of image i, painted (SP-CAM) or upsampled (CAM) from the store."""
    check_method(method)
    info = project.images[i]
    if method == "sp-cam":
        return paint_superpixels(project.read("cams/sp-cam", i), project.read("superpixels", i))
    return upsample_cam(project.read("cams/cam", i), info.height, info.width)


def make_pseudo_labels(project: Project, cfg: PseudoLabelConfig = PseudoLabelConfig()) -> Iterator[Event]:
    """Compute and commit SP-CAM and CAM evidence and the chosen method's pseudo-labels.

    Artifacts: 'cams/sp-cam', 'cams/cam' and 'pseudo/<method>'; streams one image at a time.
    Under torchrun each rank computes and writes its share of the images ('image' events count
    that share) and rank 0 commits once all are written.
    """
    check_method(cfg.method)
    if cfg.classes not in ("tags", "predicted"):
        raise SpnError(f"--classes {cfg.classes}: use 'tags' or 'predicted'.")
    project.require("spn")
    device = resolve_device(cfg.device)
    model, ckpt = load_spn(project, device)
    scales = sorted(ckpt["scales"])
    sides = scales if cfg.multi_scale else [scales[len(scales) // 2]]
    cache = yield from feature_cache(project, model.encoder, ckpt["config"]["encoder"], sides, device)
    n, t0 = len(project), time.perf_counter()
    deps = ("superpixels", "spn")
    meta = {**asdict(cfg), "sides": sides}
    mine = distributed.shard(n)  # under torchrun each rank does its share; else every image
    kinds = ("cams/sp-cam", "cams/cam", f"pseudo/{cfg.method}")
    with distributed.sharded_writers(project, kinds, depends=deps, meta=meta) as writers:
        w_sp, w_cam, w_lab = (writers[k] for k in kinds)
        for done, i in enumerate(mine, 1):
            info = project.images[i]
            sp = project.read("superpixels", i)
            if cache:
                ev = image_evidence(model, None, sp, sides, device,
                                    {s: read_features(project, k, i) for s, k in cache.items()})
            else:
                ev = image_evidence(model, project.image(i), sp, sides, device)
            w_sp.put(i, ev.sp_scores.astype(np.float32))
            w_cam.put(i, ev.cam.astype(np.float32))
            classes = info.tags if cfg.classes == "tags" else np.flatnonzero(ev.probs > 0.5)
            maps = (paint_superpixels(ev.sp_scores, sp) if cfg.method == "sp-cam"
                    else upsample_cam(ev.cam, info.height, info.width))
            w_lab.put(i, threshold_maps(maps, classes, cfg.threshold, background=project.has_background))
            yield Event("image", done, len(mine))
    yield Event("done", n, n, {"seconds": time.perf_counter() - t0, "method": cfg.method})
