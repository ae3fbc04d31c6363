"""The package's layering, read from its source (ast; nothing is imported): no import cycles, no
import from a lower layer to a higher one, no private name taken from another module, no torch
in the dock's Qt code, and predicting a photo imports no training loop.

Imports inside functions count like the others. The layers are written out below, lowest first;
a new module gets a layer here, so where it sits is a decision, not an accident.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import spn_napari

PACKAGE = "spn_napari"
ROOT = Path(spn_napari.__file__).parent

LAYERS = {
    # 0 foundations: no import from the package (the subpackages' __init__ files hold a docstring only)
    "__init__": 0, "errors": 0, "events": 0, "project.kinds": 0, "metrics": 0, "evidence.cam": 0,
    "project.pixels": 0, "distributed": 0, "ops": 0, "colours": 0, "project.durable": 0, "json_lines": 0,
    "label_events": 0, "project": 0, "evidence": 0, "live": 0, "rounds": 0, "review": 0, "predict": 0,
    # 1 plain readers (data sets, images, canvas transforms), the database, progress, child commands
    "data": 1, "project.db": 1, "progress": 1, "job_progress": 1, "jobs": 1, "project.versions": 1,
    "project.format": 1.5,  # a new project from a data set (data/) in the database (project.db)
    # 2 the project store; the networks
    "project.store": 2, "models": 2,
    # 3 over the store: the feature cache, device and checkpoints, superpixels, evidence, the rounds' records,
    # the live head's labels as kept, imported corrections
    "evidence.features": 3, "runtime": 3, "evidence.superpixels": 3, "evidence.maps": 3, "review.corrections": 3,
    "project.history": 3, "project.live_labels": 3,
    # 4 which labels an image has; training batches; superpixel descriptors
    "labels": 4, "batches": 4, "evidence.descriptors": 4,
    # 5 scoring, suggestions, export, the annotator's core; the SPN's training loop; a round's net predicting;
    # what a simulated person's corrections cost
    "evaluate": 5, "review.suggest": 5, "review.effort": 5, "predict.export": 5, "review.annotator": 5, "train": 5,
    "rounds.predict": 5,
    # 6 SPN inference (pseudo-labels); refinement rounds; the live head
    "evidence.pseudo_labels": 6, "rounds.refine": 6, "live.head": 6,
    # 7 predicting photos; the demo recipe; the simulated annotator
    "predict.segmenter": 7, "pipeline": 7, "review.simulate": 7,
    # 8 the prediction and live propagation servers; napari's reader and sample data
    "predict.server": 8, "napari_io": 8, "live.server": 8,
    # 9 the dock (Qt)
    "_widgets": 9,
    # 10 the command line
    "cli": 10, "__main__": 11,
}
"""Module (or folder) -> layer. A module imports only from its own layer or lower ones."""

TRAINING = {f"{PACKAGE}.train", f"{PACKAGE}.batches", f"{PACKAGE}.rounds.refine"}
"""The training loops and what only they use."""

PREDICTING = (f"{PACKAGE}.predict.segmenter", f"{PACKAGE}.evidence.pseudo_labels", f"{PACKAGE}.predict.server",
              f"{PACKAGE}.napari_io")
"""Predicting a photo (Segmenter, the prediction server), the SPN's pseudo-labels, and napari's
reader and sample data (opened in the viewer's own process)."""


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a package's __init__ for a package)
    name: str | None  # the name taken from it (None: the module itself)
    line: int


def read_package(root: Path = ROOT, package: str = PACKAGE) -> dict[str, tuple[str, bool]]:
    """{dotted module name: (source, is a package)} of every .py file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join((package, *(parts[:-1] if is_package else parts)))
        out[name] = (path.read_text(encoding="utf-8"), is_package)
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def parse_imports(modules: dict[str, tuple[str, bool]]) -> tuple[list[Import], list[tuple[str, str, int]]]:
    """Every import between the package's modules, and every ``m._x`` on a module ``m`` bound by an
    import: (module, 'm._x', line). Imports anywhere count: module level, in functions, in classes."""
    imports, private_attributes = [], []
    for module, (source, is_package) in modules.items():
        tree = ast.parse(source)
        bound = {}  # local name -> a package module it names
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        imports.append(Import(module, alias.name, None, node.lineno))
                        if alias.asname:
                            bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:  # `from . import kinds`: the module itself
                        imports.append(Import(module, sub, None, node.lineno))
                        bound[alias.asname or alias.name] = sub
                    else:
                        imports.append(Import(module, base, alias.name, node.lineno))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and is_private(node.attr)):
                private_attributes.append((module, f"{node.value.id}.{node.attr}", node.lineno))
    return imports, private_attributes


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_of(module: str, layers: dict[str, int] = LAYERS) -> int:
    rest = module[len(PACKAGE) + 1:] if module != PACKAGE else "__init__"
    for key in (rest, rest.split(".")[0]):
        if key in layers:
            return layers[key]
    raise KeyError(f"{module}: no layer — give it one in LAYERS (tests/test_layering.py).")


def upward_imports(imports: list[Import], layers: dict[str, int] = LAYERS) -> list[str]:
    return [f"{i.source}:{i.line} imports {i.target} (layer {layer_of(i.target, layers)} > "
            f"{layer_of(i.source, layers)})"
            for i in imports if layer_of(i.target, layers) > layer_of(i.source, layers)]


def graph(imports: list[Import]) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for i in imports:
        if i.target != i.source:
            g.setdefault(i.source, set()).add(i.target)
    return g


def cycles(imports: list[Import]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    g, index, low, stack, on, out = graph(imports), {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def private_imports(imports: list[Import]) -> list[str]:
    return [f"{i.source}:{i.line} takes {i.name} from {i.target}" for i in imports
            if i.name is not None and is_private(i.name) and i.target != i.source]


def torch_in_widgets(modules: dict[str, tuple[str, bool]]) -> list[str]:
    found = []
    for module, (source, _) in modules.items():
        if not module.startswith(f"{PACKAGE}._widgets"):
            continue
        for node in ast.walk(ast.parse(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{module}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "torch"]
    return found


ADAPTER = f"{PACKAGE}._widgets.napari_adapter"  # the one module that may use napari's private names


def private_uses_outside_the_adapter(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """What ruff's SLF001 (``obj._name``) does not see, in the modules that touch napari (the dock,
    and any module importing napari or Qt) but the adapter: a private name reached by string
    (``getattr(obj, "_name")``, hasattr, setattr, on anything but self) and SLF001 silenced."""
    found = []
    for module, (source, _) in modules.items():
        gui = module.startswith(f"{PACKAGE}._widgets") or re.search(r"^\s*(from|import) (napari|qtpy)\b", source, re.M)
        if module == ADAPTER or not gui:
            continue
        found += [f"{module}:{n} silences SLF001" for n, line in enumerate(source.splitlines(), 1)
                  if "noqa: SLF001" in line]
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
                    and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                    and is_private(node.args[1].value)):
                found.append(f"{module}:{node.lineno} {node.func.id}(…, {node.args[1].value!r})")
    return found


def reachable(imports: list[Import], start: str) -> dict[str, str]:
    """{module: the module that first imports it} for every module ``start`` imports, directly or not."""
    g, seen, todo = graph(imports), {start: ""}, [start]
    while todo:
        v = todo.pop()
        for w in sorted(g.get(v, ())):
            if w not in seen:
                seen[w] = v
                todo.append(w)
    return seen


@pytest.fixture(scope="module")
def package():
    modules = read_package()
    imports, private_attributes = parse_imports(modules)
    return modules, imports, private_attributes


def test_every_module_has_a_layer(package):
    modules, _, _ = package
    missing = []
    for module in modules:
        try:
            layer_of(module)
        except KeyError as e:
            missing.append(str(e))
    assert not missing, "\n".join(missing)


def test_no_import_cycles(package):
    _, imports, _ = package
    assert cycles(imports) == []


def test_no_import_runs_up_the_layers(package):
    _, imports, _ = package
    assert upward_imports(imports) == []


def test_data_keeps_the_plain_readers(package):
    """data/ imports nothing but itself and the errors (the batch builders live in batches.py)."""
    _, imports, _ = package
    outside = {i.target for i in imports if i.source.startswith(f"{PACKAGE}.data.")
               and not i.target.startswith(f"{PACKAGE}.data")}
    assert outside <= {f"{PACKAGE}.errors"}


def test_no_private_name_is_taken_from_another_module(package):
    _, imports, private_attributes = package
    assert private_imports(imports) == []
    assert private_attributes == []


def test_no_torch_in_the_dock(package):
    modules, _, _ = package
    assert torch_in_widgets(modules) == []


def test_private_names_by_string_only_in_the_napari_adapter(package):
    modules, _, _ = package
    assert ADAPTER in modules and private_uses_outside_the_adapter(modules) == []


@pytest.mark.parametrize("start", PREDICTING)
def test_predicting_imports_no_training_loop(package, start):
    _, imports, _ = package
    via = reachable(imports, start)
    entered = {m: via[m] for m in TRAINING if m in via}
    assert not entered, f"{start} reaches the training loop: " + ", ".join(
        f"{m} (from {v})" for m, v in sorted(entered.items()))


@pytest.mark.parametrize("compute", [f"{PACKAGE}.evidence.pseudo_labels", f"{PACKAGE}.rounds.refine",
                                     f"{PACKAGE}.train", f"{PACKAGE}.live.head"])
def test_compute_steps_reach_no_review_code(package, compute):
    """The compute steps announce changed labels (spn_napari.label_events); they never import the
    review queue, the annotator or the simulated person."""
    _, imports, _ = package
    via = reachable(imports, compute)
    review = [m for m in via if m.startswith(f"{PACKAGE}.review")]
    assert not review, f"{compute} reaches " + ", ".join(f"{m} (from {via[m]})" for m in review)


def test_the_checks_find_what_they_look_for():
    """The checks on a made-up package: each rule broken once, and each is reported."""
    modules = {
        f"{PACKAGE}": ("", True),
        f"{PACKAGE}.errors": ("", False),
        f"{PACKAGE}.store": ("from .data import readers\nfrom . import kinds\n", False),
        f"{PACKAGE}.kinds": ("def f():\n    from .store import Project\n", False),  # a cycle through a function
        f"{PACKAGE}.data": ("", True),
        f"{PACKAGE}.data.readers": ("from ..store import _key\nimport spn_napari.errors as e\ne._hidden\n", False),
        f"{PACKAGE}._widgets": ("", True),
        f"{PACKAGE}._widgets.dock": ("import torch.nn\nfrom torch import Tensor\nfrom ..train import fit\n", False),
        f"{PACKAGE}.train": ("from .batches import collate\n", False),
        f"{PACKAGE}.batches": ("", False),
        f"{PACKAGE}.segmenter": ("def predict():\n    from ._widgets import dock\n", False),
        f"{PACKAGE}._widgets.panel": ("getattr(v, '_qt_window')\nhasattr(v, '__len__')\nv.window._w  # noqa: SLF001\n", False),
        ADAPTER: ("getattr(v, '_on_layers_change')  # noqa: SLF001\n", False),
    }
    layers = {"__init__": 0, "errors": 0, "kinds": 0, "data": 1, "store": 2, "batches": 3, "train": 4,
              "segmenter": 5, "_widgets": 6}
    assert private_uses_outside_the_adapter(modules) == [f"{PACKAGE}._widgets.panel:3 silences SLF001",
                                                          f"{PACKAGE}._widgets.panel:1 getattr(…, '_qt_window')"]
    imports, private_attributes = parse_imports(modules)
    assert {(i.source, i.target) for i in imports} >= {
        (f"{PACKAGE}.store", f"{PACKAGE}.data.readers"), (f"{PACKAGE}.store", f"{PACKAGE}.kinds"),
        (f"{PACKAGE}.kinds", f"{PACKAGE}.store"), (f"{PACKAGE}.data.readers", f"{PACKAGE}.store")}
    assert cycles(imports) == [[f"{PACKAGE}.data.readers", f"{PACKAGE}.kinds", f"{PACKAGE}.store"]]
    up = upward_imports(imports, layers)
    assert [u.split(" ")[0] for u in up] == [f"{PACKAGE}.kinds:2", f"{PACKAGE}.data.readers:1",
                                             f"{PACKAGE}.segmenter:2"]
    assert private_imports(imports) == [f"{PACKAGE}.data.readers:1 takes _key from {PACKAGE}.store"]
    assert private_attributes == [(f"{PACKAGE}.data.readers", "e._hidden", 3)]
    assert torch_in_widgets(modules) == [f"{PACKAGE}._widgets.dock:1 imports torch.nn",
                                         f"{PACKAGE}._widgets.dock:2 imports torch"]
    assert set(reachable(imports, f"{PACKAGE}.segmenter")) & TRAINING == {f"{PACKAGE}.train", f"{PACKAGE}.batches"}
    with pytest.raises(KeyError, match="no layer"):
        layer_of(f"{PACKAGE}.unplaced", layers)


def test_the_schemas_sql_is_in_project_db_alone(package):
    """One module (project/db.py) owns the database: no other one writes SQL."""
    modules, _, _ = package
    sql = re.compile(r"[\"'](SELECT|UPDATE|INSERT|DELETE FROM|CREATE TABLE|ALTER TABLE) ")  # a string opening with SQL
    outside = [m for m, (text, _) in modules.items() if m != f"{PACKAGE}.project.db" and sql.search(text)]
    assert outside == []


def test_the_module_map_names_every_module():
    """docs/method.md's module map names each module of the package (a subpackage's __init__,
    which holds its docstring alone, aside)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text(encoding="utf-8")
    start = doc.index("```\nspn_napari/")
    layout = doc[start:doc.index("```", start + 4)]
    unnamed = [str(p.relative_to(ROOT)) for p in sorted(ROOT.rglob("*.py"))
               if not (p.name == "__init__.py" and p.parent != ROOT)
               and not re.search(rf"(?<![\w.]){re.escape(p.name)}(?![\w])", layout)]
    assert unnamed == []
