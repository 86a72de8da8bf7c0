"""The layers of ``opus_pipeline`` are folders, and imports only point down (README "Layout").

Every import of every module is read with ``ast`` (lazy imports inside functions and
``TYPE_CHECKING`` blocks included: they are arrows too), and checked against the layer table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

# Pure logic imports nothing that does I/O: no cloud client, no HTTP library, no clock of its own.
DOMAIN_MAY_NOT_IMPORT = ("google", "requests", "urllib3", "flask", "functions_framework", "socket", "subprocess")
# …except urllib3's URL parser, which is pure: the URL policy must parse exactly as the transport does.
DOMAIN_MAY_IMPORT = ("urllib3.util", "urllib3.util.url")

# Lowest first. A module may import from lower layers, and from its own layer only inside its
# own group (one folder, or one module): ``opus/``, ``gcs/`` and ``pubsub/`` never import each other.
LAYERS: list[tuple[str, ...]] = [
    ("opus_pipeline.redaction",),
    ("opus_pipeline.errors", "opus_pipeline.logs"),
    ("opus_pipeline.domain",),
    ("opus_pipeline.config",),
    ("opus_pipeline.http_policy",),
    ("opus_pipeline.opus", "opus_pipeline.gcs", "opus_pipeline.pubsub"),
    ("opus_pipeline.runtime",),
    ("opus_pipeline.usecases",),
    ("opus_pipeline.cli", "main"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(FUNCTIONS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The ``opus_pipeline`` modules ``path`` imports (``from pkg import mod`` names the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import (use absolute ones)"
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("opus_pipeline"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("opus_pipeline"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (FUNCTIONS / Path(*candidate.split("."))).with_suffix(".py").exists()
                found.add(candidate if is_module else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [*(FUNCTIONS / "opus_pipeline").rglob("*.py"), FUNCTIONS / "main.py"]
    graph = {module_name(p): imports_of(p) - {module_name(p)} for p in paths}
    graph.pop("opus_pipeline")  # the package's docstring: it imports nothing and nobody imports it
    return graph


def place(module: str) -> tuple[int, str]:
    """(layer rank, group) of ``module``."""
    for rank, groups in enumerate(LAYERS):
        for group in groups:
            if module == group or module.startswith(group + "."):
                return rank, group
    raise LookupError(f"{module} is in no layer: add it to LAYERS (and the README's layout)")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        rank, group = place(module)
        for target in targets:
            target_rank, target_group = place(target)
            if target_rank > rank or (target_rank == rank and target_group != group):
                wrong.append(f"{module} → {target}")
    return sorted(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, found by depth-first search (each reported once, from its first node)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    for module in import_graph():
        place(module)


def test_imports_only_point_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_pure_logic_imports_no_io_library() -> None:
    wrong = []
    for path in (FUNCTIONS / "opus_pipeline" / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            wrong += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in DOMAIN_MAY_NOT_IMPORT and n not in DOMAIN_MAY_IMPORT
            ]
    assert wrong == []


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("opus_pipeline.domain.states", "opus_pipeline.gcs.ledger"),  # pure logic reaching for storage
        ("opus_pipeline.opus.client", "opus_pipeline.gcs.rate_budget"),  # one adapter using another
        ("opus_pipeline.gcs.ledger", "opus_pipeline.usecases.ingest"),  # an adapter knowing a story
        ("opus_pipeline.errors", "opus_pipeline.logs"),  # two foundations leaning on each other
        ("opus_pipeline.domain.url_policy", "opus_pipeline.http_policy"),  # pure logic reaching for HTTP
    ],
)
def test_the_check_catches_a_planted_upward_import(module: str, target: str) -> None:
    graph = import_graph()
    graph[module] = {*graph[module], target}
    assert f"{module} → {target}" in upward_imports(graph)


def test_the_check_catches_a_planted_cycle() -> None:
    graph = import_graph()
    graph["opus_pipeline.usecases.admit"] = {*graph["opus_pipeline.usecases.admit"], "opus_pipeline.usecases.sweep"}
    assert any("opus_pipeline.usecases.admit" in cycle for cycle in cycles(graph))
