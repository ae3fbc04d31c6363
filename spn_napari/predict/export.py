"""Exporting a project's labels: PNG masks, a VOC-style folder, or a zarr group."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from ..errors import SpnError
from ..labels import labels_reader
from ..project.store import Project

__all__ = ["FORMATS", "export_labels", "label_palette", "write_mask"]

FORMATS = ("png", "voc", "zarr")


def label_palette(colors: tuple[str, ...]) -> list[int]:
    """A 768-entry PNG palette: 0 black (background, or no label), class c+1 its project colour,
    255 white (ignore)."""
    pal = [0, 0, 0] * 256
    for c, hexcol in enumerate(colors[:254]):
        pal[3 * (c + 1): 3 * (c + 2)] = [int(hexcol[k:k + 2], 16) for k in (1, 3, 5)]
    pal[765:768] = [255, 255, 255]
    return pal


def write_mask(path: Path | str, labels: np.ndarray, palette: list[int]) -> None:
    """(H, W) uint8 class values -> a palette PNG at ``path`` (its pixel values stay the classes).
    Written beside it and renamed, so a cancelled or failed write leaves no half file."""
    path = Path(path)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(palette)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        im.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_labels(project: Project, out: Path | str, *, kind: str | None = None, fmt: str = "png") -> Path:
    """Write artifact ``kind`` (e.g. 'pseudo/sp-cam', 'round/2/labels') for every image to ``out``;
    ``kind=None``: the current labels, corrections included (what the user sees).

    png: ``out/NAME.png`` palette masks (value c+1 = class c of ``classes.txt``; 0 background, or
    "no label" in a project without a background class) + ``classes.txt``;
    voc: ``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/train.txt``;
    zarr: ``out`` as a zarr group with one (H, W) uint8 array per image name.
    """
    if fmt not in FORMATS:
        raise SpnError(f"--format {fmt}: unknown format — use one of {', '.join(FORMATS)}.")
    read = labels_reader(project, kind)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpnError(f"{out}: already exists and is not empty — choose a new output folder.")
    out.mkdir(parents=True, exist_ok=True)
    pal = label_palette(project.colors)
    names = [im.name for im in project.images]
    if fmt == "zarr":
        group = zarr.open_group(out, mode="w")
        group.attrs.update({"classes": list(project.classes), "labels": kind or "current",
                            "background": project.has_background})
        for i, name in enumerate(names):
            lab = read(i)
            group.create_array(name, shape=lab.shape, dtype=lab.dtype, chunks=lab.shape)[...] = lab
        return out
    mask_dir = out / "SegmentationClass" if fmt == "voc" else out
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_mask(mask_dir / f"{name}.png", read(i), pal)
        if fmt == "voc":
            (out / "JPEGImages").mkdir(exist_ok=True)
            Image.fromarray(project.image(i)).save(out / "JPEGImages" / f"{name}.jpg", quality=95)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in project.classes), encoding="utf-8")
    if fmt == "voc":
        sets = out / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True)
        (sets / "train.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    (out / "export.json").write_text(json.dumps({"labels": kind or "current", "classes": list(project.classes),
                                                 "background": project.has_background}) + "\n")
    return out
