"""Per-image arrays of one artifact version packed into a few sharded zarr arrays.

One array per image per artifact made a file (or two) per image: 100,000 images meant hundreds of
thousands of files per artifact version, and deleting a replaced version walked them all. Here a
version is a zarr group holding

    part-R     1-D array of every image's values written by writer R (R = the rank under
               torchrun, 0 otherwise), back to back; zarr v3 sharding: CHUNK_BYTES chunks in
               shards of SHARD_CHUNKS chunks, so a shard is one file
    index-R    (n_R, 2 + ndim) int64: image, offset into part-R, shape, of what writer R wrote
    index      (n_images, 2 + ndim) int64: part (-1: no array for that image), offset, shape;
               merged from the index-R (then removed) when the version is committed

Why ragged pixels with an offset table rather than one (N, H, W) array: the images of a project
have different sizes, and artifacts hold arrays of different shapes per image (superpixel scores
are (N_sp, C)). Why sharding: a chunk stays small (one image is one or two chunk reads, each
decompressing at most CHUNK_BYTES) while a file holds SHARD_CHUNKS of them.

A writer buffers values until a whole shard is full and writes that shard at once; only its
last, partial shard is written at close. No shard is ever rewritten, and writers never share
one (each has its own part), so ranks write side by side without locks.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import zarr

__all__ = ["CHUNK_BYTES", "SHARD_CHUNKS", "PackedWriter", "PackedReader", "merge_index", "is_packed"]

CHUNK_BYTES = 256 * 1024  # one image's read decompresses ~1-2 chunks of this size
SHARD_CHUNKS = 128  # chunks per shard file: 32 MiB files


def is_packed(group: Path) -> bool:
    """Whether the zarr group at ``group`` is a packed version (else: one array per image)."""
    return (Path(group) / "index" / "zarr.json").is_file()


class PackedWriter:
    """Appends image arrays of one dtype and ndim to part ``part`` of the group at ``group``.

    ``put(i, array)`` in any order; ``close()`` writes the last shard and this part's index."""

    def __init__(self, group: Path, part: int = 0) -> None:
        self.group, self.part = Path(group), int(part)
        self._zgroup = zarr.open_group(self.group, mode="a")
        self._rows: list[list[int]] = []
        self._pending: list[np.ndarray] = []  # flattened values not yet written
        self._pending_n = 0
        self._written = 0  # values already in the part array (a multiple of the shard size)
        self._array: zarr.Array | None = None
        self.dtype: np.dtype | None = None
        self.ndim: int | None = None

    def put(self, i: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if self.dtype is None:
            self.dtype, self.ndim = array.dtype, array.ndim
        elif array.dtype != self.dtype or array.ndim != self.ndim:
            raise ValueError(f"{self.group}: image {i} is {array.dtype} {array.ndim}-d, the others "
                             f"{self.dtype} {self.ndim}-d")
        self._rows.append([int(i), self._written + self._pending_n, *array.shape])
        self._pending.append(array.reshape(-1))
        self._pending_n += array.size
        shard = self._shard_values()
        if self._pending_n >= shard:
            flat = np.concatenate(self._pending)
            whole = (len(flat) // shard) * shard
            self._write(flat[:whole])
            self._pending, self._pending_n = [flat[whole:]], len(flat) - whole

    def _shard_values(self) -> int:
        return self._chunk_values() * SHARD_CHUNKS

    def _chunk_values(self) -> int:
        return max(1, CHUNK_BYTES // self.dtype.itemsize)

    def _create(self) -> zarr.Array:
        chunk = self._chunk_values()
        return self._zgroup.create_array(f"part-{self.part}", shape=(0,), dtype=self.dtype, chunks=(chunk,),
                                         shards=(chunk * SHARD_CHUNKS,), overwrite=True)

    def _write(self, values: np.ndarray) -> None:
        if not len(values):
            return
        if self._array is None:
            self._array = self._create()
        end = self._written + len(values)
        self._array.resize((end,))
        self._array[self._written:end] = values
        self._written = end

    def close(self) -> None:
        """Write what is buffered and this part's index; the writer is done after it."""
        if self._pending_n:
            self._write(np.concatenate(self._pending))
        elif self._array is None and self.dtype is not None:  # only empty arrays: an empty part
            self._array = self._create()
        self._pending, self._pending_n = [], 0
        width = 2 + (self.ndim or 0)
        rows = np.array(self._rows, np.int64).reshape(-1, width)
        self._zgroup.create_array(f"index-{self.part}", shape=rows.shape, dtype=np.int64,
                                  chunks=(max(1, len(rows)), width), overwrite=True)[...] = rows


def merge_index(group: Path, n_images: int) -> list[int]:
    """Merge the parts' indices of the group at ``group`` into its ``index``; returns the images
    no part wrote (their row says part -1)."""
    group = Path(group)
    zgroup = zarr.open_group(group, mode="a")
    parts = {}
    for p in group.iterdir():
        m = re.fullmatch(r"index-(\d+)", p.name)
        if m:
            parts[int(m.group(1))] = zgroup[p.name][...]
    width = max((rows.shape[1] for rows in parts.values()), default=2)
    index = np.full((n_images, width), -1, np.int64)
    for part, rows in parts.items():
        if len(rows):
            if rows.shape[1] != width:
                raise ValueError(f"{group}: parts wrote arrays of different dimensions")
            index[rows[:, 0], 0] = part
            index[rows[:, 0], 1:] = rows[:, 1:]
    zgroup.create_array("index", shape=index.shape, dtype=np.int64, chunks=index.shape if n_images else (1, width),
                        overwrite=True)[...] = index
    for part in parts:  # merged: two files fewer per part
        shutil.rmtree(group / f"index-{part}", ignore_errors=True)
    return np.flatnonzero(index[:, 0] < 0).tolist()


class PackedReader:
    """Reads image arrays back from a committed packed group (index loaded on first use)."""

    def __init__(self, group: Path) -> None:
        self.group = Path(group)
        self._index: np.ndarray | None = None
        self._parts: dict[int, zarr.Array] = {}

    def has(self, i: int) -> bool:
        return bool(self._rows()[i, 0] >= 0)

    def _rows(self) -> np.ndarray:
        if self._index is None:
            self._index = zarr.open_array(self.group / "index", mode="r")[...]
        return self._index

    def read(self, i: int) -> np.ndarray:
        row = self._rows()[i]
        part, offset, shape = int(row[0]), int(row[1]), tuple(int(s) for s in row[2:])
        if part < 0:
            raise KeyError(f"{self.group}: no array for image {i}")
        arr = self._parts.get(part)
        if arr is None:
            arr = self._parts[part] = zarr.open_array(self.group / f"part-{part}", mode="r")
        return arr[offset:offset + int(np.prod(shape))].reshape(shape)
