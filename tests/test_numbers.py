"""Every number in a results table of the README and docs/*.md is in the JSON the table names, and
every measured number in a paragraph that names a JSON is in that JSON.

The rules, which the docs follow:

- **Which tables.** Every markdown table outside fenced code blocks. A table whose checked cells
  (below) hold no number needs nothing. A table that holds numbers but no measurements (a key
  map, the store's table list) carries ``<!-- numbers: not results -->`` on the line above it.
- **Its source.** The paragraph right above the table (the nearest non-blank lines, up to the
  blank line before them), or the table's own cells (a table of several benchmarks names each
  one's JSON in its row), name one or more ``benchmarks/results/NAME.json``; a table's numbers
  may come from any of them.
- **Checked cells.** Body rows only (the header row names columns), and not the first column,
  which names the row (a setting, a method); nor columns headed ``what``, ``command`` or
  ``chosen in the five folds``, which say what was measured, how, and which settings were picked. Numbers inside `code spans` are commands, not results.
- **A number matches** a JSON value when it is that value rounded to the digits the table shows
  (0.640 matches 0.6403, 12 matches 11.8, 1,131,818 matches 1131818), or the value × 100 (a
  percentage: 19 % matches 0.19), × 1000 or ÷ 1000 (seconds ↔ milliseconds, kB ↔ MB). Signs are
  ignored (−0.01 matches -0.0102). JSON values are its numbers, and the numbers written inside
  its keys and strings (a command's ``--images 60``, a key ``"20000"``). Seconds may also be
  written as minutes (÷ 60).
- **Paragraphs.** A paragraph or list item outside tables and fenced code is checked against the
  ``benchmarks/results/NAME.json`` files it names and those named anywhere in its section (from
  one heading to the next), for the numbers that look measured: those written with a decimal point or a thousands separator (0.623, 1,247, 1.06×).
  Plain integers in prose are mostly settings (3 rounds, 10 %, 355 photos) and are not checked;
  nor are targets (a number in the clause after "goal", or after ≤ ≥ < >) or version
  numbers (torch 2.13.0). A derived figure (a difference, a ratio of two results) has no JSON
  value of its own: write the two results instead, or have the script write the figure.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXEMPT = "<!-- numbers: not results -->"
SOURCE = re.compile(r"benchmarks/results/[a-z0-9_.-]+\.json")  # NAME.json is a placeholder
# a number not glued to a word ("fp32", "lite0", "v2" are names): 1,131,818 / 0.640 / 12
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w]|\.\d)")
CODE = re.compile(r"`[^`]*`")
SCALES = (1.0, 100.0, 1000.0, 0.001, 1 / 60)
SKIPPED_HEADERS = {"what", "command", "chosen in the five folds"}


@dataclass
class Table:
    """One markdown table: where it starts (1-based line), its header and body cells, the JSON files
    the paragraph above it names, and whether it is marked as holding no results."""
    line: int
    header: list[str]
    rows: list[list[str]]
    sources: list[str] = field(default_factory=list)
    exempt: bool = False


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def find_tables(text: str) -> list[Table]:
    """The markdown tables in ``text`` (fenced code blocks skipped), each with its sources."""
    lines = text.splitlines()
    tables, fenced, i = [], False, 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        is_table = (not fenced and lines[i].lstrip().startswith("|") and i + 1 < len(lines)
                    and re.fullmatch(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*", lines[i + 1]))
        if not is_table:
            i += 1
            continue
        start, j = i, i + 2
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            j += 1
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        exempt = above >= 0 and lines[above].strip() == EXEMPT
        paragraph = []
        while above >= 0 and lines[above].strip():
            paragraph.append(lines[above])
            above -= 1
        named = "\n".join(paragraph + lines[start + 2:j])
        tables.append(Table(start + 1, _cells(lines[start]), [_cells(r) for r in lines[start + 2:j]],
                            sorted(set(SOURCE.findall(named))), exempt))
        i = j
    return tables


def find_paragraphs(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line, text, its section's JSONs) of each paragraph and list item outside fenced code,
    tables and headings; a section runs from one heading to the next, and its JSONs are the
    ``benchmarks/results/*.json`` named anywhere in it (tables and code included)."""
    lines = text.splitlines()
    heads = [0, *(n for n, line in enumerate(lines) if line.startswith("#")), len(lines)]
    section = {n: sorted(set(SOURCE.findall("\n".join(lines[a:b])))) for a, b in zip(heads, heads[1:]) for n in range(a, b)}
    out, cur, start, fenced = [], [], 0, False
    for n, line in enumerate(lines, 1):
        fence = line.lstrip().startswith("```")
        fenced ^= fence
        item = re.match(r"\s*(?:[-*+]|\d+\.)\s", line)
        prose = not (fenced or fence or not line.strip() or line.lstrip().startswith(("|", "#")))
        if cur and (not prose or item):
            out.append((start, " ".join(cur), section[start - 1]))
            cur = []
        if prose:
            start = start if cur else n
            cur.append(line.strip())
    if cur:
        out.append((start, " ".join(cur), section[start - 1]))
    return out


