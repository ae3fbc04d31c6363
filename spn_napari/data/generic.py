"""Reader for the generic data set folder: ``classes.txt``, ``images/``, ``labels.csv``, ``masks/``.

The whole folder is validated up front (so ``init`` fails before writing anything), but no pixel
is decoded: :func:`~spn_napari.data.images.load_image` / ``load_mask`` report bad pixels later.
Every problem is one :class:`DatasetError` line: file (and line number), problem, fix.

Names are file stems. In ``labels.csv`` an image may be given with or without its extension; tags
are class names joined by ``;`` and matched to ``classes.txt`` ignoring case.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spn_napari.data.dataset import Dataset, Item
from spn_napari.data.images import IMAGE_SUFFIXES, is_image_file
from spn_napari.errors import DatasetError

_JUNK = {"thumbs.db", "desktop.ini"}  # OS metadata files, skipped like hidden files


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in _JUNK


def _read_text(path: Path, what: str) -> str:
    """Read a UTF-8 text file (BOM tolerated) or raise DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file — create it ({what}).")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}) — save it as UTF-8"
            f" (e.g. 'CSV UTF-8' in Excel)."
        ) from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc}) — check its permissions.") from exc


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names from ``classes.txt``, one a line, blank lines ignored; background is implicit."""
    text = _read_text(path, "one class name a line, background not listed")
    classes: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if name.casefold() == "background":
            raise DatasetError(
                f"{path}:{lineno}: 'background' is implicit (label value 0) — delete this line"
                f" and list only the object classes."
            )
        if ";" in name:
            raise DatasetError(
                f"{path}:{lineno}: class name '{name}' contains ';', which separates tags in"
                f" labels.csv — rename the class."
            )
        key = name.casefold()
        if key in seen:
            raise DatasetError(
                f"{path}:{lineno}: class '{name}' is already on line {seen[key]} (names ignore case)"
                f" — delete one of the two lines."
            )
        seen[key] = lineno
        classes.append(name)
    if not classes:
        raise DatasetError(f"{path}: no class names — write one class name a line (background not listed).")
    return tuple(classes)


def _list_files(folder: Path, what: str) -> list[Path]:
    """The non-hidden entries of ``folder``, sorted; a sub-folder is an error (layouts are flat)."""
    files = []
    for p in sorted(folder.iterdir()):
        if _is_hidden(p):
            continue
        if p.is_dir():
            raise DatasetError(
                f"{p}: is a folder, but {folder.name}/ must hold {what} only — move its files up"
                f" into {folder.name}/ or remove it."
            )
        files.append(p)
    return files


def list_images(folder: Path) -> dict[str, Path]:
    """Map name (stem) → path for every file in ``images/``; every file must be an image."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: no such folder — create it and put the images listed in labels.csv in it."
        )
    by_name: dict[str, Path] = {}
    for p in _list_files(folder, "image files"):
        if not is_image_file(p):
            raise DatasetError(
                f"{p}: not an image file name (expected {', '.join(IMAGE_SUFFIXES)}) — convert it"
                f" or move it out of {folder.name}/."
            )
        if p.stem in by_name:
            raise DatasetError(
                f"{p}: same name '{p.stem}' as {by_name[p.stem].name} — rename or remove one of them."
            )
        by_name[p.stem] = p
    if not by_name:
        raise DatasetError(f"{folder}: no images — put the images listed in labels.csv in it.")
    return by_name


def resolve_image_name(name: str, images: dict[str, Path]) -> str | None:
    """The stem a labels.csv image name refers to: file name (extension in any case), else stem;
    None when ``images`` (stem → path) has no such image."""
    base, dot, ext = name.rpartition(".")
    if dot and base in images and images[base].suffix.lower() == "." + ext.lower():
        return base
    return name if name in images else None


