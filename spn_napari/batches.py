"""Training batches from a project: one image read from the store at a time.

Built here, above the plain readers of :mod:`spn_napari.data`, from what training needs: the
store, the feature cache and DecoupledNet's figure-ground targets (IRN's step scripts likewise
assemble each step's batches, its data loader only reads).

Host memory holds the current batches only, whatever the number of images. Batches are
multi-scale: every batch draws one canvas side from the scale set (all its images share it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from .data.transforms import fit_mask_to_canvas, fit_to_canvas, superpixel_canvas
from .evidence.features import read_features
from .models.decoupled import IGNORE
from .project.kinds import SUPERPIXELS
from .project.store import Project

__all__ = ["SuperpixelImages", "FigureGroundSamples", "MultiScaleBatches", "collate"]


class _StoreDataset(Dataset):
    """A data set that opens its project on first use, so each loader worker process opens its own
    (the data set itself holds only ``root``, which subclasses set)."""

    root: Path
    _project: Project | None = None

    def _p(self) -> Project:
        if self._project is None:
            self._project = Project(self.root)
        return self._project


class SuperpixelImages(_StoreDataset):
    """Item (i, side, flip) -> {x (3,S,S), sp (S,S), n, target (C,), index}; reads the store lazily.

    With ``features`` ({side: artifact}, from :func:`spn_napari.evidence.features.cached_sides`) the item
    holds the frozen backbone's cached map ``f`` (Cb, g, g) instead of ``x``, and is never flipped.
    """

    def __init__(self, project: Project, *, flip: bool = True, features: dict[int, str] | None = None) -> None:
        self.root, self.features = project.root, features
        self.flip = flip and not features
        self.targets = torch.from_numpy(project.tag_matrix())

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: tuple[int, int, bool]) -> dict:
        i, side, flip = key
        p = self._p()
        if self.features:
            sp, n = superpixel_canvas(p.read(SUPERPIXELS, i), side)
            return {"f": read_features(p, self.features[side], i), "sp": sp, "n": n,
                    "target": self.targets[i], "index": i}
        x, sp, n = fit_to_canvas(p.image(i), p.read(SUPERPIXELS, i), side, flip=flip and self.flip)
        return {"x": x, "sp": sp, "n": n, "target": self.targets[i], "index": i}


class FigureGroundSamples(_StoreDataset):
    """DecoupledNet's samples: (image, one of its classes) -> that class's figure-ground target.

    Item (j, side, flip) -> {x (3,S,S) or, with ``features``, the cached f (Cb,g,g), target (S,S)
    int64 1 figure / 0 ground / 255 ignore, mask (C,) one-hot class, index}. ``samples[j] = (i, c)``;
    image i's label map comes from ``target_of(project, i)`` (the round's targets: pseudo-labels
    with corrections applied). A ``target_of`` may instead return ``(labels, person)``, person
    (H, W) bool where a person set the pixel (None: nowhere); items then also hold weight (S,S)
    float32: ``weight`` on those pixels, 1 elsewhere (the loss's weights). One reader gives both, so
    each sample reads its correction once.
    """

    def __init__(self, project: Project, samples: Sequence[tuple[int, int]], target_of, *,
                 flip: bool = True, features: dict[int, str] | None = None, weight: float = 1.0) -> None:
        self.root, self.samples, self.target_of = project.root, list(samples), target_of
        self.features, self.flip = features, flip and not features
        self.weight = float(weight)
        self.n_classes = len(project.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int, bool]) -> dict:
        j, side, flip = key
        i, c = self.samples[j]
        p = self._p()
        flip = flip and self.flip
        if self.features:
            inputs = {"f": read_features(p, self.features[side], i)}  # (Cb, g, g)
        else:
            inputs = {"x": fit_to_canvas(p.image(i), None, side, flip=flip)[0]}  # (3, S, S)
        got = self.target_of(p, i)
        weighted = isinstance(got, tuple)
        labels, person = got if weighted else (got, None)
        canvas = fit_mask_to_canvas(labels, side, flip=flip)  # (S, S), 255 padding
        target = torch.where(canvas == IGNORE, IGNORE, (canvas == c + 1).long())
        item = {**inputs, "target": target, "mask": F.one_hot(torch.tensor(c), self.n_classes).float(), "index": i}
        if weighted:
            person = np.zeros(labels.shape, np.uint8) if person is None else person.astype(np.uint8)
            person = fit_mask_to_canvas(person, side, flip=flip, fill=0)  # (S, S): 1 set by a person
            item["weight"] = torch.where(person == 1, self.weight, 1.0).float()
        return item


def collate(items: list[dict]) -> dict:
    """Stack tensors, tensor-ify ints: x (B,3,S,S), sp (B,S,S), n (B,), target (B,C) or (B,S,S)..."""
    return {k: torch.stack([it[k] for it in items]) if isinstance(items[0][k], torch.Tensor)
            else torch.tensor([it[k] for it in items]) for k in items[0]}


class MultiScaleBatches(Sampler[list[tuple[int, int, bool]]]):
    """Shuffled batches of (index, side, flip), one side per batch; sharded over ``world`` ranks.

    Every rank draws the same permutation and sides from ``(seed, epoch)`` and keeps its own
    slice of each global batch, so ranks stay in step (the DistributedSampler contract).
    """

    def __init__(self, n: int, *, batch_size: int, scales: Sequence[int], seed: int = 0,
                 rank: int = 0, world: int = 1, drop_last: bool = False, epoch_size: int | None = None) -> None:
        self.n, self.batch_size, self.scales = n, batch_size, tuple(scales)
        self.epoch_size = min(n, epoch_size or n)  # a fresh random subset of this size every epoch
        self.seed, self.rank, self.world, self.drop_last = seed, rank, world, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)[:self.epoch_size]
        gb = self.batch_size * self.world
        cut = (self.epoch_size // gb) * gb if self.drop_last else self.epoch_size
        if cut % gb and cut % gb < 2 * self.world and cut > gb:
            cut -= cut % gb  # a last batch of one sample a rank: batch norm cannot train on it
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
