"""Project store: import, reopen in another process, atomic commits, invalidation, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from spn_napari.colours import PALETTE, class_colors
from spn_napari.data.images import load_image, load_mask
from spn_napari.data.readers import read_dataset
from spn_napari.errors import DatasetError, ProjectError
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels, superpixel_counts
from spn_napari.pipeline import run
from spn_napari.project.db import DB_NAME
from spn_napari.project.format import FORMAT_VERSION, MANIFEST
from spn_napari.project.store import Project

from conftest import read_line, tree_state


def test_import_keeps_pixels_tags_and_ground_truth_apart(tmp_path, demo_dir):
    ds = read_dataset(demo_dir)
    project = Project.create(tmp_path / "p", ds)
    assert project.classes == ds.classes and len(project) == len(ds.items)
    for i, item in enumerate(ds.items):
        np.testing.assert_array_equal(project.image(i), load_image(item.image_path))
        np.testing.assert_array_equal(project.ground_truth(i), load_mask(item.mask_path))
        assert project.images[i].tags == item.tags
    expected = np.zeros((len(ds.items), len(ds.classes)), np.float32)
    for i, item in enumerate(ds.items):
        expected[i, list(item.tags)] = 1
    np.testing.assert_array_equal(project.tag_matrix(), expected)
    # ground truth lives in its own group, never among the artifacts training reads
    assert project.artifact("gt") is None and (project.root / "data.zarr" / "gt").is_dir()


def test_project_reopens_in_a_new_process(sp_project):
    code = textwrap.dedent(f"""
        import json, numpy as np
        from spn_napari.project.store import Project
        p = Project({str(sp_project.root)!r})
        print(json.dumps({{"n": len(p), "classes": list(p.classes),
                          "sum": int(p.image(3).astype(np.int64).sum()),
                          "sp": int(p.read("superpixels", 3).max())}}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                    text=True, timeout=120).stdout)
    assert out == {"n": len(sp_project), "classes": list(sp_project.classes),
                   "sum": int(sp_project.image(3).astype(np.int64).sum()),
                   "sp": int(sp_project.read("superpixels", 3).max())}


def test_superpixels_are_compact_and_recompute_drops_dependents(sp_project):
    for i in range(len(sp_project)):
        sp = sp_project.read("superpixels", i)
        assert sp.dtype == np.int32 and sp.shape == sp_project.image(i).shape[:2]
        assert np.array_equal(np.unique(sp), np.arange(sp.max() + 1))  # 0..N-1, all used
    assert superpixel_counts(sp_project) == [int(sp_project.read("superpixels", i).max()) + 1
                                             for i in range(len(sp_project))]
    sp_project.commit_file("spn", b"weights", suffix=".pt", depends=("superpixels",))
    with sp_project.writer("pseudo/sp-cam", depends=("superpixels", "spn")) as w:
        for i in range(len(sp_project)):
            w.put(i, np.zeros(sp_project.image(i).shape[:2], np.uint8))
    old_group = sp_project.artifact("superpixels")["group"]
    run(compute_superpixels(sp_project, SuperpixelConfig(n_segments=20), workers=1))
    assert sp_project.artifact("spn") is None and sp_project.artifact("pseudo/sp-cam") is None
    assert not (sp_project.root / "data.zarr" / old_group).exists()
    assert Project(sp_project.root).settings["superpixels"]["n_segments"] == 20


def test_stopping_superpixels_early_keeps_the_old_version(sp_project):
    before = sp_project.artifact("superpixels")
    events = compute_superpixels(sp_project, SuperpixelConfig(n_segments=25), workers=1)
    next(events)
    events.close()  # cancel
    assert Project(sp_project.root).artifact("superpixels") == before


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from spn_napari.project.store import Project
    p = Project(sys.argv[1])
    mode = sys.argv[2]
    if mode == "artifact":  # write a new version slowly; announce when half-way
        w = p.writer("pseudo/sp-cam", depends=("superpixels",))
        for i in range(len(p)):
            w.put(i, np.full(p.images[i].height * p.images[i].width, 2, np.uint8)
                  .reshape(p.images[i].height, p.images[i].width))
            if i == len(p) // 2:
                print("half", flush=True)
                sys.stdin.readline()  # blocks until the parent kills us
        w.commit()
    elif mode == "corrections":  # save corrections of image 0 in a tight loop, value k on round k
        h, w = p.images[0].height, p.images[0].width
        print("go", flush=True)
        k = 0
        while True:
            k = k % 250 + 1
            p.save_correction(0, np.full((h, w), 1 + k % 3, np.uint8), np.ones((h, w), bool), review="reviewed")
            p.set_settings(saved=k)
    elif mode == "gui":  # what the dock does: corrections and reviews of images 0..4
        for i in range(5):
            h, w = p.images[i].height, p.images[i].width
            p.save_correction(i, np.full((h, w), 1 + i % 3, np.uint8), np.eye(h, w, dtype=bool), review="reviewed")
            p.set_review(i + 5, "rejected")
    elif mode == "child":  # what a training child does: artifacts, settings, a round
        for k in range(5):
            with p.writer(f"cams/test{k}", depends=("superpixels",)) as w:
                for i in range(len(p)):
                    w.put(i, np.full((2, 2), k, np.float32))
            p.set_settings(**{f"child{k}": k})
        p.add_round({"round": 0, "parent": None, "created": 0.0, "metrics": {}}, [0.5] * len(p))
    else:  # commit settings in a tight loop; the parent kills us at an arbitrary instant
        print("go", flush=True)
        k = 0
        while True:
            k += 1
            p.set_settings(counter=k, padding="x" * 20000)
