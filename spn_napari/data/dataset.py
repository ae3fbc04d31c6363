"""The in-memory description of a data set folder, shared by every reader.

A reader validates the whole folder up front (so ``init`` fails before it writes anything) and
returns a :class:`Dataset` that names files; pixels are decoded later, one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One image of a data set: its name (file stem), files and image-level tags."""

    name: str
    image_path: Path
    tags: tuple[int, ...]  # 0-based class indices into Dataset.classes, sorted, unique
    mask_path: Path | None = None  # ground truth: 0 background, i = class i (1-based), 255 ignore


@dataclass(frozen=True)
class Dataset:
    """A validated data set: class names (background not listed) and its items in a stable order."""

    root: Path
    layout: str  # "generic" | "voc"
    classes: tuple[str, ...]
    items: tuple[Item, ...]
