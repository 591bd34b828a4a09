"""The shape a newcomer can carry on: small modules and functions, layers that import downward only,
no private names across modules, settings read from the environment in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "prune_dagster"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Where PRUNE_* environment variables may be read: the settings module (defaults at the edge) and the CLI.
ENV_READERS = {"settings.py", "cli.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import of a prune_dagster module, anywhere in the file."""
    out = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prune_dagster"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("prune_dagster")]
    return out


def top_level_imports(path: Path) -> set[str]:
    """prune_dagster modules imported at module level (what can form an import cycle)."""
    known = {module_name(p) for p in MODULES}
    out = set()
    for node in tree(path).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prune_dagster"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("prune_dagster")}
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {n} lines (at most {MAX_MODULE_LINES})"


def test_functions_are_short():
    long = []
    for path in MODULES:
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_no_private_name_imported_across_modules():
    bad = [f"{path.relative_to(PACKAGE)}: from {mod} import {name}"
           for path in MODULES for mod, names in imported_modules(path) for name in names
           if name.startswith("_") and not name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_core_never_imports_dagster_or_upward():
    bad = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for node in ast.walk(tree(path)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] == "dagster" or (name.startswith("prune_dagster.")
                                                        and not name.startswith("prune_dagster.core")):
                    bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {module_name(p): top_level_imports(p) for p in MODULES}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt in graph and not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if not state.get(name):
            visit(name, [name])
    # A package's __init__ importing its own submodules is not a cycle worth naming.
    cycles = [c for c in cycles if not all(m.startswith(c[0]) or c[0].startswith(m) for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_environment_read_in_one_place():
    bad = []
    for path in MODULES:
        if path.name in ENV_READERS and path.parent in (PACKAGE,):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "PRUNE_" in line and ("environ" in line or "getenv" in line or "EnvVar" in line):
                bad.append(f"{path.relative_to(PACKAGE)}:{lineno}: {line.strip()}")
    assert not bad, "PRUNE_* read outside prune_dagster/settings.py and cli.py:\n" + "\n".join(bad)


# The one module allowed to import Dagster internals (defs/dagster_internals.py says why).
DAGSTER_INTERNALS = PACKAGE / "defs" / "dagster_internals.py"


def dagster_internal_imports(path: Path) -> list[str]:
    """Every `dagster._…` module a file imports, and every `dagster` attribute it reads that starts with `_`
    or is `dagster_internal_init` (internals reached through the public package)."""
    out = []
    for node in ast.walk(tree(path)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        out += [n for n in names if n.startswith("dagster._")]
        if isinstance(node, ast.Attribute) and (node.attr.startswith("dagster_internal") or (
                node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in ("dg", "dagster"))):
            out.append(node.attr)
    return out


def test_dagster_internals_only_in_their_module(tmp_path):
    bad = [f"{p.relative_to(PACKAGE)}: {name}" for p in MODULES if p != DAGSTER_INTERNALS
           for name in dagster_internal_imports(p)]
    assert not bad, "Dagster internals outside defs/dagster_internals.py:\n" + "\n".join(bad)
    probe = tmp_path / "probe.py"  # the check can fail
    probe.write_text("from dagster._config.errors import EvaluationError\nimport dagster as dg\n"
                     "x = dg._check\ny = asset.dagster_internal_init\n")
    assert dagster_internal_imports(probe) == ["dagster._config.errors", "_check", "dagster_internal_init"]
