"""The package's layout is its architecture: imports run one way, down the floors the README's Layout
section names, with no cycle, and no module grows past one screenful of concerns."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "gmmvit"
# README "Layout": each top-level room of gmmvit and its floor; a module imports its own room or lower floors
FLOORS = {"errors": 0, "catalog": 0, "paper": 0, "nn": 1, "data": 1, "run": 2, "sweeps": 3, "config": 4, "bench": 5}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The gmmvit modules a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gmmvit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmmvit"):
            for alias in node.names:  # `from gmmvit.run import runlock` imports the module gmmvit.run.runlock
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (PACKAGE.parent / Path(*sub.split("."))).is_dir() else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_top_level_room_has_a_floor():
    rooms = {room(m) for m in graph() if room(m)}
    assert rooms == set(FLOORS), f"rooms without a floor in the README: {sorted(rooms - set(FLOORS))}"


def test_no_import_runs_up_to_a_higher_floor():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets
              if room(t) and room(m) and room(t) != room(m) and FLOORS[room(t)] >= FLOORS[room(m)]]
    assert not upward, "imports to the same or a higher floor:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    modules = graph()
    edges = {m: {t for t in targets if t in modules and t != m} for m, targets in modules.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)


def test_the_network_imports_only_torch_timm_and_the_errors():
    allowed = {"gmmvit.errors"}
    leaks = [f"{m} -> {t}" for m, targets in graph().items() if room(m) == "nn"
             for t in targets if room(t) != "nn" and t not in allowed]
    assert not leaks, leaks


def test_no_module_is_longer_than_500_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
