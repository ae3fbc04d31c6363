"""Annotators' corrections from mask files: `spn-napari import-corrections PROJECT DIR`.

A correction mask is a label image named like the project's image (``DIR/NAME.png``): 0
background, i class i (the order of classes.txt), 255 "not set"; in a project without a background
class (``init --no-background``) a 0 is an error. Its set pixels override the labels of every
later round (see :func:`spn_napari.labels.training_target`). The store keeps each image's
correction (labels plus which pixels a person set) and its review status
(:meth:`Project.save_correction`, :meth:`Project.set_review`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.images import is_image_file, load_mask
from ..errors import DatasetError
from ..events import Event
from ..project.store import Project

__all__ = ["import_corrections", "NOT_SET"]

NOT_SET = 255
"""Mask value of pixels a correction leaves to the model."""


def import_corrections(project: Project, folder: Path | str, *, review: str = "reviewed") -> Iterator[Event]:
    """Read every mask in ``folder``, check them all, then store them one image at a time.

    Nothing is written unless every file names an image of the project (once), has its size and
    only holds class values of classes.txt, 255, and 0 only in a project with a background class.
    Each image's save is atomic; an import stopped half-way keeps the images already saved.
    Imported images get the review status ``review``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder — give the folder that holds the correction masks.")
    index = {info.name: i for i, info in enumerate(project.images)}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p))
    if not files:
        raise DatasetError(f"{folder}: no mask images (.png, .tif, …) here — save one mask per corrected "
                           f"image, named like the image.")
    plan, seen = [], {}
    for path in files:
        if path.stem in seen:
            raise DatasetError(f"{path}: a second mask for {path.stem!r} (also {seen[path.stem].name}) — keep one.")
        seen[path.stem] = path
        i = index.get(path.stem)
        if i is None:
            raise DatasetError(f"{path}: no image named {path.stem!r} in project {project.root} — name each "
                               f"mask after its image (e.g. {project.images[0].name}.png).")
        info = project.images[i]
        mask = load_mask(path, (info.height, info.width))
        bad = mask[(mask != NOT_SET) & (mask > len(project.classes))]
        if bad.size:
            raise DatasetError(f"{path}: value {int(bad.max())} is not a class of classes.txt "
                               f"({project.value_legend()}) — fix the mask's values.")
        if not project.has_background and (mask == 0).any():
            raise DatasetError(f"{path}: value 0 (background) at {int((mask == 0).sum())} pixels, but project "
                               f"{project.root} has no background class — give those pixels a class or "
                               f"255 (not set) ({project.value_legend()}).")
        plan.append((i, path))
    for n, (i, path) in enumerate(plan, 1):
        info = project.images[i]
        mask = load_mask(path, (info.height, info.width))
        project.save_correction(i, np.where(mask == NOT_SET, 0, mask), mask != NOT_SET, review=review)
        yield Event("image", n, len(plan), {"image": info.name})
    yield Event("done", len(plan), len(plan), {"images": len(plan)})
