"""The import graph of service/ runs one way (docs/architecture.md draws it) and has no cycle.

Every ``import`` in a module counts, also those inside functions: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "service"

# Lower layers never import higher ones. A module's layer is that of its longest prefix here.
LAYERS = {
    "service": 0,  # __version__
    "service.errors": 0,
    "service.config": 0,
    "service.util": 0,
    "service.engine": 1,  # the numerics: nothing above them
    "service.data": 2,
    "service.params": 2,
    "service.store": 3,
    "service.training": 4,
    "service.cluster": 4,  # the Dask engine: training uses it; it uses data and engine
    "service.retrain": 5,
    "service.schedule": 5,
    "service.monitor": 5,  # the prediction and feedback logs, the join; trains with feedback
    "service.http": 6,
    "service.cli": 7,
    "service.server": 7,
    "service.gunicorn_conf": 7,
}
# Pairs in one layer that must not meet either: the data layer knows nothing of parameters.
FORBIDDEN = {("service.data", "service.params"), ("service.params", "service.data")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The service modules ``name`` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import mod` depends on the module when there is one, else on pkg.
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("service") and target != name:
                found.add(target)
    return found


def layer(name: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        assert layer(name), name


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_run_downwards(name: str) -> None:
    home, rank = layer(name)
    for target in GRAPH[name]:
        where, target_rank = layer(target)
        assert target_rank <= rank, f"{name} (layer {rank}) imports {target} (layer {target_rank})"
        assert (home, where) not in FORBIDDEN, f"{name} imports {target}"


def test_the_numerics_import_only_errors_and_util() -> None:
    for name in GRAPH:
        if name.startswith("service.engine"):
            outside = {t for t in GRAPH[name] if not t.startswith("service.engine")}
            assert outside <= {"service.errors", "service.util"}, (name, outside)


def test_blueprints_never_import_the_app_factory() -> None:
    for name in GRAPH:
        if name.startswith("service.http.") and name != "service.http.app":
            assert "service.http.app" not in GRAPH[name], name
            assert "service.http" not in GRAPH[name], name


def test_no_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The resolver finds relative, aliased and function-level imports (so the test can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..http import state as s\n    import service.cli\n")
    known = set(modules())
    found = imports_of("service.engine.probe", probe, known)
    assert found == {"service.http.state", "service.cli"}
