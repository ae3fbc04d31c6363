"""Project store: import, reopen in another process, atomic commits, invalidation, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import tree_state
from spn_napari.data.images import load_image, load_mask
from spn_napari.data.readers import read_dataset
from spn_napari.errors import DatasetError, ProjectError
from spn_napari.pipeline import run
from spn_napari.store import FORMAT_VERSION, MANIFEST, PALETTE, Project, class_colors
from spn_napari.superpixels import SuperpixelConfig, compute_superpixels, superpixel_counts


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
        from spn_napari.store import Project
        p = Project({str(sp_project.root)!r})
        print(json.dumps({{"n": len(p), "classes": list(p.classes),
                          "sum": int(p.image(3).astype(np.int64).sum()),
                          "sp": int(p.read("superpixels", 3).max())}}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                    text=True).stdout)
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
    from spn_napari.store import Project
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
    assert proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reopened = Project(sp_project.root)
    for i in range(len(reopened)):
        assert (reopened.read("pseudo/sp-cam", i) == 1).all()


def test_killed_manifest_writer_leaves_a_readable_project(sp_project):
    for _ in range(3):
        proc = _start_writer(sp_project.root, "settings")
        assert proc.stdout.readline().strip() == "go"
        # let it commit a few times: wait until the counter moved, then kill at once
        while Project(sp_project.root).settings.get("counter", 0) < 5:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reopened = Project(sp_project.root)  # parses: never a half-written manifest
        assert reopened.settings["counter"] >= 5
        assert reopened.read("superpixels", 0).shape == reopened.image(0).shape[:2]


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


def test_not_a_project_and_newer_format(tmp_path, sp_project):
    with pytest.raises(ProjectError, match="not an spn-napari project"):
        Project(tmp_path)
    with pytest.raises(ProjectError, match="no such project"):
        Project(tmp_path / "nope")
    meta = json.loads((sp_project.root / MANIFEST).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (sp_project.root / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(ProjectError, match="newer"):
        Project(sp_project.root)


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


def test_a_format_1_project_opens_with_a_background_class(sp_project):
    """Projects made before the "background" key (format 1) keep opening, with background."""
    meta = json.loads((sp_project.root / MANIFEST).read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2 and meta["background"] is True
    del meta["background"]
    meta["format_version"] = 1
    (sp_project.root / MANIFEST).write_text(json.dumps(meta))
    p = Project(sp_project.root)
    assert p.has_background and p.label_names() == ["background", *p.classes]
    assert p.read("superpixels", 0).shape == p.image(0).shape[:2]
