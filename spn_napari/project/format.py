"""The project folder's format: its names and version, a new folder written from a data set, and
folders of older formats migrated to the current one. :class:`spn_napari.project.store.Project` opens
what this module writes.

Format versions: 1 and 2 kept the state in a JSON manifest ``project.json`` (2 added the
"background" key; absent in 1: a background class); they are migrated to 3 (``project.db``) when
first opened, the manifest kept as ``project.json.bak``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import zarr

from ..colours import class_colors
from ..errors import DatasetError, ProjectError
from .db import DB_NAME, ProjectDB, create_db
from .durable import fsync_path
from .pixels import PackedWriter, merge_index

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "ZARR", "migrate_json_manifest", "write_new_project"]

FORMAT = "spn-napari-project"
FORMAT_VERSION = 3  # 3: project.db; 2: project.json with "background"; 1: project.json without
MANIFEST = "project.json"  # formats 1 and 2 only: migrated on open
ZARR = "data.zarr"


def write_new_project(root: Path, dataset, progress: Callable[[int, int], None] | None = None, *,
                      background: bool = True) -> None:
    """Import ``dataset`` (a validated data set) into a new project folder at ``root``
    (see :meth:`spn_napari.project.store.Project.create`).

    Written into a temporary sibling folder that is renamed into place at the end, so a failure
    (a corrupt image, a mask of the wrong size, a 0 without background) leaves no project behind.
    """
    from ..data.images import load_image, load_mask

    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ProjectError(f"{root}: already exists and is not empty — choose a new project folder "
                           f"or delete this one first.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.creating-", dir=root.parent))
    try:
        zarr.open_group(tmp / ZARR, mode="w")
        images_w, gt_w = PackedWriter(tmp / ZARR / "images"), PackedWriter(tmp / ZARR / "gt")
        infos = []
        for i, item in enumerate(dataset.items):
            img = load_image(item.image_path)
            images_w.put(i, img)
            has_gt = item.mask_path is not None
            if has_gt:
                mask = load_mask(item.mask_path, img.shape[:2])
                if not background and (mask == 0).any():
                    raise DatasetError(
                        f"{item.mask_path}: value 0 (background) at {int((mask == 0).sum())} pixels in a "
                        f"data set imported with --no-background — relabel those pixels to a class or "
                        f"255 (void), or import without --no-background.")
                gt_w.put(i, mask)
            infos.append({"name": item.name, "height": int(img.shape[0]), "width": int(img.shape[1]),
                          "tags": list(item.tags), "has_gt": has_gt, "source": str(item.image_path)})
            if progress:
                progress(i + 1, len(dataset.items))
        for w in (images_w, gt_w):
            w.close()
            merge_index(w.group, len(infos))
        (tmp / "checkpoints").mkdir()
        create_db(tmp / DB_NAME, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(),
            "source": {"path": str(dataset.root), "layout": dataset.layout},
            "classes": list(dataset.classes), "background": bool(background),
            "colors": class_colors(len(dataset.classes)), "settings": {}}, infos)
        if root.exists():
            root.rmdir()  # empty, checked above
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise the migration of a JSON manifest between processes opening the project at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: writers are rare enough to go unlocked
        yield
        return
    with open(root / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def migrate_json_manifest(root: Path) -> None:
    """Turn a project of format 1 or 2 (state in ``project.json``) into one with ``project.db``.

    The database is built under a temporary name and renamed into place, then ``project.json``
    becomes ``project.json.bak``: a kill at any instant leaves either the old project or the new
    one. Under the project's lock, so two processes opening the project at once migrate it once.
    """
    path = root / MANIFEST
    with _locked(root):
        if (root / DB_NAME).is_file():  # another process migrated it meanwhile
            return
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProjectError(f"{path}: unreadable project manifest ({exc}) — restore it from a "
                               f"backup or re-create the project with `spn-napari init`.") from None
        if meta.get("format") != FORMAT:
            raise ProjectError(f"{path}: not an spn-napari project manifest — point to a folder "
                               f"made by `spn-napari init`.")
        if int(meta.get("format_version", 0)) > 2:
            raise ProjectError(f"{path}: project format {meta['format_version']} is newer than this "
                               f"spn-napari understands ({FORMAT_VERSION}) — upgrade spn-napari.")
        tmp = root / f".{DB_NAME}.migrating-{secrets.token_hex(4)}"
        try:
            info = {k: meta[k] for k in ("classes", "colors")}
            create_db(tmp, {"format": FORMAT, "format_version": FORMAT_VERSION, "created": meta.get("created", 0.0),
                            "source": meta.get("source", {}), **info, "background": bool(meta.get("background", True)),
                            "settings": meta.get("settings", {}), "migrated_from": int(meta.get("format_version", 1)),
                            **({"current_round": meta["current_round"]} if "current_round" in meta else {}),
                            "corrections_saved": 0},
                      meta["images"])
            db = ProjectDB(tmp)
            with db.transaction() as conn:
                for kind, entry in meta.get("artifacts", {}).items():
                    ProjectDB.put_artifact(conn, kind, {**entry, "meta": entry.get("meta", {}),
                                                        "depends": entry.get("depends", {})})
                for entry in meta.get("rounds", []):
                    ProjectDB.put_round(conn, entry, entry.get("uncertainty"))
            db.close()
            fsync_path(tmp)
            os.replace(tmp, root / DB_NAME)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.replace(path, root / f"{MANIFEST}.bak")
        fsync_path(root)
