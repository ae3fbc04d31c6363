"""Streaming training batches from a project: one image read from the store at a time.

Host memory holds the current batches only, whatever the number of images. Batches are
multi-scale: every batch draws one canvas side from the scale set (all its images share it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..store import Project
from .transforms import fit_to_canvas

__all__ = ["SuperpixelImages", "MultiScaleBatches", "collate"]


class SuperpixelImages(Dataset):
    """Item (i, side) -> {x (3,S,S), sp (S,S), n, target (C,), index}; reads the store lazily."""

    def __init__(self, project: Project, *, flip: bool = True) -> None:
        self.root, self.flip = project.root, flip
        self.targets = torch.from_numpy(project.tag_matrix())
        self._project: Project | None = None

    def _p(self) -> Project:  # opened per worker process
        if self._project is None:
            self._project = Project(self.root)
        return self._project

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: tuple[int, int, bool]) -> dict:
        i, side, flip = key
        p = self._p()
        x, sp, n = fit_to_canvas(p.image(i), p.read("superpixels", i), side, flip=flip and self.flip)
        return {"x": x, "sp": sp, "n": n, "target": self.targets[i], "index": i}


def collate(items: list[dict]) -> dict:
    return {"x": torch.stack([it["x"] for it in items]),  # (B, 3, S, S)
            "sp": torch.stack([it["sp"] for it in items]),  # (B, S, S)
            "n": torch.tensor([it["n"] for it in items]),  # (B,)
            "target": torch.stack([it["target"] for it in items]),  # (B, C)
            "index": torch.tensor([it["index"] for it in items])}


class MultiScaleBatches(Sampler[list[tuple[int, int, bool]]]):
    """Shuffled batches of (index, side, flip), one side per batch; sharded over ``world`` ranks.

    Every rank draws the same permutation and sides from ``(seed, epoch)`` and keeps its own
    slice of each global batch, so ranks stay in step (the DistributedSampler contract).
    """

    def __init__(self, n: int, *, batch_size: int, scales: Sequence[int], seed: int = 0,
                 rank: int = 0, world: int = 1, drop_last: bool = False) -> None:
        self.n, self.batch_size, self.scales = n, batch_size, tuple(scales)
        self.seed, self.rank, self.world, self.drop_last = seed, rank, world, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        gb = self.batch_size * self.world
        cut = (self.n // gb) * gb if self.drop_last else self.n
        return [order[s:s + gb] for s in range(0, cut, gb)]

    def __len__(self) -> int:
        return len(self._global_batches())

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        for batch in self._global_batches():
            side = int(rng.choice(self.scales))
            flips = rng.random(len(batch)) < 0.5
            mine = list(zip(batch.tolist(), flips.tolist()))[self.rank::self.world]
            yield [(i, side, f) for i, f in mine]
