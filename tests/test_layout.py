"""The house's layout holds: each stage imports only the stages before it in LAYERS (docs/
layout.md's order), and no two modules import each other, directly or in a circle, even from
inside a function."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

LAYERS = (  # top of the house first: a module may import its own stage and those before it
    "implementations",
    "bench.data",
    "bench.job",
    "bench.figures",
    "bench.tracking",
    "bench.report.numbers",
    "bench.report.pages",
    "bench.sweep",
    "bench.speed",
    "bench.commands",
    "bench.__main__",
)


def modules() -> dict[str, set[str]]:
    """Each module of the project, and the project modules it imports (anywhere in it)."""
    found = {}
    for path in sorted(
        [*(ROOT / "bench").rglob("*.py"), *(ROOT / "implementations").rglob("*.py")]
    ):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        found[name] = imported
    return {m: {i for i in imps if i in found and i != m} for m, imps in found.items()}


def layer(module: str) -> int | None:
    matches = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    return matches[-1] if matches else None


def test_every_module_has_a_stage():
    loose = [m for m in modules() if layer(m) is None and m not in ("bench", "bench.report")]
    assert not loose, f"modules outside every stage of LAYERS: {loose}"


def test_no_stage_imports_a_later_one():
    upward = [
        f"{m} -> {i}"
        for m, imports in modules().items()
        for i in imports
        if layer(m) is not None and layer(i) is not None and layer(i) > layer(m)
    ]
    assert not upward, upward


def test_no_import_circle():
    graph = modules()
    circles = []

    def visit(node, path):
        for nxt in graph[node]:
            if nxt in path:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done: set[str] = set()
    for start in graph:
        if start not in done:
            visit(start, [start])
    assert not circles, circles[:3]
