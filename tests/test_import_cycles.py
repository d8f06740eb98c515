"""No import cycles in docvlm/: every module's imports (at the top or inside functions) form a DAG.

A cycle is how a newcomer gets lost (which module comes first?) and how a lazy import hides a design
knot; `from package import name` counts as importing the submodule `name` where one exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import docvlm

ROOT = Path(docvlm.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_imports_and_finds_a_cycle():
    graph = import_graph()
    assert "docvlm.models.adapter" in graph["docvlm.models.families.internvl"]
    assert "docvlm.models.registry" in graph["docvlm.models.tiny"]  # `from docvlm.models import registry`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_docvlm_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_model_layer_does_not_import_the_benchmark():
    """The benchmark builds on the model layer (replicas, engines), never the reverse."""
    graph = import_graph()
    upward = {(source, target) for source, targets in graph.items() if source.startswith("docvlm.models")
              for target in targets if target.startswith("docvlm.bench")}
    assert not upward
    assert "docvlm.models.replicas" in graph["docvlm.bench.architectures"]
