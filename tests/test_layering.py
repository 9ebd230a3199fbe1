"""The package layering the README's Layout section promises, checked by parsing every import.

Layers, lowest first: ``priorprobe_client`` (the light client: the API's models, installed
without the server) < ``models`` < ``workers`` (the compute engine) < the ``app`` core (settings,
database, ORM, storage, services, jobs) < the ``app`` entry points (the HTTP API, the CLI, the demo).
A module may import its own layer and the layers below, never above, and no set of modules may
import each other in a circle. Imports inside functions count too: deferring an import hides a
cycle or an upward dependency from Python at start-up, not from the design.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("priorprobe_client", "models", "workers", "app")
# Modules of app/ that face users or the web framework; everything else in app/ is the core.
ENTRY_POINTS = ("app.api", "app.cli", "app.dashboard", "app.demo", "app.main", "app.deps")
LAYERS = {"priorprobe_client": 0, "models": 1, "workers": 2, "app core": 3, "app entry points": 4}
# The compute engine runs in the CLI, in tests and inside any worker; it must not need a web
# framework, a broker or a database driver to import.
FORBIDDEN_BELOW_APP = ("celery", "kombu", "fastapi", "starlette", "sqlalchemy", "alembic", "redis", "uvicorn")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports anywhere in its body (top level, functions, classes), resolved
    to the most specific module: ``from app.services import run_state`` is ``app.services.run_state``.

    Imports under ``if TYPE_CHECKING:`` count as well; a type checker needs them resolvable too.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb from this module's package
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    top = module.split(".")[0]
    if top != "app":
        return top
    return "app entry points" if any(module == p or module.startswith(p + ".") for p in ENTRY_POINTS) else "app core"


def test_the_scan_sees_the_modules_it_must_judge():
    # A broken walk (wrong root, renamed package) would make every check below pass vacuously.
    for module in ("models.specs", "workers.runner", "app.services.execution", "app.api.routes.runs", "app.cli"):
        assert module in MODULES
    assert "app.services.run_state" in GRAPH["app.services.execution"]
    assert "workers.runner" in GRAPH["app.services.execution"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    own = LAYERS[_layer(module)]
    upward = sorted(
        target for target in GRAPH[module]
        if target.split(".")[0] in PACKAGES and LAYERS[_layer(target)] > own
    )
    assert upward == [], f"{module} ({_layer(module)}) imports a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "priorprobe_client"))
def test_the_light_client_needs_only_httpx_and_pydantic(module):
    # `pip install ./client` brings only these two; anything else would fail on a CI runner.
    third_party = sorted(t for t in GRAPH[module] if t.split(".")[0] not in sys.stdlib_module_names
                         and t.split(".")[0] not in ("priorprobe_client", "httpx", "pydantic"))  # fmt: skip
    assert third_party == [], f"{module} imports {third_party}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in ("models", "workers")))
def test_the_compute_engine_needs_no_service_framework(module):
    frameworks = sorted(t for t in GRAPH[module] if t.split(".")[0] in FORBIDDEN_BELOW_APP)
    assert frameworks == [], f"{module} imports {frameworks}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue  # third-party or standard library
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "os"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []
