"""``python -m benchmarks``: one tool over every benchmark script. Its --list names each script on
disk that has a ``main()`` (a new script without a registry entry fails here), an unknown name is
one line and exit 2, every benchmark answers --help, no script imports another, and
``write_results`` records how a result was made."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _scripts() -> set[str]:
    """benchmarks/NAME.py files with a top-level ``main()`` (helpers start with ``_``)."""
    out = set()
    for path in BENCH.glob("[!_]*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            out.add(path.stem)
    return out


def test_list_names_every_benchmark_script_on_disk():
    res = _tool("--list")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.strip().splitlines()
    assert header.split()[0] == "name"
    listed = [row.split()[0] for row in rows]
    assert sorted(listed) == sorted(_scripts())
    assert all(len(row.split()) > 3 for row in rows)  # a time and what it measures on each line


@pytest.mark.parametrize("args", [(), ("no_such_benchmark",), ("--no-such-option",)])
def test_no_or_unknown_name_is_one_line_and_exit_2(args):
    res = _tool(*args)
    assert res.returncode == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "--list" in res.stderr


def test_a_benchmark_runs_through_the_tool_with_its_own_options():
    res = _tool("suggest_precision", "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: suggest_precision.py")


def test_every_registered_benchmark_answers_help():
    """Each ``python -m benchmarks NAME --help`` through the tool's own main(), in one process (the
    scripts' imports of torch and Qt are paid once)."""
    driver = """
import contextlib, io, json
from benchmarks.__main__ import BENCHMARKS, main
out = {}
for name in BENCHMARKS:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = main([name, "--help"])
    except SystemExit as e:
        rc = e.code
    out[name] = [rc, buf.getvalue().startswith(f"usage: {name}.py")]
print("RESULT " + json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.rsplit("RESULT ", 1)[1])
    assert sorted(out) == sorted(_scripts())
    assert {name: v for name, v in out.items() if v != [0, True]} == {}


def test_no_benchmark_imports_another():
    """Scripts share helpers through benchmarks/_*.py modules only."""
    scripts = _scripts()
    taken = {}
    for path in BENCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            taken.update({(path.stem, n): True for n in names if n.split(".")[0] in scripts})
    assert list(taken) == []


def test_write_results_records_command_commit_machine_and_threads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from _shared import commit, write_results

    monkeypatch.setattr(sys, "argv", [str(BENCH / "bench_sp_cam.py"), "--threads", "1"])
    path = write_results(tmp_path / "sub" / "r.json", {"value": 1.5})
    res = json.loads(path.read_text())
    assert res["value"] == 1.5
    assert res["command"] == "python benchmarks/bench_sp_cam.py --threads 1"
    assert set(res["machine"]) == {"cpu", "cores"} and res["machine"]["cores"] >= 1
    assert isinstance(res["threads"], int) and res["threads"] >= 1
    git = shutil.which("git") and subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert res["commit"] == commit() == (git.stdout.strip() if git and git.returncode == 0 else None)
    kept = json.loads(write_results(tmp_path / "k.json", {"command": "as given", "threads": 3}).read_text())
    assert (kept["command"], kept["threads"]) == ("as given", 3)  # what a benchmark recorded is kept


def test_write_results_records_no_commit_without_git(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _shared

    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    res = json.loads(_shared.write_results(tmp_path / "r.json", {}).read_text())
    assert res["commit"] is None and "command" in res
