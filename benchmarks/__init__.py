"""The benchmarks: one tool, ``python -m benchmarks`` (its registry in ``__main__.py``), over the
helpers in ``_shared.py``; docs/benchmarks.md gives each one's command and result."""