TARGET = re.compile(r"(?:goal(?:(?![.;]\s).){0,60}|[≤≥<>]\s*[+−-]?)$", re.IGNORECASE)  # the text before a target


def measured_numbers(paragraph: str) -> list[tuple[float, int, str]]:
    """The numbers of a paragraph that look measured (decimal point or thousands separator),
    outside code spans, leaving out targets (see the module docstring)."""
    text = _plain(paragraph)
    return [_parsed(m) for m in NUMBER.finditer(text)
            if any(c in m.group(1) for c in ".,") and not TARGET.search(text[max(0, m.start() - 40):m.start()])]


def _plain(text: str) -> str:
    """``text`` without code spans (commands, not results) and bold markers."""
    return CODE.sub(" ", text).replace("**", "")


def _parsed(m: re.Match) -> tuple[float, int, str]:
    """(value, decimals shown, as written) of one NUMBER match."""
    raw = m.group(1)
    digits = raw.replace(",", "")
    return float(digits), len(digits.split(".")[1]) if "." in digits else 0, raw


def numbers_in(cell: str) -> list[tuple[float, int, str]]:
    """(value, decimals shown, as written) for each number in a cell, outside code spans."""
    return [_parsed(m) for m in NUMBER.finditer(_plain(cell))]


def json_values(obj) -> list[float]:
    """Every number in a parsed JSON document, and those written in its keys and strings."""
    if isinstance(obj, bool) or obj is None:
        return []
    if isinstance(obj, (int, float)):
        return [abs(float(obj))] if math.isfinite(obj) else []
    if isinstance(obj, str):
        return [v for v, _, _ in numbers_in(obj)]
    if isinstance(obj, dict):
        return [v for k, x in obj.items() for v in (*json_values(str(k)), *json_values(x))]
    if isinstance(obj, list):
        return [v for x in obj for v in json_values(x)]
    return []


def matches(value: float, decimals: int, values: list[float]) -> bool:
    """Whether ``value``, written with ``decimals`` digits, is one of ``values`` rounded so (or × 100,
    × 1000, ÷ 1000: see the module docstring)."""
    tol = 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12
    return any(abs(v * s - value) <= tol for v in values for s in SCALES)


def problems(md: Path, root: Path = ROOT) -> list[str]:
    """One line per untraceable number (or unnamed, missing source) in ``md``'s tables. A row that
    names JSON files of its own is checked against those alone; other rows against the table's."""
    out = []
    for t in find_tables(md.read_text(encoding="utf-8")):
        cols = [c for c, h in enumerate(t.header)
                if c > 0 and h.replace("*", "").strip().lower() not in SKIPPED_HEADERS]
        checked = [(row, [n for c in cols if c < len(row) for n in numbers_in(row[c])]) for row in t.rows]
        if t.exempt or not any(found for _, found in checked):
            continue
        where = f"{md.name}:{t.line}"
        if not t.sources:
            out.append(f"{where}: a table of results names no benchmarks/results/*.json in the paragraph above it "
                       f"(or mark it {EXEMPT!r} when it holds no measurements)")
            continue
        values: dict[str, list[float]] = {}
        for s in t.sources:
            if (root / s).is_file():
                values[s] = json_values(json.loads((root / s).read_text(encoding="utf-8")))
            else:
                out.append(f"{where}: {s} does not exist")
        for row, found in checked:
            sources = sorted(set(SOURCE.findall(" | ".join(row)))) or t.sources
            pool = [v for s in sources for v in values.get(s, [])]
            for value, decimals, raw in found:
                if pool and not matches(value, decimals, pool):
                    out.append(f"{where}: {raw} (row {row[0]!r}) is in none of {', '.join(sources)}")
    return out


