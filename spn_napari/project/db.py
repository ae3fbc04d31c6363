"""A project's state in SQLite (``project.db``): classes, settings, images, review, corrections'
pointers, the artifact manifest and the rounds.

Why SQLite (the standard library's ``sqlite3``): every change is one small transaction that
touches its own rows, so saving a correction or a review costs the same at 200 images as at
100,000 (the JSON manifest it replaces was rewritten whole on every change), a process killed at
any instant leaves the last committed state (SQLite's journal), and the GUI and a training child
write the same project at once without losing either's writes (WAL mode, ``BEGIN IMMEDIATE``).

Tables::

    meta         key → JSON value: format, format_version, created, source, classes, colors,
                 background, settings, current_round, corrections_saved
    images       id (0-based index), name, height, width, tags (JSON list), has_gt, source,
                 review, correction (zarr group of the current correction, or NULL)
    artifacts    kind → version, location (JSON: {"group": ...} or {"file": ...}), created,
                 meta (JSON), depends (JSON: kind → version it was computed from)
    rounds       round → parent, created, record (JSON: model, config, seed, seconds, metrics)
    round_values (round, image) → uncertainty of the round's prediction of that image
                 (its confidence is 1 − uncertainty)

Pixels stay in zarr (see :mod:`spn_napari.project.store`); this module knows nothing about them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ProjectError

__all__ = ["DB_NAME", "SCHEMA", "ProjectDB", "create_db"]

DB_NAME = "project.db"
BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another process's transaction to end

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, height INTEGER NOT NULL, width INTEGER NOT NULL,
    tags TEXT NOT NULL, has_gt INTEGER NOT NULL, source TEXT,
    review TEXT NOT NULL DEFAULT 'unreviewed', correction TEXT);
CREATE INDEX images_review ON images (review, id);
CREATE TABLE artifacts (
    kind TEXT PRIMARY KEY, version TEXT NOT NULL, location TEXT NOT NULL, created REAL NOT NULL,
    meta TEXT NOT NULL, depends TEXT NOT NULL);
CREATE TABLE rounds (round INTEGER PRIMARY KEY, parent INTEGER, created REAL NOT NULL, record TEXT NOT NULL);
CREATE TABLE round_values (
    round INTEGER NOT NULL, image INTEGER NOT NULL, uncertainty REAL,
    PRIMARY KEY (round, image)) WITHOUT ROWID;
"""


JOURNAL_ENV = "SPN_NAPARI_DB_JOURNAL"  # "wal" (default) or "delete": for a project on a network filesystem


def journal_mode() -> str:
    """SQLite journal mode of project databases: WAL (readers never block the writer, nor it them),
    unless SPN_NAPARI_DB_JOURNAL=delete asks for the rollback journal, which works where WAL does
    not: a project that processes on several machines open over a network filesystem."""
    mode = os.environ.get(JOURNAL_ENV, "wal").lower()
    if mode not in ("wal", "delete"):
        raise ProjectError(f"{JOURNAL_ENV}={mode}: use wal (the default) or delete.")
    return mode


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA journal_mode={journal_mode()}")
    conn.execute("PRAGMA synchronous=FULL")  # a committed correction survives a power cut too
    return conn


def create_db(path: Path, meta: dict[str, Any], images: Iterable[dict]) -> None:
    """Write a new ``project.db`` at ``path`` (which must not exist) in one transaction."""
    conn = _connect(path)
    try:
        conn.execute("BEGIN")
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        conn.executemany(
            "INSERT INTO images (id, name, height, width, tags, has_gt, source, review, correction) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((i, d["name"], d["height"], d["width"], json.dumps(list(d["tags"])), int(d["has_gt"]),
              d.get("source"), d.get("review", "unreviewed"), d.get("correction"))
             for i, d in enumerate(images)))
        conn.execute("COMMIT")
    finally:
        conn.close()


_IMAGE_COLUMNS = ("review", "correction", "source")  # what changes per image after init


def _check_column(name: str) -> None:
    """Only known column names reach an SQL string (they cannot be bound as parameters)."""
    if name not in _IMAGE_COLUMNS:
        raise ValueError(name)


