"""The package's import graph: modules, layers, imports, circles and imports that point up.

Every ``import`` of a ``lalora_lite`` module counts, at the top of a file, inside a function or under
``TYPE_CHECKING`` alike (a circle hidden in a function is still a knot in the design). A package's
``__init__`` is its own node, named after the package. Layers are the longest chain of imports below a
module (a module that imports nothing of the package is layer 0); within circles, the circle counts as
one node. An import points *up* when it crosses the house's line the wrong way: a core module (the
top of the package) importing from a subpackage (``tasks``, ``study``, ``diagnostics``), or a room
importing a room above it (:data:`ROOM_ORDER`).

Usage: python scripts/import_graph.py [--dot]   (prints the summary; ``--dot`` the graph for Graphviz)
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = "lalora_lite"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
# The rooms, lowest first: a module may import from its own room and the rooms before it. The entry
# points (the ``lalora`` command, the Flower adapter and the package's own face) sit above them all.
ROOM_ORDER = ("core", "tasks", "diagnostics", "study", "entry")
ENTRY_POINTS = {f"{PACKAGE}", f"{PACKAGE}.cli", f"{PACKAGE}.flower", f"{PACKAGE}._moved"}  # and flower's modules


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The room a module lives in: a subpackage's name, ``entry`` or ``core``."""
    if module in ENTRY_POINTS or module.startswith(f"{PACKAGE}.flower."):
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOM_ORDER else "core"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that the file at ``path`` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` where there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] == PACKAGE and t != name}
    return found


def graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def unresolved(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a package path that is no module of it (an old path that only the deprecation alias answers)."""
    return sorted((m, w) for m, ws in edges.items() for w in ws if w not in edges)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layers(edges: dict[str, set[str]]) -> dict[str, int]:
    """module -> its layer (a circle's modules share one)."""
    component = {m: m for m in edges}
    for members in circles(edges):
        component |= {m: members[0] for m in members}
    depth: dict[str, int] = {}

    def layer(c: str) -> int:
        if c not in depth:
            depth[c] = -1  # guards the recursion; circles are already one node
            below = {component[w] for m in edges if component[m] == c for w in edges[m]} - {c}
            depth[c] = 1 + max((layer(w) for w in below), default=-1)
        return depth[c]

    return {m: layer(component[m]) for m in edges}


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a room into a room above it."""
    rank = {r: i for i, r in enumerate(ROOM_ORDER)}
    return sorted((m, w) for m, ws in edges.items() for w in ws if rank.get(room(w), 0) > rank.get(room(m), 0))


def summary(edges: dict[str, set[str]]) -> dict[str, object]:
    missing = unresolved(edges)
    edges = {m: {w for w in ws if w in edges} for m, ws in edges.items()}
    depth = layers(edges)
    return {
        "modules": len(edges),
        "layers": 1 + max(depth.values()),
        "imports": sum(map(len, edges.values())),
        "circles": circles(edges),
        "upward": upward(edges),
        "unresolved": missing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print the graph in Graphviz's dot language")
    args = parser.parse_args()
    edges = graph()
    if args.dot:
        print("digraph lalora_lite {")
        print("\n".join(f'  "{m}" -> "{w}";' for m in sorted(edges) for w in sorted(edges[m])))
        print("}")
        return
    for key, value in summary(edges).items():
        print(f"{key}: {value}")
    rooms: dict[str, list[str]] = {}
    for m in sorted(edges):
        rooms.setdefault(room(m), []).append(m.removeprefix(f"{PACKAGE}."))
    for r in ROOM_ORDER:
        print(f"room {r} ({len(rooms.get(r, []))}): {' '.join(rooms.get(r, []))}")


if __name__ == "__main__":
    main()
