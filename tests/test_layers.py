"""The import graph of `lab` follows the layers written in the README, and has no cycles.

The allowed graph lives in one place, the `allowed-imports` block of README.md, beside the
picture a reader sees; this test parses it and walks every import of every module with `ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lab"
MARKER = "<!-- allowed-imports"
OUTSIDE = {"lab", "__main__"}  # the version string, and `python -m lab`


def read_layers(readme: str) -> list[set[str]]:
    """The layers of the README's block, top first; each a set of package names."""
    after = readme[readme.index(MARKER) :]
    body = after.split("```text\n", 1)[1].split("```", 1)[0]
    layers = []
    for line in body.splitlines():
        names = line.split("  ", 1)[0]  # two spaces end the names; the rest is a comment
        layers.append({name.strip() for name in names.split("|") if name.strip()})
    return [layer for layer in layers if layer]


def unit_of(module: str) -> str:
    """`lab.tcp.connection` -> `tcp`; `lab.runtime` -> `runtime`; `lab` -> `lab`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST) -> Iterator[str]:
    """Every `lab` module an AST imports, wherever the import statement sits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "lab")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lab":  # `from lab import replay`: the names are the modules
                yield from (
                    "lab" if a.name.startswith("_") else f"lab.{a.name}" for a in node.names
                )
            elif node.module.split(".")[0] == "lab":
                yield node.module


def import_graph() -> dict[str, set[str]]:
    """unit -> the other units it imports, over every module of the package."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path))
        targets = graph.setdefault(source, set())
        for module in imported_modules(ast.parse(path.read_text(), str(path))):
            target = unit_of(module)
            if target != source:
                targets.add(target)
    return graph


def upward_imports(
    graph: Mapping[str, set[str]], layers: Sequence[set[str]]
) -> list[tuple[str, str]]:
    """Imports that point to the same layer or one above (layers are listed top first)."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    bad = []
    for source, targets in graph.items():
        if source in OUTSIDE:
            continue
        for target in targets - OUTSIDE:
            if rank[target] <= rank[source]:
                bad.append((source, target))
    return sorted(bad)


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


@pytest.fixture(scope="module")
def layers() -> list[set[str]]:
    return read_layers((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_package_has_a_layer(layers: list[set[str]], graph: dict[str, set[str]]) -> None:
    placed = set().union(*layers)
    assert set(graph) - OUTSIDE - placed == set()
    assert placed - set(graph) == set(), "the README names a package that does not exist"


def test_no_import_points_up_or_sideways(
    layers: list[set[str]], graph: dict[str, set[str]]
) -> None:
    assert upward_imports(graph, layers) == []


def test_no_cycle_between_packages(graph: dict[str, set[str]]) -> None:
    assert cycles({k: v - OUTSIDE for k, v in graph.items()}) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(layers: list[set[str]]) -> None:
    bad = {"tcp": {"cli", "wire"}, "wire": set(), "cli": {"tcp"}}
    assert upward_imports(bad, layers) == [("tcp", "cli")]
    assert cycles(bad) == [["cli", "tcp", "cli"]]


def test_the_walk_sees_lazy_and_from_lab_imports() -> None:
    tree = ast.parse(
        "from lab import __version__\n"
        "def f():\n    from lab import replay\n    import lab.cli.main\n"
    )
    assert sorted(imported_modules(tree)) == ["lab", "lab.cli.main", "lab.replay"]
