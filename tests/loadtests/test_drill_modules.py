"""The drill's modules stand apart: no import cycle among loadtests' modules (lazy and type-only
imports count: they are how the old cycle between drill.py and report.py hid), production's
`autoscaler` package imports nothing from loadtests and imports whole without it, and the process
that runs the drill never loads locust or gevent."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module `path` imports, wherever the statement is (top level, function, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in (ROOT / package).rglob("*.py")}
    modules = {name.removesuffix(".__init__"): p for name, p in modules.items()}
    return {
        name: {m for m in imported_modules(path, package) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
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


def test_the_import_graph_of_loadtests_has_no_cycle() -> None:
    graph = import_graph("loadtests")
    assert {"loadtests.drill", "loadtests.report", "loadtests.cli"} <= set(graph)
    assert "loadtests.drill" in graph["loadtests.cli"]  # the graph sees real edges
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    # The shape of the old one: drill imported report inside run(), report imported drill for types.
    graph = {"a.drill": {"a.report"}, "a.report": {"a.drill"}, "a.cli": {"a.drill"}}
    assert cycles(graph) == [["a.drill", "a.report", "a.drill"]]


def test_production_autoscaler_imports_nothing_from_the_drill() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imported_modules(p, "autoscaler") if m.startswith("loadtests")
        )
        for p in (ROOT / "autoscaler").rglob("*.py")
    }
    assert {p: m for p, m in offenders.items() if m} == {}
    assert not (ROOT / "autoscaler" / "adapters" / "local.py").exists()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_every_autoscaler_module_imports_without_loadtests() -> None:
    done = run_python(
        """
        import importlib, pkgutil, sys
        import importlib.abc

        class NoDrill(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "loadtests" or name.startswith("loadtests."):
                    raise ImportError(f"the production autoscaler imported {name}")
                return None

        sys.meta_path.insert(0, NoDrill())
        import autoscaler
        names = [m.name for m in pkgutil.walk_packages(autoscaler.__path__, "autoscaler.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > 20


def test_the_drills_process_never_loads_locust() -> None:
    done = run_python(
        """
        import sys
        import loadtests.cli, loadtests.drill, loadtests.report, loadtests.bench
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("locust", "gevent")))
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
