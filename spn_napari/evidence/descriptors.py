"""Per-superpixel descriptors: one short vector a superpixel, what the live head (:mod:`spn_napari.
propagate`) tells classes apart with across the whole project.

A superpixel's descriptor is a feature map averaged over its pixels (the superpixel pooling layer,
bilinear upsampling included), averaged over the views (each side and, with ``flip``, its mirror
image), then projected on the set's first ``dims`` principal components. Two maps can give it:

- ``frozen``: the frozen encoder's backbone map (320 channels for Lite0, ImageNet features that
  know nothing of the tags; the training sides come from the feature cache);
- ``spn``: the SPN's own decoder features, the vectors its top classifier scores into SP-CAM
  (trained on the tags).

The principal components are fitted on up to :data:`PCA_IMAGES` photos' superpixels, so a project
of any size costs one pass and a bit. Artifact ``descriptors`` (:data:`spn_napari.project.kinds.DESCRIPTORS`)
is one ``.npz`` file: ``offsets`` (n + 1,) int64, image i's superpixels being rows
``offsets[i]:offsets[i+1]``; ``area`` (M,) int32 pixels per superpixel; ``desc`` (M, D) float16
(D = 64: 128 bytes a superpixel, about 31 KB for a photo of 238 superpixels).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ProjectError, SpnError
from ..events import Event
from ..ops import label_canvas, superpixel_pool
from ..project import kinds
from ..project.store import Project
from ..runtime import load_spn, resolve_device
from .features import cached_sides, view_maps, views

__all__ = ["SOURCES", "DescriptorConfig", "Descriptors", "compute_descriptors", "read_descriptors", "pooled_views"]

SOURCES = ("frozen", "spn")
PCA_IMAGES = 400  # photos whose superpixels fit the principal components


@dataclass(frozen=True)
class DescriptorConfig:
    """How the descriptors are made; recorded in the artifact's meta."""

    source: str = "frozen"  # SOURCES
    dims: int = 64
    sides: tuple[int, ...] | None = None  # None: the SPN's middle training side
    flip: bool = True  # average each side with its mirror image
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class Descriptors:
    """The project's descriptors in memory (see the module's docstring for the layout)."""

    offsets: np.ndarray  # (n + 1,) int64
    area: np.ndarray  # (M,) int32
    desc: np.ndarray  # (M, D) float16
    meta: dict

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def image_of(self) -> np.ndarray:
        """(M,) int64: the image each row belongs to."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


@torch.no_grad()
def pooled_views(model, maps: dict, sp: np.ndarray, source: str, device: torch.device) -> torch.Tensor:
    """(N, K) float32: ``source``'s map of each view (``maps`` {(side, mirrored): (Cb, g, g)} backbone
    maps) averaged over each superpixel of ``sp`` (H, W), then over the views."""
    canvas, n = label_canvas(sp, device)  # (1, L, L)
    out = None
    for (_side, mirrored), f in maps.items():
        f = f[None].to(device)  # (1, Cb, g, g)
        if source == "spn":
            _, f = model.features(backbone=f)  # (1, K, 2g', 2g')
        f = f.flip(-1) if mirrored else f
        if f.shape[-1] > canvas.shape[-1]:  # a photo smaller than the view: pool at its size
            f = F.interpolate(f, size=canvas.shape[-2:], mode="bilinear", align_corners=False)
        pooled = superpixel_pool(f.float(), canvas, [n])  # (N, K)
        out = pooled if out is None else out + pooled
    return out / len(maps)


def _pca(sample: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean (K,), components (K, D) and one global scale of ``sample`` (S, K) float32: the
    projections' mean variance is 1, the components' relative variance kept."""
    x = torch.from_numpy(sample.astype(np.float64))
    mean = x.mean(0)
    xc = x - mean
    dims = min(dims, xc.shape[0], xc.shape[1])
    cov = xc.T @ xc / max(1, xc.shape[0] - 1)  # (K, K) float64: deterministic, unlike a randomised SVD
    vals, vecs = torch.linalg.eigh(cov)
    order = torch.argsort(vals, descending=True)[:dims]
    comps = vecs[:, order]  # (K, D)
    signs = torch.sign(comps[comps.abs().argmax(0), torch.arange(dims)])  # a fixed sign per component
    comps = comps * torch.where(signs == 0, 1.0, signs)
    scale = float(vals[order].clamp(min=0).mean().sqrt().clamp(min=1e-12))
    return mean.numpy(), comps.numpy(), scale


