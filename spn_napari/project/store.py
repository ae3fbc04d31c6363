"""The project on disk: state in SQLite (``project.db``), pixels in zarr, every write atomic.

Layout of a project folder::

    project.db     classes, colours, whether label value 0 is a background class, settings,
                   images (name, size, tags, review, current correction), the manifest of
                   committed artifacts and the rounds (see :mod:`spn_napari.project.db`)
    data.zarr/     images (H, W, 3) uint8 and gt (H, W) uint8 of every image, one group per
                   artifact version, e.g. ``superpixels.3f2a9c`` (H, W) int32 per image, each
                   packed into a few sharded arrays (:mod:`spn_napari.project.pixels`), and
                   corrections/NNNNNN.TOKEN/{labels,set}, few, one group per image
    checkpoints/   model files named after their artifact version

An artifact (superpixels, an SPN checkpoint, CAMs, pseudo-labels) is written under a fresh,
unique name and becomes visible only when one transaction of ``project.db`` points at it. A
process killed at any instant therefore leaves the last committed state readable; half-written
groups are invisible and swept later. Artifacts record the versions they were computed from, so
recomputing superpixels drops what depended on them.

Label values everywhere: class c (0-based) is c+1, 255 is ignore / void / not set. Value 0 is
background in a project with a background class (the default); in one made with
``init --no-background`` (every pixel belongs to a class, as in MSRC-21) 0 is never a ground-truth
or corrected value and only means "no label" where no class is possible (an image without tags).

Beside it: the folder's format, creation and migration of older formats
(:mod:`spn_napari.project.format`), class colours (:mod:`spn_napari.colours`), artifact versions
and their writer (:mod:`spn_napari.project.versions`), atomic file writes (:mod:`spn_napari.project.durable`).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import ProjectError
from . import kinds
from .db import DB_NAME, ProjectDB
from .durable import atomic_write_bytes
from .format import FORMAT, FORMAT_VERSION, MANIFEST, ZARR, migrate_json_manifest, write_new_project
from .pixels import PackedReader, is_packed, merge_index
from .versions import ArtifactWriter, drop_dependents, new_version

__all__ = ["REVIEW_STATES", "ImageInfo", "Project", "is_project"]

OPEN_ARRAYS = 4096  # per-image zarr array handles a Project keeps open (projects made before packing)

REVIEW_STATES = ("unreviewed", "reviewed", "rejected")


def is_project(path: Path | str) -> bool:
    root = Path(path)
    return ((root / DB_NAME).is_file() or (root / MANIFEST).is_file()) and (root / ZARR).is_dir()


def _key(i: int) -> str:
    return f"{i:06d}"


@dataclass(frozen=True)
class ImageInfo:
    name: str
    height: int
    width: int
    tags: tuple[int, ...]  # 0-based class indices
    has_gt: bool


class Project:
    """An open project folder. Cheap to open; reads pixels one image at a time.

    What never changes after ``init`` (classes, colours, the image list) is read once; review
    status, corrections, settings and rounds are read from ``project.db`` on every call, so they
    are always what the last transaction of any process left. The artifact manifest is a snapshot
    taken at open, after this object's own commits and on :meth:`reload`, so that one job reads one
    version of each artifact from start to end even while another process commits a new one.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise ProjectError(f"{self.root}: no such project folder — create one with "
                               f"`spn-napari init {self.root} --from DATASET_DIR`.")
        if not is_project(self.root):
            raise ProjectError(f"{self.root}: not an spn-napari project (no {DB_NAME} and {ZARR}) — "
                               f"create one with `spn-napari init {self.root} --from DATASET_DIR`.")
        if not (self.root / DB_NAME).is_file():
            migrate_json_manifest(self.root)
        self._db = ProjectDB(self.root / DB_NAME)
        meta = self._db.all_meta()
        path = self.root / DB_NAME
        if meta.get("format") != FORMAT:
            raise ProjectError(f"{path}: not an spn-napari project database — point to a folder made by "
                               f"`spn-napari init`.")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ProjectError(f"{path}: project format {meta['format_version']} is newer than this "
                               f"spn-napari understands ({FORMAT_VERSION}) — upgrade spn-napari.")
        self._static = {k: meta[k] for k in ("classes", "colors")}
        self._static["background"] = bool(meta.get("background", True))
        self._images = [ImageInfo(*row) for row in self._db.images()]
        self._artifacts = self._db.read_artifacts()
        self._handles: OrderedDict[tuple[str, int], zarr.Array] = OrderedDict()
        self._packed: dict[str, PackedReader | None] = {}

    def reload(self) -> None:
        """Take a new snapshot of the artifact manifest (another process, e.g. a training child,
        may have committed); review, corrections and rounds are always read fresh."""
        self._artifacts = self._db.read_artifacts()
        self._handles.clear()  # groups replaced meanwhile are swept: keep no handle into them
        self._packed.clear()

    def close(self) -> None:
        """Close this object's database connection (the next call opens a new one)."""
        self._db.close()

    @contextlib.contextmanager
    def _saving(self, what: str) -> Iterator[None]:
        """Turn a full disk or an I/O error during a save into one line; the transaction that
        failed is rolled back, so the last committed state stays as it was."""
        try:
            yield
        except (OSError, sqlite3.OperationalError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise ProjectError(f"{self.root / DB_NAME}: {what} waited too long for another process's "
                                   f"save ({exc}) — try again.") from None
            raise ProjectError(f"{self.root}: could not save {what} ({exc}) — free disk space (or fix the "
                               f"disk) and save again; everything saved before is intact.") from None

    # ---- static facts ----------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._static["classes"])

    @property
    def colors(self) -> tuple[str, ...]:
        return tuple(self._static["colors"])

    @property
    def has_background(self) -> bool:
        """Whether label value 0 is a background class (False: made with ``init --no-background``;
        projects of format 1 have no such key and a background class)."""
        return self._static["background"]

    def label_names(self) -> list[str]:
        """Names of the label values a person or a model can give, in value order: 'background'
        (value 0) and the classes (values 1..K), without 'background' when the project has none."""
        return ["background", *self.classes] if self.has_background else list(self.classes)

    def value_legend(self) -> str:
        """The valid label values in words, for error messages, e.g. '0 background, 1..5, 255 not set'."""
        bg = "0 background, " if self.has_background else ""
        return f"{bg}1..{len(self.classes)}, 255 not set"

    @property
    def images(self) -> list[ImageInfo]:
        return self._images

    def __len__(self) -> int:
        return len(self._images)

    @property
    def has_ground_truth(self) -> bool:
        return any(im.has_gt for im in self._images)

    @property
    def settings(self) -> dict:
        return dict(self._db.meta("settings", {}))

    def set_settings(self, **values: Any) -> None:
        with self._saving("the settings"), self._db.transaction() as conn:
            settings = ProjectDB.get_meta(conn, "settings", {})
            settings.update(values)
            ProjectDB.set_meta(conn, "settings", settings)

    def tag_matrix(self) -> np.ndarray:
        """(n_images, C) float32 multi-hot image-level tags."""
        out = np.zeros((len(self), len(self.classes)), np.float32)
        for i, im in enumerate(self._images):
            out[i, list(im.tags)] = 1
        return out

    # ---- pixels ----------------------------------------------------------------------------
    def _pixels(self, group: str, i: int) -> np.ndarray:
        """Image i's array in zarr group ``group``: packed (:mod:`spn_napari.project.pixels`), or one
        array per image in groups written before packing (format 3 projects made before it, and
        every migrated format 1 or 2 project)."""
        if group not in self._packed:
            path = self.root / ZARR / group
            self._packed[group] = PackedReader(path) if is_packed(path) else None
        reader = self._packed[group]
        return reader.read(i) if reader is not None else self._array(group, i)[...]

    def _array(self, group: str, i: int) -> zarr.Array:
        """Image i's array in a per-image ``group``, opened once: opening reads its metadata, half
        the cost of a small read. Safe to keep, as a committed group's arrays never change (a new
        version is a new group); bounded, so a huge project does not hold every handle."""
        arr = self._handles.get((group, i))
        if arr is None:
            arr = zarr.open_array(self.root / ZARR, path=f"{group}/{_key(i)}", mode="r")
            self._handles[(group, i)] = arr
            if len(self._handles) > OPEN_ARRAYS:
                self._handles.popitem(last=False)
        return arr

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8."""
        return self._pixels("images", i)

    def ground_truth(self, i: int) -> np.ndarray | None:
        """(H, W) uint8: c+1 class c, 255 ignore, 0 background (never 0 in a project without a
        background class); None without a mask. Never for training."""
        return self._pixels("gt", i) if self._images[i].has_gt else None

    # ---- corrections and review ------------------------------------------------------------
    def _check_index(self, i: int) -> int:
        if not 0 <= int(i) < len(self):
            raise ProjectError(f"{self.root}: no image {i} (the project has {len(self)}, 0..{len(self) - 1}).")
        return int(i)

    def review(self, i: int) -> str:
        """Image i's review status: 'unreviewed', 'reviewed' or 'rejected'."""
        return self._db.image_value(self._check_index(i), "review")

    def reviews(self) -> list[str]:
        """Every image's review status, in image order (one read for the whole list)."""
        return self._db.column("review")

    def next_with_review(self, status: str, after: int) -> int | None:
        """The first image after index ``after`` (wrapping around, ``after`` itself last) whose
        review status is ``status``; None when there is none. One indexed query."""
        return self._db.next_with_review(status, after)

    def set_review(self, i: int, status: str) -> None:
        if status not in REVIEW_STATES:
            raise ProjectError(f"review status {status!r}: use one of {', '.join(REVIEW_STATES)}.")
        i = self._check_index(i)
        with self._saving(f"the review of {self._images[i].name}"), self._db.transaction() as conn:
            ProjectDB.set_review(conn, i, status)

    def reset_reviews(self) -> None:
        """Forget every correction and review status (one transaction; the corrections' pixels
        are deleted after it). For simulations on a copy of a project."""
        with self._saving("the reset"), self._db.transaction() as conn:
            old = ProjectDB.reset_reviews(conn)
        for where in old:
            shutil.rmtree(self.root / ZARR / where, ignore_errors=True)

    def has_correction(self, i: int) -> bool:
        """Whether a person saved a correction for image i (no pixels read)."""
        return self._db.image_value(self._check_index(i), "correction") is not None

    def corrected(self) -> list[bool]:
        """Whether each image has a correction, in image order (one read)."""
        return [w is not None for w in self._db.column("correction")]

    def corrections_version(self) -> int:
        """A number that changes whenever any correction is saved or reset (training fingerprints)."""
        return int(self._db.meta("corrections_saved", 0))

    def correction(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Image i's correction: labels (H, W) uint8 and which pixels a person set (H, W) bool."""
        i = self._check_index(i)
        for attempt in (0, 1):
            where = self._db.image_value(i, "correction")
            if where is None:
                return None
            try:
                return (zarr.open_array(self.root / ZARR, path=f"{where}/labels", mode="r")[...],
                        zarr.open_array(self.root / ZARR, path=f"{where}/set", mode="r")[...])
            except FileNotFoundError:
                if attempt:
                    raise
                # replaced by a newer save between the query and the read: read the newer one
        return None

    def check_correction(self, i: int, labels: np.ndarray, set_mask: np.ndarray, source: str = "") -> None:
        """Raise ProjectError (naming ``source``) unless the arrays fit image i and the class list."""
        info, what = self._images[i], source or f"correction of {self._images[i].name}"
        for name, a in (("labels", labels), ("set mask", set_mask)):
            if a.shape != (info.height, info.width):
                raise ProjectError(f"{what}: {name} is {a.shape[1] if a.ndim > 1 else '?'}x{a.shape[0]} (WxH) "
                                   f"but the image is {info.width}x{info.height} — save it at the image's size.")
        used = np.asarray(labels)[np.asarray(set_mask, bool)]
        if used.size and int(used.max()) > len(self.classes):
            raise ProjectError(f"{what}: class value {int(used.max())} is not in classes.txt "
                               f"({self.value_legend()}) — fix the mask's values.")
        if used.size and not self.has_background and int(used.min()) == 0:
            raise ProjectError(f"{what}: value 0 (background) on {int((used == 0).sum())} set pixels, but this "
                               f"project has no background class — give them a class "
                               f"({self.value_legend()}).")

    def save_correction(self, i: int, labels: np.ndarray, set_mask: np.ndarray, *,
                        review: str | None = None) -> None:
        """Store image i's correction (replacing the previous one) atomically, optionally its review.

        The pixels go to a new zarr group first; one transaction then points the image at it, so
        a kill or a full disk at any instant leaves the previous correction in place."""
        i = self._check_index(i)
        labels, set_mask = np.asarray(labels, np.uint8), np.asarray(set_mask, bool)
        self.check_correction(i, labels, set_mask)
        if review is not None and review not in REVIEW_STATES:
            raise ProjectError(f"review status {review!r}: use one of {', '.join(REVIEW_STATES)}.")
        where = f"corrections/{_key(i)}.{secrets.token_hex(4)}"
        try:
            with self._saving(f"the correction of {self._images[i].name}"):
                group = zarr.open_group(self.root / ZARR, mode="a").require_group(where)
                group.create_array("labels", shape=labels.shape, dtype=np.uint8, chunks=labels.shape)[...] = labels
                group.create_array("set", shape=set_mask.shape, dtype=bool, chunks=set_mask.shape)[...] = set_mask
                with self._db.transaction() as conn:
                    old = ProjectDB.put_correction(conn, i, where, review)
        except BaseException:
            shutil.rmtree(self.root / ZARR / where, ignore_errors=True)
            raise
        if old:
            shutil.rmtree(self.root / ZARR / old, ignore_errors=True)

    # ---- rounds ----------------------------------------------------------------------------
    def rounds(self) -> list[dict]:
        """Every round's record, oldest first: round, parent, created, model, config, seed,
        seconds, metrics (see :mod:`spn_napari.rounds.refine`)."""
        return self._db.rounds()

    def current_round(self) -> int | None:
        """The round whose labels are current (None before the first round)."""
        return self._db.meta("current_round")

    def set_current_round(self, r: int) -> None:
        if r not in {e["round"] for e in self.rounds()}:
            raise ProjectError(f"{self.root}: there is no round {r}.")
        with self._saving("the current round"), self._db.transaction() as conn:
            ProjectDB.set_meta(conn, "current_round", int(r))

    def add_round(self, entry: dict, uncertainty: list[float] | None = None) -> None:
        """Record round ``entry["round"]`` (replacing one of that number) with its per-image
        uncertainty, and make it current: one transaction."""
        with self._saving(f"round {entry['round']}"), self._db.transaction() as conn:
            ProjectDB.put_round(conn, entry, uncertainty)
            ProjectDB.set_meta(conn, "current_round", int(entry["round"]))

    def round_uncertainty(self, r: int) -> np.ndarray | None:
        """(n_images,) float64 uncertainty of round r's prediction of each image, or None."""
        values = self._db.round_values(r)
        return np.asarray(values, np.float64) if values else None

    # ---- artifacts -------------------------------------------------------------------------
    def artifact(self, kind: str) -> dict | None:
        """The committed entry of ``kind`` (e.g. 'superpixels', 'spn', 'pseudo/sp-cam'), or None."""
        return self._artifacts.get(kind)

    def require(self, kind: str) -> dict:
        """The committed entry of ``kind``; a ProjectError naming the command that makes it."""
        entry = self.artifact(kind)
        if entry is None:
            raise ProjectError(f"{self.root}: no {kind} in this project yet — run `{self._maker(kind)}` first.")
        return entry

    def read(self, kind: str, i: int) -> np.ndarray:
        """Image i's array of a per-image artifact, e.g. ``read('superpixels', 3)`` (H, W) int32."""
        return self._pixels(self.require(kind)["group"], i)

    def file(self, kind: str) -> Path:
        """Path of a file artifact (a checkpoint)."""
        return self.root / self.require(kind)["file"]

    def _maker(self, kind: str) -> str:
        """The command that makes artifact ``kind`` (for error messages)."""
        return kinds.maker(kind, self.root)

    def writer(self, kind: str, *, depends: tuple[str, ...] = (), meta: dict | None = None,
               version: str | None = None, part: int = 0) -> ArtifactWriter:
        """Start a new version of a per-image artifact; it is visible only after ``commit()``
        (``version``, ``part``: one rank's share of a version that several ranks write)."""
        def on_commit(w: ArtifactWriter) -> None:
            self.commit_written(w.kind, w.version, depends=w.depends, meta=w.meta)

        return ArtifactWriter(self.root / ZARR, kind, depends=depends, meta=meta or {}, version=version,
                              part=part, on_commit=on_commit)

    def commit_written(self, kind: str, version: str, *, depends: tuple[str, ...] = (),
                       meta: dict | None = None) -> None:
        """Commit packed ``version`` of ``kind`` once every writer of it finished: merge the
        parts' indices and make it current; a RuntimeError when some image was not written."""
        missing = merge_index(self.root / ZARR / version, len(self))
        if missing:
            raise RuntimeError(f"{kind}: {len(missing)} images not written (e.g. image {missing[0]}); "
                               f"call put() for each first")
        self.commit_version(kind, {"group": version}, depends, meta or {}, version)

    def commit_file(self, kind: str, data: bytes, *, suffix: str, depends: tuple[str, ...] = (),
                    meta: dict | None = None) -> Path:
        """Write a file artifact (e.g. a checkpoint) atomically and make it current."""
        version = new_version(kind)
        rel = Path("checkpoints") / f"{version}{suffix}"
        atomic_write_bytes(self.root / rel, data)
        self.commit_version(kind, {"file": str(rel)}, depends, meta or {}, version)
        return self.root / rel

    def commit_version(self, kind: str, where: dict, depends: tuple[str, ...], meta: dict, version: str) -> None:
        """Make ``version`` of ``kind`` (its data already written at ``where``) current in one
        transaction; drops, then deletes, the replaced version and every artifact computed from
        another version of ``kind``."""
        with self._saving(kind), self._db.transaction() as conn:
            arts = ProjectDB.artifacts(conn)
            missing = [d for d in depends if d not in arts]
            if missing:
                raise ProjectError(f"{self.root}: {kind} needs {', '.join(missing)}, which is gone — "
                                   f"recompute it and run again.")
            old = arts.get(kind)
            arts[kind] = {**where, "version": version, "created": time.time(), "meta": meta,
                          "depends": {d: arts[d]["version"] for d in depends}}
            ProjectDB.put_artifact(conn, kind, arts[kind])
            dropped = drop_dependents(arts, kind)
            ProjectDB.drop_artifacts(conn, [k for k, _ in dropped])
        self.reload()
        for entry in ([old] if old else []) + [e for _, e in dropped]:
            self._delete_data(entry)

    def _delete_data(self, entry: dict) -> None:
        if "group" in entry:
            shutil.rmtree(self.root / ZARR / entry["group"], ignore_errors=True)
        if "file" in entry:
            with contextlib.suppress(FileNotFoundError):
                (self.root / entry["file"]).unlink()

    def sweep(self) -> list[str]:
        """Delete half-written artifact groups and files no manifest entry points at."""
        self.reload()
        live = {e.get("group") for e in self._artifacts.values()}
        live_files = {Path(e["file"]).name for e in self._artifacts.values() if "file" in e}
        gone = []
        for p in (self.root / ZARR).iterdir():
            if "." in p.name and p.is_dir() and p.name not in live and _older_than(p, 3600):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
        live_corr = set(self._db.column("correction"))
        corr_dir = self.root / ZARR / "corrections"
        for p in corr_dir.iterdir() if corr_dir.exists() else ():
            if p.is_dir() and f"corrections/{p.name}" not in live_corr and _older_than(p, 3600):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
        for p in (self.root / "checkpoints").glob("*"):
            if p.name not in live_files and _older_than(p, 3600):
                p.unlink()
                gone.append(p.name)
        return gone

    # ---- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str, dataset, progress: Callable[[int, int], None] | None = None, *,
               background: bool = True) -> Project:
        """Import ``dataset`` (a validated data set) into a new project folder at ``root``.

        ``background=False`` (``init --no-background``): every pixel belongs to a class, so label
        value 0 is no class; a ground-truth mask holding 0 is refused. Written into a temporary
        sibling folder that is renamed into place at the end, so a failure (a corrupt image, a
        mask of the wrong size, a 0 without background) leaves no project behind
        (:func:`spn_napari.project.format.write_new_project`).
        """
        write_new_project(Path(root), dataset, progress, background=background)
        return cls(root)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False