""")


def _start_writer(root: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(root), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_killed_artifact_writer_leaves_last_committed_state(sp_project):
    with sp_project.writer("pseudo/sp-cam", depends=("superpixels",)) as w:
        for i in range(len(sp_project)):
            w.put(i, np.ones(sp_project.image(i).shape[:2], np.uint8))
    proc = _start_writer(sp_project.root, "artifact")
    assert read_line(proc).strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    reopened = Project(sp_project.root)
    for i in range(len(reopened)):
        assert (reopened.read("pseudo/sp-cam", i) == 1).all()


def _kill_once_committed(root: Path, mode: str, counter: str, at_least: int) -> None:
    """Start a looping writer, let it commit until setting ``counter`` reaches ``at_least``, then
    SIGKILL it at once (an arbitrary instant of its loop)."""
    proc = _start_writer(root, mode)
    assert read_line(proc).strip() == "go"
    deadline = time.monotonic() + 120  # a writer that stopped committing fails the test, not hangs it
    while Project(root).settings.get(counter, 0) < at_least:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"the {mode} writer committed no {counter} >= {at_least} within 120 s "
                        f"(exit status {proc.poll()})")
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)


def test_killed_manifest_writer_leaves_a_readable_project(sp_project):
    for _ in range(3):
        _kill_once_committed(sp_project.root, "settings", "counter", 5)
        reopened = Project(sp_project.root)  # parses: never a half-written manifest
        assert reopened.settings["counter"] >= 5
        assert reopened.read("superpixels", 0).shape == reopened.image(0).shape[:2]


def test_killed_correction_writer_leaves_a_whole_correction(sp_project):
    """SIGKILL at an arbitrary instant of a save loop: image 0 keeps a whole correction (labels and
    set mask of one save), its review, and every transaction committed before the kill."""
    _kill_once_committed(sp_project.root, "corrections", "saved", 3)
    p = Project(sp_project.root)
    labels, set_mask = p.correction(0)
    assert set_mask.all() and len(np.unique(labels)) == 1 and 1 <= labels[0, 0] <= 3
    assert p.review(0) == "reviewed" and p.corrected()[0] and p.settings["saved"] >= 3
    assert p.read("superpixels", 0).shape == p.image(0).shape[:2]


def test_the_gui_and_a_training_child_write_at_once_without_losing_either(sp_project):
    """Two processes commit into one project at the same time (corrections and reviews against
    artifacts, settings and a round): every write of both is there afterwards."""
    procs = [_start_writer(sp_project.root, mode) for mode in ("gui", "child")]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    p = Project(sp_project.root)
    for i in range(5):
        labels, set_mask = p.correction(i)
        assert (labels[set_mask] == 1 + i % 3).all() and set_mask.sum() == min(labels.shape)
        assert p.review(i) == "reviewed" and p.review(i + 5) == "rejected"
    assert all(p.artifact(f"cams/test{k}") is not None for k in range(5))
    assert all(p.settings[f"child{k}"] == k for k in range(5))
    assert p.current_round() == 0 and len(p.round_uncertainty(0)) == len(p)


def test_init_onto_existing_project_changes_nothing(sp_project, demo_dir):
    before = tree_state(sp_project.root)
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(sp_project.root, read_dataset(demo_dir))
    assert tree_state(sp_project.root) == before


def test_failed_import_leaves_no_project(tmp_path, demo_dir):
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(demo_dir, bad)
    victim = sorted((bad / "images").iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated PNG
    ds = read_dataset(bad)
    with pytest.raises(DatasetError, match=victim.name):
        Project.create(tmp_path / "p", ds)
    assert not (tmp_path / "p").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]  # no temporary folder left behind


def _set_meta(root: Path, key: str, value) -> None:
    with sqlite3.connect(root / DB_NAME) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))


def test_not_a_project_and_newer_format(tmp_path, sp_project):
    with pytest.raises(ProjectError, match="not an spn-napari project"):
        Project(tmp_path)
    with pytest.raises(ProjectError, match="no such project"):
        Project(tmp_path / "nope")
    _set_meta(sp_project.root, "format_version", FORMAT_VERSION + 1)
    with pytest.raises(ProjectError, match=f"{DB_NAME}: project format {FORMAT_VERSION + 1} is newer.*upgrade"):
        Project(sp_project.root)


def test_a_project_db_that_is_not_a_database_is_one_line(sp_project, capsys):
    db = sp_project.root / DB_NAME
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"these are not the bytes of an SQLite database" * 100)
    before = tree_state(sp_project.root)
    with pytest.raises(ProjectError, match=f"{db}: not a readable project database .* backup"):
        Project(sp_project.root)
    from spn_napari.cli import main
    code = main(["history", str(sp_project.root)])
    err = capsys.readouterr().err
    assert code == 2 and str(db) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert tree_state(sp_project.root) == before


def test_sweep_removes_orphans_only(sp_project):
    w = sp_project.writer("cams/cam")
    w.put(0, np.zeros((2, 2), np.float32))  # never committed: a crashed writer's leftovers
    orphan = sp_project.root / "data.zarr" / w.version
    old = os.path.getmtime(orphan) - 7200
    os.utime(orphan, (old, old))
    live = sp_project.root / "data.zarr" / sp_project.artifact("superpixels")["group"]
    os.utime(live, (old, old))
    assert w.version in sp_project.sweep()
    assert not orphan.exists() and live.exists()


def _rgb(col: str) -> np.ndarray:
    return np.array([int(col[k:k + 2], 16) for k in (1, 3, 5)], np.float64)


@pytest.mark.parametrize("n", [1, 20, 21, 80, 254])
def test_class_colors_are_distinct_for_any_number_of_classes(n):
    cols = class_colors(n)
    assert len(cols) == n and len(set(cols)) == n
    assert cols[:20] == PALETTE[:n]  # existing projects keep their colours
    rgb = np.stack([_rgb(c) for c in cols])
    assert all(len(c) == 7 and c.startswith("#") for c in cols)
    new = rgb[20:]
    assert ((new.sum(1) > 3 * 30) & (new.sum(1) < 3 * 225)).all()  # never (near) black or white
    if n == 80:  # COCO: every new colour at least as far from every other as PALETTE's closest pair
        dist = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1)) + np.eye(n) * 1e9
        palette_min = dist[:20, :20].min()
        assert dist[20:].min() >= palette_min
    assert class_colors(n) == cols  # deterministic


FORMAT_1 = Path(__file__).parent / "fixtures" / "format1_project"


def test_a_format_1_project_is_migrated_on_open(tmp_path):
    """A project made by the JSON-manifest store (format 1: no "background" key) opens with every
    piece of its state moved into project.db, and its manifest kept as project.json.bak."""
    root = tmp_path / "old"
    shutil.copytree(FORMAT_1, root)
    manifest = json.loads((root / MANIFEST).read_text())
    p = Project(root)
    assert (root / DB_NAME).is_file() and not (root / MANIFEST).exists()
    assert json.loads((root / f"{MANIFEST}.bak").read_text()) == manifest  # the backup, unchanged
    assert p.has_background and p.classes == tuple(manifest["classes"]) and p.colors == tuple(manifest["colors"])
    assert [im.name for im in p.images] == [im["name"] for im in manifest["images"]]
    assert [im.tags for im in p.images] == [tuple(im["tags"]) for im in manifest["images"]]
    assert p.reviews() == ["unreviewed", "reviewed", "rejected"] and p.settings == {"note": "format-1 fixture"}
    labels, set_mask = p.correction(1)
    assert set_mask[:4].all() and not set_mask[4:].any() and (labels[:4] == 2).all()
    assert p.correction(0) is None and p.corrected() == [False, True, False]
    assert p.artifact("pseudo/sp-cam")["depends"] == {"superpixels": p.artifact("superpixels")["version"]}
    assert all((p.read("pseudo/sp-cam", i) == 1 + i % 2).all() for i in range(3))
    assert [(r["round"], r["parent"], r["metrics"]["miou"]) for r in p.rounds()] == [(0, None, 0.5), (1, 0, 0.6)]
    assert "uncertainty" not in p.rounds()[1] and p.current_round() == 1
    np.testing.assert_allclose(p.round_uncertainty(1), [0.1, 0.2, 0.3])
    assert p.round_uncertainty(0) is None
    shape = p.image(0).shape[:2]
    p.save_correction(0, np.full(shape, 3, np.uint8), np.ones(shape, bool))  # and it keeps working
    assert Project(root).correction(0)[0].max() == 3


def test_a_migration_killed_halfway_leaves_the_old_project(tmp_path, monkeypatch):
    root = tmp_path / "old"
    shutil.copytree(FORMAT_1, root)
    real_replace = os.replace

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        Project(root)
    assert (root / MANIFEST).is_file() and not (root / DB_NAME).exists()
    assert not [q for q in root.iterdir() if "migrating" in q.name]  # no half-built database left
    monkeypatch.setattr(os, "replace", real_replace)
    assert Project(root).reviews() == ["unreviewed", "reviewed", "rejected"]


def test_a_full_disk_during_a_correction_keeps_the_last_saved_one(sp_project, monkeypatch, capsys):
    """ENOSPC while the correction's pixels are written: one line, the previous correction and
    review stay, no half-written group is left."""
    import errno

    import zarr
    h, w = sp_project.image(2).shape[:2]
    first = np.full((h, w), 2, np.uint8)
    sp_project.save_correction(2, first, np.ones((h, w), bool), review="reviewed")
    before = tree_state(sp_project.root / "data.zarr")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(zarr.Group, "create_array", full)
    with pytest.raises(ProjectError, match=f"could not save the correction of {sp_project.images[2].name}.*"
                                           f"No space left.*free disk space"):
        sp_project.save_correction(2, np.full((h, w), 3, np.uint8), np.ones((h, w), bool), review="rejected")
    monkeypatch.undo()
    p = Project(sp_project.root)
    np.testing.assert_array_equal(p.correction(2)[0], first)
    assert p.review(2) == "reviewed" and tree_state(sp_project.root / "data.zarr") == before


def test_a_full_database_keeps_the_last_committed_state(sp_project, monkeypatch):
    """SQLite's own "database or disk is full" (a page limit stands in for the disk): the
    transaction is rolled back and reported in one line."""
    from spn_napari.project import db as project_db
    sp_project.set_settings(kept=1)
    real = project_db._connect

    def small(path):
        conn = real(path)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn
    monkeypatch.setattr(project_db, "_connect", small)
    p = Project(sp_project.root)
    with pytest.raises(ProjectError, match="could not save the settings .*full.*free disk space"):
        p.set_settings(big="x" * 200_000)
    monkeypatch.undo()
    assert Project(sp_project.root).settings == {**sp_project.settings, "kept": 1}


def test_review_and_correction_queries_match_a_naive_loop(sp_project):
    n = len(sp_project)
    for i, status in ((1, "reviewed"), (4, "rejected"), (7, "reviewed")):
        sp_project.set_review(i, status)
    reviews = [sp_project.review(i) for i in range(n)]
    assert sp_project.reviews() == reviews
    for status in ("unreviewed", "reviewed", "rejected"):
        for after in range(n):
            naive = next(((after + k) % n for k in range(1, n + 1) if reviews[(after + k) % n] == status), None)
            assert sp_project.next_with_review(status, after) == naive
    assert sp_project.next_with_review("reviewed", 7) == 1 and sp_project.next_with_review("rejected", 4) == 4
    with pytest.raises(ProjectError, match="no image 99"):
        sp_project.set_review(99, "reviewed")


def test_the_rollback_journal_for_network_filesystems(sp_project, monkeypatch):
    """SPN_NAPARI_DB_JOURNAL=delete: the database leaves WAL for the rollback journal (what works
    over a network filesystem) and the project keeps working; a wrong value is one line."""
    monkeypatch.setenv("SPN_NAPARI_DB_JOURNAL", "delete")
    sp_project.close()  # the mode is set when a connection opens
    p = Project(sp_project.root)
    p.set_review(3, "reviewed")
    with sqlite3.connect(sp_project.root / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert Project(sp_project.root).review(3) == "reviewed"
    monkeypatch.setenv("SPN_NAPARI_DB_JOURNAL", "journal")
    with pytest.raises(ProjectError, match="SPN_NAPARI_DB_JOURNAL=journal: use wal"):
        Project(sp_project.root)
