"""Shared fixtures: tiny generated data sets and projects (fast enough for 2 CPU cores)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spn_napari.data.readers import read_dataset
from spn_napari.data.synthetic import write_demo_dataset
from spn_napari.pipeline import run
from spn_napari.store import Project
from spn_napari.superpixels import SuperpixelConfig, compute_superpixels


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
    dst = tmp_path / "project"
    shutil.copytree(_sp_project, dst)
    return Project(dst)


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file's bytes under root (to prove a failed command changed nothing)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != ".lock"}
