"""What every benchmark shares: the machine it ran on, and how its results are written."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(path, res: dict) -> Path:
    """Write a benchmark's results as indented JSON at ``path`` (its folder made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    return path


def command_line() -> str:
    """How this benchmark was started (``python benchmarks/NAME.py ARGS``), recorded in its JSON so
    that a table copied from the JSON names the command that reproduces it."""
    script = Path(sys.argv[0])
    name = f"benchmarks/{script.name}" if script.parent.name == "benchmarks" else str(script)
    return " ".join(["python", name, *map(shlex.quote, sys.argv[1:])])
