"""The package's import graph has no cycle: data flows one way, lower parts never import higher ones.

Every ``import`` of an ``fgvc`` module counts, at module level or inside a function (a late import
would hide a cycle, not remove it), except under ``if TYPE_CHECKING:``, which never runs. Late
imports of ``fgvc`` modules are allowed only in the command line, where they keep ``fgvc --help``
fast, and in the package root, whose ``fgvc.load`` keeps ``import fgvc`` light.
``python tests/test_import_graph.py`` prints the graph between the top-level parts.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "fgvc"
LAZY_ALLOWED = ("fgvc.cli",)  # the command line imports each command's code only when it runs
LAZY_ROOT = "fgvc"  # the package root: fgvc.load imports the model code when called


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """``(imported fgvc module, at module level?)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            names = []
        found.extend((name, top) for name in names if name in known)
        nested = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    for statement in tree.body:
        visit(statement, True)
    return found


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Module -> imported modules, and module -> modules it imports only inside a function."""
    files = {module_name(p): p for p in SOURCE.rglob("*.py")}
    edges, late = defaultdict(set), defaultdict(list)
    for module, path in files.items():
        for target, top in imports(path, set(files)):
            if target != module:
                edges[module].add(target)
                if not top:
                    late[module].append(target)
    return edges, late


def part(module: str) -> str:
    """The top-level part a module belongs to: ``fgvc.data.loader`` -> ``fgvc.data``."""
    return ".".join(module.split(".")[:2])


def part_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    parts = defaultdict(set)
    for source, targets in edges.items():
        parts[part(source)] |= {part(t) for t in targets if part(t) != part(source)}
    return parts


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = iter(range(1 << 30))

    def connect(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            connect(v)
    return found


def test_the_walk_sees_the_imports():
    edges, _ = graph()
    assert "fgvc.data.splits" in edges["fgvc.engine.trainer"]
    assert "fgvc.engine.inference" in edges["fgvc.analysis.transfer"]


def test_no_import_cycle_between_modules():
    assert cycles(graph()[0]) == []


def test_no_import_cycle_between_parts():
    assert cycles(part_graph(graph()[0])) == []


def test_late_imports_only_where_they_keep_the_command_line_fast():
    _, late = graph()
    assert {m: t for m, t in late.items() if not m.startswith(LAZY_ALLOWED) and m != LAZY_ROOT} == {}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    for source, targets in sorted(part_graph(graph()[0]).items()):
        print(f"{source} -> {', '.join(sorted(targets)) or '(nothing)'}")
    print("cycles between modules:", cycles(graph()[0]) or "none")
    print("cycles between parts:", cycles(part_graph(graph()[0])) or "none")
