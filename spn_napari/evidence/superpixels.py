"""SLIC superpixels for every image of a project, computed in parallel and cached in the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context

import numpy as np
from skimage.segmentation import slic

from ..events import Event
from ..project.kinds import SUPERPIXELS
from ..project.store import Project

__all__ = ["SuperpixelConfig", "compute_superpixels", "slic_labels", "superpixel_counts"]


@dataclass(frozen=True)
class SuperpixelConfig:
    """SLIC parameters (scikit-image names); stored in the project with the result."""

    n_segments: int = 300
    compactness: float = 10.0
    sigma: float = 0.5


def slic_labels(image: np.ndarray, cfg: SuperpixelConfig) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int32 labels 0..N-1, every label used."""
    labels = slic(image, n_segments=cfg.n_segments, compactness=cfg.compactness, sigma=cfg.sigma,
                  start_label=0, channel_axis=-1)
    _, compact = np.unique(labels, return_inverse=True)
    return compact.reshape(labels.shape).astype(np.int32)


_OPEN: dict[str, Project] = {}  # in each worker process: the project, opened once (not per image)


def _one(args: tuple[str, int, SuperpixelConfig]) -> tuple[int, np.ndarray]:
    root, i, cfg = args
    project = _OPEN.get(root)
    if project is None:
        project = _OPEN[root] = Project(root)
    return i, slic_labels(project.image(i), cfg)


def compute_superpixels(project: Project, cfg: SuperpixelConfig = SuperpixelConfig(), *,
                        workers: int | None = None) -> Iterator[Event]:
    """Compute and commit superpixels for all images; yields one 'image' event per image.

    Committing a new version drops everything computed from the old one (SPN, CAMs, labels).
    Stopping the iteration early discards the partial result.
    """
    n = len(project)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    counts = np.zeros(n, np.int32)
    writer = project.writer(SUPERPIXELS, meta={**asdict(cfg)})
    jobs = [(str(project.root), i, cfg) for i in range(n)]
    pool = None
    try:
        if workers == 1:
            results = map(_one, jobs)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results = pool.map(_one, jobs, chunksize=max(1, min(16, n // (4 * workers))))
        for step, (i, labels) in enumerate(results, 1):
            writer.put(i, labels)
            counts[i] = labels.max() + 1
            yield Event("image", step, n, {"n_superpixels": int(counts[i])})
        writer.meta["n_superpixels"] = counts.tolist()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    project.set_settings(superpixels=asdict(cfg))
    yield Event("done", n, n, {"mean_superpixels": float(counts.mean())})


def superpixel_counts(project: Project) -> list[int]:
    """Superpixels per image of the current version."""
    return list(project.require(SUPERPIXELS)["meta"]["n_superpixels"])