class ProjectDB:
    """One connection to a project's ``project.db``; every method is one query or one transaction.

    Safe to share between threads (one lock) and across ``fork`` (a child process opens its own
    connection on first use; SQLite connections must not cross a fork)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        try:
            self.meta("format")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ProjectError(f"{self.path}: not a readable project database ({exc}) — restore the file from a "
                               f"backup, or re-create the project with `spn-napari init`.") from None

    # ---- connection ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._pid = _connect(self.path), os.getpid()
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __getstate__(self) -> dict:  # a Project sent to a loader worker opens its own connection
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path, self._lock, self._conn, self._pid = state["path"], threading.RLock(), None, -1

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, args).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken at once (``BEGIN IMMEDIATE``: no other writer can slip in
        between this transaction's reads and writes), committed at the end, rolled back on error."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite itself rolls back on some errors (a full disk)
                    conn.execute("ROLLBACK")
                raise

    # ---- meta ------------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def all_meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.query("SELECT key, value FROM meta")}

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @staticmethod
    def get_meta(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ---- images ----------------------------------------------------------------------------
    def images(self) -> list[tuple]:
        """(name, height, width, tags, has_gt) of every image, in index order."""
        return [(n, h, w, tuple(json.loads(t)), bool(g))
                for n, h, w, t, g in self.query("SELECT name, height, width, tags, has_gt FROM images ORDER BY id")]

    def column(self, name: str) -> list:
        """One per-image column (``review``, ``correction``, ``source``) in index order."""
        _check_column(name)
        return [v for (v,) in self.query(f"SELECT {name} FROM images ORDER BY id")]

    def image_value(self, i: int, name: str) -> Any:
        _check_column(name)
        rows = self.query(f"SELECT {name} FROM images WHERE id = ?", (i,))
        if not rows:
            raise IndexError(i)
        return rows[0][0]

    def next_with_review(self, status: str, after: int) -> int | None:
        """Index of the first image after ``after`` (wrapping, ``after`` itself last) with ``status``."""
        for sql, args in (("id > ?", (after,)), ("id <= ?", (after,))):
            rows = self.query(f"SELECT id FROM images WHERE review = ? AND {sql} ORDER BY id LIMIT 1", (status, *args))
            if rows:
                return rows[0][0]
        return None

    # ---- reviews and corrections -------------------------------------------------------------
    @staticmethod
    def set_review(conn: sqlite3.Connection, i: int, status: str) -> None:
        conn.execute("UPDATE images SET review = ? WHERE id = ?", (status, i))

    @staticmethod
    def put_correction(conn: sqlite3.Connection, i: int, where: str, review: str | None) -> str | None:
        """Image i's correction is at ``where`` now (and its review ``review``, unless None); the
        corrections' counter moves on. Returns where the replaced correction was (None: none)."""
        (old,) = conn.execute("SELECT correction FROM images WHERE id = ?", (i,)).fetchone()
        conn.execute("UPDATE images SET correction = ?, review = COALESCE(?, review) WHERE id = ?", (where, review, i))
        ProjectDB._corrections_saved(conn)
        return old

    @staticmethod
    def reset_reviews(conn: sqlite3.Connection) -> list[str]:
        """Every image unreviewed and without a correction; returns where the corrections were."""
        old = [w for (w,) in conn.execute("SELECT correction FROM images WHERE correction IS NOT NULL")]
        conn.execute("UPDATE images SET review = 'unreviewed', correction = NULL")
        ProjectDB._corrections_saved(conn)
        return old

    @staticmethod
    def _corrections_saved(conn: sqlite3.Connection) -> None:
        ProjectDB.set_meta(conn, "corrections_saved", ProjectDB.get_meta(conn, "corrections_saved", 0) + 1)

    # ---- artifacts -------------------------------------------------------------------------
    @staticmethod
    def artifacts(conn: sqlite3.Connection) -> dict[str, dict]:
        """kind → {**location, version, created, meta, depends} of every committed artifact."""
        return {kind: {**json.loads(loc), "version": ver, "created": created, "meta": json.loads(meta),
                       "depends": json.loads(dep)}
                for kind, ver, loc, created, meta, dep in conn.execute(
                    "SELECT kind, version, location, created, meta, depends FROM artifacts")}

    @staticmethod
    def put_artifact(conn: sqlite3.Connection, kind: str, entry: dict) -> None:
        loc = {k: entry[k] for k in ("group", "file") if k in entry}
        conn.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                     (kind, entry["version"], json.dumps(loc), entry["created"], json.dumps(entry["meta"]),
                      json.dumps(entry["depends"])))

    @staticmethod
    def drop_artifacts(conn: sqlite3.Connection, kinds: list[str]) -> None:
        conn.executemany("DELETE FROM artifacts WHERE kind = ?", [(k,) for k in kinds])

    def read_artifacts(self) -> dict[str, dict]:
        with self._lock:
            return self.artifacts(self._db())

    # ---- rounds ----------------------------------------------------------------------------
    def rounds(self) -> list[dict]:
        return [{"round": r, "parent": p, "created": c, **json.loads(rec)}
                for r, p, c, rec in self.query("SELECT round, parent, created, record FROM rounds ORDER BY round")]

    @staticmethod
    def put_round(conn: sqlite3.Connection, entry: dict, uncertainty: list[float] | None) -> None:
        """Insert or replace a round's record and its per-image values."""
        record = {k: v for k, v in entry.items() if k not in ("round", "parent", "created", "uncertainty")}
        conn.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?)",
                     (entry["round"], entry.get("parent"), entry.get("created", 0.0), json.dumps(record)))
        conn.execute("DELETE FROM round_values WHERE round = ?", (entry["round"],))
        if uncertainty:
            conn.executemany("INSERT INTO round_values VALUES (?, ?, ?)",
                             ((entry["round"], i, float(u)) for i, u in enumerate(uncertainty)))

    def round_values(self, r: int) -> list[float | None]:
        return [u for (u,) in self.query("SELECT uncertainty FROM round_values WHERE round = ? ORDER BY image", (r,))]
