"""One tool for every benchmark, run from the repository root.

    python -m benchmarks --list          every benchmark: its name, about how long it takes, what it measures
    python -m benchmarks NAME [options]  run benchmark NAME with its own options (NAME --help lists them)

Each benchmark is a script, ``benchmarks/NAME.py``, with its own argument parser; it runs here as
``python benchmarks/NAME.py [options]`` does (the same sys.argv, benchmarks/ on sys.path for its
``from _shared import …``), so the command its JSON records is that one, and reproduces it either way.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    # name: about how long its documented run takes on a 2-core CPU (docs/benchmarks.md, the JSON it wrote)
    "bench_100k": "about 20 minutes",
    "bench_dock_scale": "minutes (+1-2 min to build once)",
    "bench_feature_cache": "about 3 minutes",
    "bench_gui": "minutes (a round: ~4 min)",
    "bench_live_dock": "minutes",
    "bench_propagate_scale": "minutes",
    "bench_pseudo_memory": "minutes (not timed)",
    "bench_segment": "about a minute",
    "bench_sharded_inference": "a few minutes",
    "bench_sp_cam": "about a minute",
    "bench_store_scale": "minutes",
    "bench_suggest_scale": "minutes (+2 min to build once)",
    "bench_superpixel_pool": "a few minutes",
    "bench_train_throughput": "a few minutes",
    "effort_curves": "hours (about an hour a curve)",
    "evidence_ablation": "about 20 minutes",
    "live_round_blend": "about 20 minutes (a minute on an existing copy)",
    "predict_heldout": "about 75 minutes",
    "propagate_fit": "about 15 minutes (--iters 40)",
    "real_photos": "about 70 minutes",
    "round_views": "about 16 minutes",
    "spn_variants": "about an hour (not timed)",
    "suggest_fit": "minutes",
    "suggest_precision": "minutes",
}
"""Benchmark name (``benchmarks/NAME.py``) -> about how long its run takes on a 2-core CPU."""


def summary(name: str) -> str:
    """What benchmark ``name`` measures: its docstring's first paragraph, on one line (read from the
    source, nothing imported)."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def table() -> str:
    """The --list table: name, about how long, what it measures."""
    width = max(map(len, BENCHMARKS))
    time_width = max(map(len, BENCHMARKS.values()))
    rows = [f"{'name':{width}s}  {'2-core CPU':{time_width}s}  what it measures"]
    rows += [f"{name:{width}s}  {about:{time_width}s}  {summary(name)}" for name, about in BENCHMARKS.items()]
    return "\n".join(rows)


def run(name: str, args: list[str]) -> None:
    """Run ``benchmarks/NAME.py`` as ``python benchmarks/NAME.py ARGS`` would: its SystemExit passes."""
    script = HERE / f"{name}.py"
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--list"]:
        print(table())
        return 0
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.split("\n\n")[1])
        return 0
    if not args or args[0] not in BENCHMARKS:
        what = f"no benchmark {args[0]!r}" if args else "no benchmark given"
        print(f"python -m benchmarks: {what}; `python -m benchmarks --list` names them, "
              "`python -m benchmarks NAME --help` gives one's options.", file=sys.stderr)
        return 2
    run(args[0], args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
