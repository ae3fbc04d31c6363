"""Shared fixtures: tiny generated data sets and projects (fast enough for 2 CPU cores)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from spn_napari.cli import main
from spn_napari.data.readers import read_dataset
from spn_napari.data.synthetic import write_demo_dataset
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.pipeline import run
from spn_napari.project.store import Project


def pytest_sessionstart(session) -> None:
    """Under CI=true a missing napari or Qt binding fails the run: the GUI tests would otherwise
    skip, and a CI without the plugin's dependencies would go quietly green."""
    if os.environ.get("CI", "").lower() != "true":
        return
    missing = [m for m in ("napari", "qtpy", "PyQt6", "magicgui") if not _imports(m)]
    if missing:
        raise pytest.UsageError(f"CI=true but {', '.join(missing)} not installed or not importable: the GUI "
                                f"tests would be skipped — run `bash scripts/setup.sh` (it installs .[test]).")


def _imports(module: str) -> bool:
    """Whether ``module`` is installed and imports (an installed napari that fails to import would
    make ``pytest.importorskip`` skip the GUI tests as quietly as a missing one)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 — any import failure counts as missing
        return False
    return True


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A 10-image generated data set (generic layout, with masks), ~64 px."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n=10, size=64, seed=3)


@pytest.fixture(scope="session")
def _sp_project(tmp_path_factory, demo_dir) -> Path:
    root = tmp_path_factory.mktemp("proj") / "project"
    project = Project.create(root, read_dataset(demo_dir))
    run(compute_superpixels(project, SuperpixelConfig(n_segments=40), workers=1))
    return root


@pytest.fixture
def sp_project(_sp_project, tmp_path) -> Project:
    """A fresh copy of a project with superpixels, for tests that write to it."""
    return _copy_project(_sp_project, tmp_path / "project")


def _copy_project(src: Path, dst: Path) -> Project:
    shutil.copytree(src, dst)
    return Project(dst)


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file's bytes under root (to prove a failed command changed nothing); a project's
    database by its content (SQLite's journal files and page layout change on mere reads)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == ".lock" or p.name.endswith(("-wal", "-shm")):
            continue
        out[str(p.relative_to(root))] = _db_content(p) if p.name == "project.db" else p.read_bytes()
    return out


def _db_content(path: Path) -> bytes:
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return "\n".join(db.iterdump()).encode()
    except sqlite3.DatabaseError:  # not a database (a test made it so): its bytes
        return path.read_bytes()


def read_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The next line of ``proc``'s stdout (a text pipe), or the test fails after ``timeout`` seconds
    (a child that hangs or dies silently must not hang the suite)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"no line from the child within {timeout} s (exit status {proc.poll()})")
    return proc.stdout.readline()


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own exits
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    """Exit 2, exactly one stderr line starting 'spn-napari: error:' that names every needle."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spn-napari: error: ") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="session")
def _labelled_project(tmp_path_factory, _sp_project) -> Path:
    """A project with a 1-epoch SPN and SP-CAM + CAM pseudo-labels."""
    from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
    from spn_napari.train import TrainConfig, train_spn
    root = tmp_path_factory.mktemp("labelled") / "project"
    project = _copy_project(_sp_project, root)
    run(train_spn(project, TrainConfig(epochs=1, batch_size=4, device="cpu", encoder="small")))  # plumbing, fast
    for method in ("cam", "sp-cam"):
        run(make_pseudo_labels(project, PseudoLabelConfig(method=method, device="cpu")))
    return root


@pytest.fixture
def labelled_project(_labelled_project, tmp_path) -> Project:
    """A fresh copy of a project with an SPN and pseudo-labels, for tests that write to it."""
    return _copy_project(_labelled_project, tmp_path / "labelled")


@pytest.fixture(scope="session")
def _round_project(tmp_path_factory, _labelled_project) -> Path:
    """The labelled project after one 1-epoch CPU refinement round (small sides): every image has a
    round's labels and confidence. Shared: read it, or copy it before writing."""
    from spn_napari.rounds.refine import RoundConfig, run_round
    root = tmp_path_factory.mktemp("round") / "project"
    project = _copy_project(_labelled_project, root)
    run(run_round(project, RoundConfig(epochs=1, batch_size=4, device="cpu", scales=(48, 64))))
    return root


def open_dock(viewer, root, image: int = 0, *, propagate: bool = False):
    """The SPN annotator dock in ``viewer``, showing project ``root``'s image ``image``; with its
    Propagate switch off unless ``propagate`` (a test of the live head turns it on: elsewhere its
    child would relabel the photos a test checks, on the CI's two cores)."""
    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    w = AnnotatorWidget(viewer)
    w.propagate.setChecked(propagate)
    viewer.window.add_dock_widget(w)
    assert w.open_project(root, image=image)
    return w


@pytest.fixture
def widget(make_napari_viewer, labelled_project):
    """The dock on a fresh labelled project, image 0 (the GUI tests' modules skip without napari)."""
    w = open_dock(make_napari_viewer(), labelled_project.root)
    yield w
    w.timer.stop()


def click_row(widget, qtbot, row: int) -> None:
    """Click the image list's ``row`` where a person would: on the view, scrolled into sight."""
    from qtpy.QtCore import Qt
    t = widget.table
    widget.viewer.window.show()
    index = widget.image_list.index(row, 0)
    t.scrollTo(index)
    qtbot.waitUntil(lambda: t.viewport().rect().contains(t.visualRect(index).center()))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=t.visualRect(index).center())
