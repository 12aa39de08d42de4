"""The lint and type gate (`make lint`) as tests, so the default suite catches a regression:
`ruff check .` and `mypy` (configured in pyproject.toml) both clean, and every public function
of the core (integrations included), analysis and cli annotated.

ruff and mypy are test tools, not dependencies: each test skips, saying why, when its tool is
not installed. mypy keeps its incremental cache in .mypy_cache (about 6 s cold, 1-2 s warm);
ruff takes well under a second.
"""

import ast
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# every module of the core (the integrations under tracker/ included), analysis and cli
PUBLIC_TREES = ("tracker", "analysis", "cli")


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install {module}); the lint gate is `make lint`")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_ruff_check_is_clean():
    done = run_tool("ruff", "check", ".", "--no-cache", "--output-format", "concise")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean():
    done = run_tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def public_functions_without_hints(path: pathlib.Path) -> list[str]:
    """Module-level functions and methods of public classes whose names have no leading
    underscore (dunders count: ``__init__`` needs its parameters, not its return) that miss
    a parameter or return annotation."""
    missing = []

    def visit(body: list, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                dunder = node.name.startswith("__") and node.name.endswith("__")
                if node.name.startswith("_") and not dunder:
                    continue
                a = node.args
                params = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]
                bare = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
                no_return = node.returns is None and node.name != "__init__"
                if bare or no_return:
                    what = ", ".join(bare) + (" and the return" if bare and no_return else
                                              "the return" if no_return else "")
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {prefix}{node.name}: {what}")

    visit(ast.parse(path.read_text()).body, "")
    return missing


def test_every_public_function_has_type_hints():
    missing = []
    for tree in PUBLIC_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            missing += public_functions_without_hints(path)
    assert not missing, "public functions without type hints:\n" + "\n".join(missing)