def label_rows(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Every non-empty row of a ``labels.csv`` as (line number, image name as written, tag names):
    the header and each row's shape are checked here (DatasetError naming path:line); image names
    and tags are left for the caller to match, as a data set and ``predict --tags`` match them
    against different things."""
    text = _read_text(path, "header 'image,labels', then one row per image")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DatasetError(f"{path}:1: not valid CSV ({exc}) — fix the header line 'image,labels'.") from exc
    got = [h.strip().lower() for h in header] if header else []
    if got != ["image", "labels"]:
        shown = ",".join(header) if header else "nothing"
        semicolons = bool(header) and len(header) == 1 and ";" in header[0]
        hint = " (it looks ';'-separated: use commas)" if semicolons else ""
        raise DatasetError(
            f"{path}:1: header is '{shown}'{hint} — the first line must be exactly 'image,labels'."
        )
    rows = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: not valid CSV ({exc}) — fix the quoting.") from exc
        line = reader.line_num
        cells = [c.strip() for c in row]
        while len(cells) > 2 and not cells[-1]:
            cells.pop()  # trailing empty cells (spreadsheet export)
        if not any(cells):
            continue
        if len(cells) > 2:
            raise DatasetError(
                f"{path}:{line}: {len(cells)} columns, expected 2 — join tags with ';'"
                f" (e.g. 'img_01,cat;dog'), not ','."
            )
        name, labels = cells[0], (cells[1] if len(cells) > 1 else "")
        if not name:
            raise DatasetError(f"{path}:{line}: empty image name — write the image file name first.")
        rows.append((line, name, tuple(t for t in (t.strip() for t in labels.split(";")) if t)))
    return rows


def read_labels(
    path: Path, classes: tuple[str, ...], images: dict[str, Path]
) -> dict[str, tuple[int, ...]]:
    """Map name → sorted 0-based tags from ``labels.csv``; every image must have exactly one row."""
    by_key = {c.casefold(): i for i, c in enumerate(classes)}
    out: dict[str, tuple[int, ...]] = {}
    first_line: dict[str, int] = {}
    for line, name, tag_names in label_rows(path):
        stem = resolve_image_name(name, images)
        if stem is None:
            raise DatasetError(f"{path}:{line}: no image '{name}' in images/ — add it or delete the line.")
        if stem in first_line:
            raise DatasetError(
                f"{path}:{line}: image '{name}' already has a row on line {first_line[stem]}"
                f" — merge the two rows into one."
            )
        first_line[stem] = line
        tags = set()
        for tag in tag_names:
            if tag.casefold() not in by_key:
                bg = tag.casefold() == "background"
                hint = " (leave labels empty for a background-only image)" if bg else ""
                raise DatasetError(
                    f"{path}:{line}: tag '{tag}' is not in classes.txt{hint} — use one of"
                    f" {', '.join(classes)}, or add it to classes.txt."
                )
            tags.add(by_key[tag.casefold()])
        out[stem] = tuple(sorted(tags))
    missing = [images[s] for s in images if s not in out]
    if missing:
        n = len(missing) - 1
        more = f" (and {n} more image{'s' if n > 1 else ''})" if n else ""
        raise DatasetError(
            f"{missing[0]}: no row in {path}{more} — add a line '{missing[0].name},TAG;TAG'"
            f" (empty tags for a background-only image) or remove the image."
        )
    return out


def list_masks(folder: Path, images: dict[str, Path]) -> dict[str, Path]:
    """Map name → path for the optional ``masks/NAME.png``; each mask must belong to an image."""
    if not folder.exists():
        return {}
    if not folder.is_dir():
        raise DatasetError(f"{folder}: is a file, not a folder — remove it or make it a folder of PNG masks.")
    masks: dict[str, Path] = {}
    for p in _list_files(folder, "PNG masks"):
        if p.suffix.lower() != ".png":
            raise DatasetError(
                f"{p}: masks must be PNG files (0 background, i class i, 255 ignore) — convert it"
                f" to PNG or remove it."
            )
        if p.stem not in images:
            raise DatasetError(f"{p}: no image '{p.stem}' in images/ — remove the mask or add the image.")
        if p.stem in masks:
            raise DatasetError(f"{p}: same name as {masks[p.stem].name} — remove one of them.")
        masks[p.stem] = p
    return masks


def read_generic(root: Path) -> Dataset:
    """Validate a generic data set folder and describe it; items are sorted by name.

    Raises DatasetError (one line: file[:line], problem, fix) for any structural problem:
    missing/empty/duplicate classes, non-image files, rows without images, images without rows,
    unknown tags, masks without images. Pixels are not decoded here.
    """
    root = Path(root)
    classes = read_classes(root / "classes.txt")
    images = list_images(root / "images")
    tags = read_labels(root / "labels.csv", classes, images)
    masks = list_masks(root / "masks", images)
    items = tuple(
        Item(name=name, image_path=images[name], tags=tags[name], mask_path=masks.get(name))
        for name in sorted(images)
    )
    return Dataset(root=root, layout="generic", classes=classes, items=items)
