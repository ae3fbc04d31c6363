"""Reader for a PASCAL VOC 2012 folder (the ``VOC2012/`` directory inside ``VOCdevkit/``).

Uses ``JPEGImages/``, ``ImageSets/Segmentation/<split>.txt`` (which images), ``Annotations/*.xml``
(image tags from the ``<object><name>`` entries) and ``SegmentationClass/*.png`` (palette masks:
0 background, i = class i, 255 ignore). Tags fall back to a mask's values when the XML is missing;
that is the only pixel decoding done here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from spn_napari.data.dataset import Dataset, Item
from spn_napari.data.images import is_image_file, load_mask
from spn_napari.errors import DatasetError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
_INDEX = {c: i for i, c in enumerate(VOC_CLASSES)}


def _jpeg_index(folder: Path) -> dict[str, Path]:
    """Map stem → path for the image files of ``JPEGImages/`` (hidden files skipped)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder — pass the VOC2012 folder that holds JPEGImages/.")
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.is_file() and is_image_file(p)
    }


def _read_list(path: Path, jpegs: dict[str, Path], names: dict[str, None]) -> None:
    """Add the names of an ImageSets list to ``names`` (ordered set); each needs its JPEG."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read this list ({exc}) — restore it from the VOC archive.") from exc
    for lineno, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        name = fields[0]  # Main/ lists carry a second column (1/-1/0); Segmentation/ lists do not
        if name not in jpegs:
            raise DatasetError(
                f"{path}:{lineno}: no image '{name}' in JPEGImages/ — add JPEGImages/{name}.jpg"
                f" or delete the line."
            )
        names[name] = None


def _select(root: Path, split: str | None, jpegs: dict[str, Path]) -> list[str]:
    """The item names: the split's list, else trainval, else train ∪ val, else every JPEG."""
    sets = root / "ImageSets" / "Segmentation"
    names: dict[str, None] = {}
    if split is not None:
        path = sets / f"{split}.txt"
        if not path.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise DatasetError(
                f"{path}: no such split list — pick one of {', '.join(have) or '(none: omit the split)'}"
                f" or create the file."
            )
        _read_list(path, jpegs, names)
    elif (sets / "trainval.txt").is_file():
        _read_list(sets / "trainval.txt", jpegs, names)
    elif (sets / "train.txt").is_file() or (sets / "val.txt").is_file():
        for part in ("train", "val"):
            if (sets / f"{part}.txt").is_file():
                _read_list(sets / f"{part}.txt", jpegs, names)
    else:
        names = dict.fromkeys(jpegs)
    if not names:
        where = sets if split is not None or sets.is_dir() else root / "JPEGImages"
        raise DatasetError(f"{where}: no images listed — add images (and list their names, one a line).")
    return sorted(names)


def _xml_tags(path: Path) -> tuple[int, ...]:
    """Sorted unique class indices of the ``<object><name>`` entries of a VOC annotation."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{path}: cannot parse this annotation ({exc}) — restore it from the VOC archive.") from exc
    tags = set()
    for obj in tree.getroot().iter("object"):
        node = obj.find("name")
        name = (node.text or "").strip() if node is not None else ""
        if name not in _INDEX:
            raise DatasetError(
                f"{path}: object class '{name}' is not a VOC class — use one of"
                f" {', '.join(VOC_CLASSES)}."
            )
        tags.add(_INDEX[name])
    return tuple(sorted(tags))


def _mask_tags(path: Path) -> tuple[int, ...]:
    """Tags from a mask's values: each value v in 1..20 gives class v-1 (0 and 255 skipped)."""
    values = np.unique(load_mask(path))
    values = values[(values != 0) & (values != 255)]
    bad = values[values > len(VOC_CLASSES)]
    if bad.size:
        raise DatasetError(
            f"{path}: mask value {int(bad[0])} is not a VOC class (1-20), background (0) or ignore"
            f" (255) — restore the mask from the VOC archive."
        )
    return tuple(int(v) - 1 for v in values)


def read_voc(root: Path, split: str | None = None) -> Dataset:
    """Describe a VOC 2012 folder; items are sorted by name.

    ``split`` names ``ImageSets/Segmentation/<split>.txt``; by default trainval.txt, else
    train.txt ∪ val.txt, else every image of JPEGImages/. Tags come from Annotations/NAME.xml,
    else from SegmentationClass/NAME.png's values; neither raises DatasetError. ``mask_path`` is
    SegmentationClass/NAME.png when it exists (palette indices, 255 = ignore).
    """
    root = Path(root)
    jpegs = _jpeg_index(root / "JPEGImages")
    items = []
    for name in _select(root, split, jpegs):
        xml = root / "Annotations" / f"{name}.xml"
        mask = root / "SegmentationClass" / f"{name}.png"
        has_mask = mask.is_file()
        if xml.is_file():
            tags = _xml_tags(xml)
        elif has_mask:
            tags = _mask_tags(mask)
        else:
            raise DatasetError(
                f"{xml}: missing, and no SegmentationClass/{name}.png to take the tags from"
                f" — add the annotation or drop '{name}' from the image list."
            )
        mask_path = mask if has_mask else None
        items.append(Item(name=name, image_path=jpegs[name], tags=tags, mask_path=mask_path))
    return Dataset(root=root, layout="voc", classes=VOC_CLASSES, items=tuple(items))
