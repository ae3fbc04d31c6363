"""One entry point for every data set layout: detect it from the folder's contents, then read it.

``JPEGImages/`` means VOC 2012; ``classes.txt``, ``images/`` or ``labels.csv`` mean the generic
layout (whose reader then names whichever of the three is missing).
"""

from __future__ import annotations

from pathlib import Path

from spn_napari.data.dataset import Dataset
from spn_napari.data.generic import read_generic
from spn_napari.data.voc import read_voc
from spn_napari.errors import DatasetError

_EXPECTED = "classes.txt, images/ and labels.csv, or a VOC2012 folder with JPEGImages/"
_GENERIC_MARKERS = ("classes.txt", "images", "labels.csv")


def _looks_like_dataset(folder: Path) -> bool:
    return (folder / "JPEGImages").is_dir() or any((folder / m).exists() for m in _GENERIC_MARKERS)


def detect_layout(root: Path | str) -> str:
    """Return ``"voc"`` or ``"generic"`` for a data set folder, or raise DatasetError saying why not."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder — pass the data set folder (with {_EXPECTED}).")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder — pass the data set folder (with {_EXPECTED}).")
    if (root / "JPEGImages").is_dir():
        return "voc"
    if any((root / m).exists() for m in _GENERIC_MARKERS):
        return "generic"
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DatasetError(f"{root}: folder is empty — it must hold {_EXPECTED}.")
    inner = sorted(p for p in entries if p.is_dir() and _looks_like_dataset(p))
    if not inner:  # VOCdevkit/VOC2012 is one level deeper still
        inner = sorted(p / "VOC2012" for p in entries if (p / "VOC2012" / "JPEGImages").is_dir())
    hint = f" (did you mean {inner[0]}?)" if inner else ""
    raise DatasetError(f"{root}: not a data set folder{hint} — pass a folder with {_EXPECTED}.")


def read_dataset(root: Path | str, *, split: str | None = None) -> Dataset:
    """Detect the layout of ``root`` and read it; ``split`` picks a VOC ImageSets list.

    Raises DatasetError (one line: file, problem, fix) for anything that cannot be read as is.
    """
    root = Path(root)
    layout = detect_layout(root)
    if layout == "voc":
        return read_voc(root, split=split)
    if split is not None:
        raise DatasetError(
            f"{root}: split '{split}' given, but splits exist only for VOC2012 folders — omit the split."
        )
    return read_generic(root)