def _sides(cfg: DescriptorConfig, ckpt: dict) -> tuple[int, ...]:
    """The canvas sides the descriptors are made at: the config's, else the SPN's middle training side."""
    if cfg.sides:
        return tuple(int(s) for s in cfg.sides)
    scales = sorted(ckpt["scales"])
    return (scales[len(scales) // 2],)


def compute_descriptors(project: Project, cfg: DescriptorConfig = DescriptorConfig(), *,
                        spn: tuple | None = None) -> Iterator[Event]:
    """Compute and commit every superpixel's descriptor (artifact ``descriptors``); ``spn``: the
    project's SPN and its checkpoint dict, when the caller has loaded them (``load_spn``).

    Yields 'descriptors' events per image (the fitting sample first, then the rest), then 'done'
    with the seconds spent. Nothing is committed until every image is done, so stopping early
    leaves the project as it was."""
    if cfg.source not in SOURCES:
        raise SpnError(f"--descriptors {cfg.source}: use {' or '.join(SOURCES)}.")
    if cfg.dims < 2:
        raise SpnError(f"--dims {cfg.dims}: use at least 2, e.g. 128.")
    project.require(kinds.SUPERPIXELS)
    project.require(kinds.SPN)
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    model, ckpt = spn or load_spn(project, device)
    sides = _sides(cfg, ckpt)
    cacheable = getattr(model.encoder, "cacheable", False)  # other encoders: every map computed here
    cache = cached_sides(project, ckpt["config"]["encoder"], sides) if cacheable else None
    passes = views(sides, cfg.flip)
    n = len(project)
    rng = np.random.default_rng(cfg.seed)
    fit = set(rng.permutation(n)[:PCA_IMAGES].tolist())
    order = sorted(fit) + [i for i in range(n) if i not in fit]
    raw: dict[int, np.ndarray] = {}
    areas: list[np.ndarray] = [np.zeros(0, np.int32)] * n
    out: list[np.ndarray] = [np.zeros((0, cfg.dims), np.float16)] * n
    mean = comps = None
    scale = 1.0
    for done, i in enumerate(order, 1):
        sp = project.read(kinds.SUPERPIXELS, i)  # (H, W)
        areas[i] = np.bincount(sp.ravel(), minlength=int(sp.max()) + 1).astype(np.int32)
        maps = view_maps(project, model.encoder, i, passes, cache, device)
        d = pooled_views(model, maps, sp, cfg.source, device).cpu().numpy()  # (N, K)
        if i in fit:
            raw[i] = d.astype(np.float16)
        else:
            out[i] = (((d - mean) @ comps) / scale).astype(np.float16)
        if done == len(fit):
            mean, comps, scale = _pca(np.concatenate([raw[j] for j in sorted(fit)]), cfg.dims)
            for j in sorted(fit):
                out[j] = (((raw.pop(j).astype(np.float32) - mean) @ comps) / scale).astype(np.float16)
        yield Event("descriptors", done, n)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in areas])]).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, offsets=offsets, area=np.concatenate(areas), desc=np.concatenate(out))
    meta = {**asdict(cfg), "sides": list(sides), "dims": int(out[0].shape[1] if n else cfg.dims)}
    project.commit_file(kinds.DESCRIPTORS, buf.getvalue(), suffix=".npz", depends=(kinds.SUPERPIXELS, kinds.SPN),
                        meta=meta)
    yield Event("done", n, n, {"seconds": time.perf_counter() - t0, "superpixels": int(offsets[-1]), **meta})


def read_descriptors(project: Project) -> Descriptors:
    """The project's descriptors; a ProjectError naming the fix when they are missing or damaged."""
    entry = project.require(kinds.DESCRIPTORS)
    path = project.file(kinds.DESCRIPTORS)
    try:
        with np.load(path) as z:
            d = Descriptors(z["offsets"].astype(np.int64), z["area"].astype(np.int32), z["desc"], entry.get("meta", {}))
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{path}: the descriptor store is damaged ({exc}) — run `spn-napari propagate "
                           f"{project.root} --recompute` to make it again.") from None
    ok = (len(d.offsets) == len(project) + 1 and d.offsets[0] == 0 and np.all(np.diff(d.offsets) >= 0)
          and d.offsets[-1] == len(d.area) == len(d.desc) and d.desc.ndim == 2)
    if not ok:
        raise ProjectError(f"{path}: the descriptor store does not fit this project's {len(project)} images — run "
                           f"`spn-napari propagate {project.root} --recompute` to make it again.")
    return d
