"""The import graph follows the data path (test_names imports every module on its own).

Data flows one way: integrations -> write API -> write path -> files of the
store -> read side -> analysis -> report -> CLI. The write half imports towards
the files, the read half imports back towards them; nothing imports against
that (the core importing analysis or the CLI, analysis importing an integration,
an integration reaching past the write API), and there is no cycle at all.

Both tests read the installed package's source, so they see the modules a pip
user gets. Imports inside functions count: a lazy import is still an edge.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

# (layer, the module prefixes it holds); a module belongs to the longest prefix that matches
LAYERS = {
    "foundation": ("hptrack.errors", "hptrack.schema", "hptrack._described"),
    "files": ("hptrack._files",),
    "write path": ("hptrack._write",),
    "read side": ("hptrack._read", "hptrack.training"),
    "maintenance": ("hptrack._maintain",),
    "write API": ("hptrack.api", "hptrack._reopening", "hptrack._importing", "hptrack._history"),
    "integrations": ("hptrack.sklearn", "hptrack.optuna", "hptrack.ray", "hptrack.pbt", "hptrack.loops"),
    "analysis": ("hptrack.analysis",),
    "report": ("hptrack.analysis.report",),
    "cli": ("hptrack.cli",),
    "package": ("hptrack",),  # the public names: hptrack/__init__.py
}

BELOW = {
    "foundation": set(),
    "files": {"foundation"},
    "write path": {"foundation", "files"},
    "read side": {"foundation", "files"},
    # sealing a crashed writer's log and compaction both write and read the files
    "maintenance": {"foundation", "files", "write path", "read side"},
    # opening a search checks the settings it already holds (a read of its events)
    "write API": {"foundation", "files", "write path", "read side"},
    "integrations": {"foundation", "write API"},
    "analysis": {"foundation", "files", "read side"},
    "report": {"foundation", "files", "read side", "analysis"},
    "cli": {"foundation", "files", "write path", "read side", "maintenance", "write API", "integrations",
            "analysis", "report", "package"},
    # hptrack.report(...) and hptrack.export(...) load their modules on first use
    "package": {"foundation", "files", "write path", "read side", "maintenance", "write API", "integrations",
                "analysis", "report"},
}

# Deprecated aliases: a name that moved keeps working from where users typed it, with a
# DeprecationWarning, loaded on first use (checked in test_public_names_stay_where_users_type_them)
MOVED = {("hptrack.pbt", "hptrack.analysis.population")}  # hptrack.pbt.lineage / .schedule


def _source_root() -> dict[str, pathlib.Path]:
    """Module name -> file, for every module of the installed hptrack."""
    import importlib.util

    mods = {}
    for pkg in ("hptrack", "hptrack.analysis", "hptrack.cli"):
        root = pathlib.Path(importlib.util.find_spec(pkg).origin).parent
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = _source_root()


def layer_of(module: str) -> str:
    best, best_len = None, -1
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = layer, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def imports_of(module: str, path: pathlib.Path) -> set[str]:
    """The hptrack modules ``module`` imports (at module level or inside functions); an import
    under ``if TYPE_CHECKING:`` is for annotations and never runs, so it is no edge."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            # importlib.import_module("hptrack.x") or (".x", __name__): a lazy import is an edge too
            name = node.args[0].value
            if name.startswith("."):
                name = (module if is_pkg else module.rsplit(".", 1)[0]) + name
            out.add(name)
    return {m for m in out if m in MODULES and m != module}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def backward_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        lm = layer_of(m)
        for t in sorted(targets):
            lt = layer_of(t)
            if lt != lm and lt not in BELOW[lm] and (m, t) not in MOVED:
                bad.append(f"{m} ({lm}) imports {t} ({lt})")
    return bad


def test_every_module_has_a_layer_and_the_graph_is_not_empty():
    assert len(MODULES) > 50
    assert {layer_of(m) for m in MODULES} == set(LAYERS)
    assert sum(map(len, GRAPH.values())) > 100


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_against_the_data_path():
    assert backward_edges(GRAPH) == []


def test_the_checks_catch_what_they_are_for():
    # the checks themselves, on graphs that break the rules
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    bad = backward_edges({"hptrack._files.store": {"hptrack._read.read"}, "hptrack._read.read": set(),
                          "hptrack.analysis.stats": {"hptrack.sklearn"}, "hptrack.sklearn": set(),
                          "hptrack.sklearn._record": {"hptrack._write.writer"}, "hptrack._write.writer": set()})
    assert len(bad) == 3, bad


def test_type_only_imports_are_no_edge_and_the_rest_are(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "if TYPE_CHECKING:\n    from hptrack.analysis.report.model import Report\n"
                   "else:\n    import hptrack.analysis.stats\n"
                   "def f():\n    from hptrack._read.read import connect\n")
    assert imports_of("hptrack.x", src) == {"hptrack.analysis.stats", "hptrack._read.read"}


def test_public_names_stay_where_users_type_them():
    import hptrack.analysis
    import hptrack.loops
    import hptrack.sklearn
    import hptrack.training

    for name in hptrack.__all__:
        assert getattr(hptrack, name) is not None
    assert hptrack.EarlyStopping is hptrack.loops.EarlyStopping
    for name in ("track", "nested_cv", "log_test_score"):
        assert callable(getattr(hptrack.sklearn, name))
    assert callable(hptrack.training.summary)
    for name in hptrack.analysis.__all__:
        assert getattr(hptrack.analysis, name) is not None
    with pytest.warns(DeprecationWarning, match="hptrack.analysis.lineage"):
        import hptrack.pbt

        assert hptrack.pbt.lineage is hptrack.analysis.lineage
