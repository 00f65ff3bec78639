"""Rules of the code base that a review would otherwise have to check by hand: only
core/model.py touches DLModel's underscore attributes, core/ imports no backend, model or
loss, and the modules of core/ import each other without a circle."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dlbatch"
SOURCES = [p for folder in ("dlbatch", "tests", "examples", "bench") for p in (ROOT / folder).rglob("*.py")]

# DLModel's private state; another object's attribute of the same name (e.g. a backend's own
# self._device) is reached through `self`, which this pattern leaves alone
MODEL_PRIVATE = re.compile(r"(?<!self)(?<!cls)\.(_hp|_values|_solver_state|_precision|_device|_backend_name|"
                           r"_backend|_table|_type|_programs|_place|_move|_commit_hp|_set_runtime|_shape)\b")


def test_no_module_outside_core_model_touches_dlmodel_private_state():
    offenders = []
    for path in SOURCES:
        if path == PACKAGE / "core" / "model.py" or path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if MODEL_PRIVATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use DLModel's public state API instead:\n" + "\n".join(offenders)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of dlbatch that `path` imports (relative imports resolved), as dotted names."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
            found.update([module] if node.module else [f"{module}.{a.name}" for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlbatch"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dlbatch"))
    return found


CORE = sorted((PACKAGE / "core").rglob("*.py"))


def test_core_imports_no_backend_model_or_loss():
    for path in CORE:
        bad = [m for m in _imports(path) if m.startswith(("dlbatch.backends", "dlbatch.models", "dlbatch.losses",
                                                           "dlbatch.data"))]
        assert not bad, f"{path.name} imports {bad}"


def test_core_modules_import_each_other_without_a_circle():
    graph = {}
    modules = {_module_name(p) for p in CORE}
    for path in CORE:
        name = _module_name(path)
        # "from . import x" names a module; "from .x import y" names x (y may be a function)
        deps = {m if m in modules else m.rpartition(".")[0] for m in _imports(path)}
        graph[name] = {m for m in deps if m in modules and m != name}
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", "import circle: " + " -> ".join(trail + [node])
        state[node] = "active"
        for dep in sorted(graph.get(node, ())):
            visit(dep, trail + [node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])
