"""Artifact versions: a fresh name for each, the writer of one version of a per-image artifact,
and which artifacts a new version leaves stale. :class:`spn_napari.project.store.Project` commits them.

A version is written under its own name (a zarr group or a checkpoint file) and becomes visible
only when the project's manifest points at it, so a half-written version is never read.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from .pixels import PackedWriter

__all__ = ["ArtifactWriter", "drop_dependents", "new_version"]


def new_version(kind: str) -> str:
    """A fresh, unique version name of artifact ``kind`` (its zarr group or checkpoint file name)."""
    return f"{kind.replace('/', '-')}.{secrets.token_hex(4)}"


class ArtifactWriter:
    """Writes one version of a per-image artifact; ``commit()`` makes it current atomically.

    Made by :meth:`spn_napari.project.store.Project.writer`, which passes ``on_commit``: it makes this
    writer's ``version`` of ``kind`` current in the project's manifest, recording ``depends`` and
    ``meta`` as they are then (a job may add to ``meta`` while writing). Under torchrun each rank
    writes its own images into one version: every rank makes its writer with the same ``version``
    (rank 0's, broadcast) and ``part=rank``, calls ``finish()``, and once all have (a barrier)
    rank 0 calls :meth:`spn_napari.project.store.Project.commit_written`."""

    def __init__(self, zarr_root: Path, kind: str, *, on_commit: Callable[[ArtifactWriter], None],
                 depends: tuple[str, ...] = (), meta: dict | None = None, version: str | None = None,
                 part: int = 0) -> None:
        self.kind, self.depends, self.meta = kind, depends, meta if meta is not None else {}
        self.version = version or new_version(kind)
        self._group = zarr_root / self.version
        self._on_commit = on_commit
        zarr.open_group(zarr_root, mode="a").require_group(self.version)
        self._part = PackedWriter(self._group, part)

    def put(self, i: int, array: np.ndarray) -> None:
        self._part.put(i, array)

    def finish(self) -> None:
        """Write this writer's last values and index (its part of the version is then complete)."""
        self._part.close()

    def commit(self) -> None:
        """Finish and make the version current (every image must have been written)."""
        self.finish()
        self._on_commit(self)

    def abort(self) -> None:
        shutil.rmtree(self._group, ignore_errors=True)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def drop_dependents(arts: dict, changed: str) -> list[tuple[str, dict]]:
    """Remove (transitively) from manifest ``arts`` (kind → entry) every artifact computed from
    another version of ``changed``; returns the removed (kind, entry) pairs."""
    dropped, stale = [], {changed}

    def outdated(entry: dict) -> bool:
        return any(d in stale and arts.get(d, {}).get("version") != v for d, v in entry.get("depends", {}).items())

    while more := [k for k, e in arts.items() if outdated(e)]:
        for k in more:
            dropped.append((k, arts.pop(k)))
            stale.add(k)
    return dropped