def _values(source: str, root: Path, cache: dict) -> list[float] | None:
    """The numbers of one results JSON (None when it does not exist), read once per check."""
    if source not in cache:
        path = root / source
        cache[source] = json_values(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
    return cache[source]


def prose_problems(md: Path, root: Path = ROOT) -> list[str]:
    """One line per measured number of a paragraph found in none of the JSONs it or its section
    names. A named JSON that does not exist is left out (a paragraph may say what a command would
    write); a paragraph in a section that names none is not checked."""
    out, cache = [], {}
    for line, text, section in find_paragraphs(md.read_text(encoding="utf-8")):
        sources = sorted(set(SOURCE.findall(text)) | set(section))
        pools = {s: _values(s, root, cache) for s in sources}
        pool = [v for vs in pools.values() if vs for v in vs]
        out += [f"{md.name}:{line}: {raw} is in none of {', '.join(sources)}"
                for value, decimals, raw in (measured_numbers(text) if pool else []) if not matches(value, decimals, pool)]
    return out


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_number_in_a_results_table_is_in_its_json(md):
    assert problems(md) == []


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_measured_number_in_a_paragraph_is_in_the_json_its_section_names(md):
    assert prose_problems(md) == []


def test_the_check_fails_on_an_untraceable_number(tmp_path):
    """The checker itself, on a synthetic page: rounding as shown, the header and first column left
    alone, a number absent from the JSON, a table without a source, and the exemption marker."""
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps(
        {"cam": {"miou": 0.6403, "ms": 23.46}, "ratio": 0.19, "count": 1131818, "cmd": "run --images 60"}))
    md = tmp_path / "page.md"
    good = ("From `benchmarks/results/x.json`:\n\n| method (4 classes) | mIoU | time | share |\n|---|---|---|---|\n"
            "| CAM 7 | **0.640** | 23.5 ms, 0.0235 s | 19 % of 1,131,818, 60 |\n")
    md.write_text(good)
    assert problems(md, tmp_path) == []
    md.write_text(good.replace("0.640", "0.641"))
    assert problems(md, tmp_path) == ["page.md:3: 0.641 (row 'CAM 7') is in none of benchmarks/results/x.json"]
    md.write_text(good.replace("60 |", "61 |"))
    assert len(problems(md, tmp_path)) == 1
    md.write_text(good.replace("From `benchmarks/results/x.json`:", "Measured somewhere:"))
    assert "names no benchmarks/results" in problems(md, tmp_path)[0]
    (tmp_path / "benchmarks" / "results" / "y.json").write_text(json.dumps({"s": 2.5}))
    md.write_text(good + "| CAM 8 | 2.5 (`benchmarks/results/y.json`) | | |\n")
    assert problems(md, tmp_path) == []
    md.write_text(good + "| CAM 8 | 0.640 (`benchmarks/results/y.json`) | | |\n")
    assert problems(md, tmp_path) == ["page.md:3: 0.640 (row 'CAM 8') is in none of benchmarks/results/y.json"]
    md.write_text(good.replace("x.json", "gone.json"))
    assert problems(md, tmp_path) == ["page.md:3: benchmarks/results/gone.json does not exist"]
    md.write_text("| key | action |\n|---|---|\n| **Y** | accept (**1**–**9**: a tag) |\n")
    assert "names no benchmarks/results" in problems(md, tmp_path)[0]
    md.write_text(f"{EXEMPT}\n| key | action |\n|---|---|\n| **Y** | accept (**1**–**9**: a tag) |\n")
    assert problems(md, tmp_path) == []
    md.write_text("```\n| a | 3 |\n|---|---|\n| b | 4 |\n```\n| key | action |\n|---|---|\n| A | accept |\n")
    assert problems(md, tmp_path) == [] and len(find_tables(md.read_text())) == 1


def test_the_paragraph_check_fails_on_an_untraceable_number(tmp_path):
    """The paragraph rule on a synthetic page: measured numbers checked as in tables (minutes for
    seconds too), settings, targets and versions left alone, a section naming no JSON unchecked."""
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps({"miou": 0.6403, "s": 358.5, "clicks": 1247}))
    md = tmp_path / "page.md"
    good = ("# Results 1.5\n\n- Three rounds (`benchmarks/results/x.json`) reach **0.640** mIoU\n  in 6.0 min for 1,247 "
            "clicks, 3 rounds and 10 %\n  (goal: 0.70, ≤ 0.9 s; torch 2.13.0).\n\n"
            "```\nbenchmarks/results/x.json 0.111\n```\n\n## Other\n\n- An item says 0.555.\n")
    md.write_text(good)
    assert prose_problems(md, tmp_path) == []
    md.write_text(good.replace("0.640", "0.641"))
    assert prose_problems(md, tmp_path) == ["page.md:3: 0.641 is in none of benchmarks/results/x.json"]
    md.write_text(good.replace("1,247", "1,248").replace("6.0 min", "6.2 min"))
    assert [p.split(": ")[1] for p in prose_problems(md, tmp_path)] == ["6.2 is in none of benchmarks/results/x.json",
                                                                          "1,248 is in none of benchmarks/results/x.json"]
    md.write_text(good.replace("An item says", "An item (`benchmarks/results/x.json`) says"))
    assert prose_problems(md, tmp_path) == ["page.md:13: 0.555 is in none of benchmarks/results/x.json"]
    md.write_text(good.replace("## Other", "Still the first section."))  # its JSON covers the item
    assert prose_problems(md, tmp_path) == ["page.md:13: 0.555 is in none of benchmarks/results/x.json"]
