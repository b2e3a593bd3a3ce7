"""The house plan, checked: engine/ read with ast (nothing imported), its imports against
the layer order of ../shared/DESIGN.md, import loops, and trio in the modules without I/O.

Imports under ``if TYPE_CHECKING:`` and inside functions count: a loop the type checker
sees, or one deferred to run time, is still a loop in the design.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"

LAYERS = [
    ("core", "metrics"),
    ("templates",),
    ("http",),
    ("config",),
    ("hooks",),
    ("journal",),
    ("delivery", "gateway", "api"),
    ("daemon",),
    ("cli",),
]
"""Lowest first, as DESIGN.md orders them: a package imports only from layers below its own
(and itself). Packages sharing a layer do not import each other. The daemon (which builds
the parts) is below the command line, whose ``run`` starts it."""

SANS_IO = [
    "core/model.py",
    "core/events.py",
    "core/auth.py",
    "core/ratelimit.py",
    "core/retry.py",
    "core/signing.py",
    "templates",
    "http/h1.py",
    "http/h1client.py",
    "http/sse.py",
    "config",
    "hooks",
    "journal/_grouping.py",
    "journal/_ledger.py",
    "journal/_leases.py",
    "journal/delivery_log.py",
    "gateway/protocol.py",
    "delivery/breaker.py",
    "delivery/failure_log.py",
    "delivery/request.py",
    "delivery/wire.py",
    "api/routes.py",
    "api/cors.py",
]
"""Protocol and policy without I/O (files, or whole packages): they never import trio."""

KNOWN_LOOPS: dict[tuple[str, str], str] = {}
"""Import loops the issue that introduced this test has yet to remove; each says which step
removes it. The test fails when one is gone, so the list only shrinks."""

KNOWN_UPWARD: dict[tuple[str, str], str] = {}
"""Imports of a higher layer still to remove, with the same rule."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The engine modules ``path`` imports (``from engine.x import y`` names y when y is a
    module of its own), with the line of each import."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("engine"):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if not source.startswith("engine"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield (submodule if submodule in known else source), node.lineno


def graph() -> dict[str, dict[str, int]]:
    """Module -> the engine modules it imports (-> a line where it does)."""
    known = modules()
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        targets = edges.setdefault(name, {})
        for target, line in imports_of(path, known):
            if target != name and target in known:
                targets.setdefault(target, line)
    return edges


def package_of(module: str) -> str:
    """engine.core.retry -> delivery; engine.daemon -> daemon; engine -> engine."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "engine"


def layer_of(package: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    return None


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def shortest_loop(group: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """The shortest path from a module of ``group`` back to itself: the loop to cut."""
    best: list[str] = []
    for start in group:
        paths = {start: [start]}
        frontier = [start]
        while frontier and not (best and len(paths[frontier[0]]) >= len(best)):
            nxt = []
            for node in frontier:
                for target in sorted(edges[node]):
                    if target == start and (not best or len(paths[node]) + 1 < len(best)):
                        best = [*paths[node], start]
                    elif target in group and target not in paths:
                        paths[target] = [*paths[node], target]
                        nxt.append(target)
            frontier = nxt
    return best


def describe_loop(group: list[str], edges: dict[str, dict[str, int]]) -> str:
    """One loop of the group, each step with the file and line of its import."""
    loop = shortest_loop(group, edges)
    steps = [
        f"  {modules()[a].relative_to(ENGINE.parent)}:{edges[a][b]} imports {b}"
        for a, b in itertools.pairwise(loop)
    ]
    return f"import loop ({len(group)} modules tangled in all; cut one of these):\n" + "\n".join(
        steps
    )


def test_every_engine_package_has_a_layer() -> None:
    packages = {package_of(m) for m in modules()} - {"engine"}
    assert not packages - {p for layer in LAYERS for p in layer}, (
        "add the new package to LAYERS in tests/test_layering.py (and to DESIGN.md's order)"
    )


def test_no_import_loops_between_modules() -> None:
    edges = graph()
    loops = cycles(edges)
    unknown = [g for g in loops if not any(set(k) <= set(g) for k in KNOWN_LOOPS)]
    assert not unknown, "\n".join(describe_loop(g, edges) for g in unknown)
    gone = [k for k in KNOWN_LOOPS if not any(set(k) <= set(g) for g in loops)]
    assert not gone, f"remove these from KNOWN_LOOPS, they are fixed: {gone}"


def test_no_import_loops_between_packages() -> None:
    edges = graph()
    packages: dict[str, dict[str, int]] = {}
    for source, targets in edges.items():
        for target, line in targets.items():
            if (source, target) in KNOWN_UPWARD:
                continue
            a, b = package_of(source), package_of(target)
            if a != b and "engine" not in (a, b):
                packages.setdefault(a, {})[b] = line
                packages.setdefault(b, {})
    loops = cycles(packages)
    assert not loops, "import loops between packages: " + "; ".join(
        " -> ".join(shortest_loop(g, packages)) for g in loops
    )


def test_no_package_imports_one_above_it() -> None:
    found = []
    for source, targets in graph().items():
        here = layer_of(package_of(source))
        for target, line in targets.items():
            there = layer_of(package_of(target))
            if here is None or there is None or package_of(source) == package_of(target):
                continue
            if there >= here and (source, target) not in KNOWN_UPWARD:
                path = modules()[source].relative_to(ENGINE.parent)
                found.append(
                    f"{path}:{line} imports {target}: {package_of(source)} (layer {here}) "
                    f"may import only layers below it; {package_of(target)} is layer {there}"
                )
    assert not found, "\n".join(found)
    gone = [k for k in KNOWN_UPWARD if k[1] not in graph().get(k[0], {})]
    assert not gone, f"remove these from KNOWN_UPWARD, they are fixed: {gone}"


@pytest.mark.parametrize("entry", SANS_IO)
def test_modules_without_io_do_not_import_trio(entry: str) -> None:
    target = ENGINE / entry
    paths = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert paths, f"{entry} is listed in SANS_IO but does not exist"
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "trio" or n.startswith("trio.") for n in names):
                found.append(f"{path.relative_to(ENGINE.parent)}:{node.lineno} imports trio")
    assert not found, "\n".join(found)


def test_a_loop_is_reported_with_where_each_import_is() -> None:
    edges = {
        "engine.a": {"engine.b": 3},
        "engine.b": {"engine.c": 5, "engine.a": 7},
        "engine.c": {"engine.b": 2},
    }
    assert cycles(edges) == [["engine.a", "engine.b", "engine.c"]]
    assert shortest_loop(["engine.a", "engine.b", "engine.c"], edges) == [
        "engine.a",
        "engine.b",
        "engine.a",
    ]
