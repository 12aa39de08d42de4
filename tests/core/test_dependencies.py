"""Every third-party import of the package is declared, and `pip install hptrack` pulls only
what the core imports.

A module imported by the core (anything but an integration with an extra of its own) must be a
core dependency in pyproject.toml; a module imported only inside such an integration must be
declared by that integration's extra. Modules map to distributions through the installed
metadata (``importlib.metadata.packages_distributions``: ``sklearn`` -> scikit-learn); a module
that is not installed here (an extra on a core-only venv) is matched by name.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("tracker", "analysis", "cli")

# the source folders (or files) whose imports an extra declares, and that extra;
# everything else in SOURCES is the core
EXTRA_OF = {os.path.join("tracker", "optuna"): "optuna", os.path.join("tracker", "ray"): "ray",
            os.path.join("cli", "demo.py"): "demo"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def distributions(reqs: list[str], extras: dict[str, list[str]]) -> set[str]:
    """The distributions a list of requirements names, with hptrack[extra] expanded."""
    out = set()
    for line in reqs:
        req = Requirement(line)
        if canonical(req.name) == "hptrack":
            for extra in req.extras:
                out |= distributions(extras[extra], extras)
        else:
            out.add(canonical(req.name))
    return out


def third_party_imports() -> dict[str, dict[str, set[str]]]:
    """{top-level module: {owner (an extra's name, or "core"): files that import it}}."""
    found: dict[str, dict[str, set[str]]] = {}
    for folder in SOURCES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for fname in files:
                if not fname.endswith(".py"):
                    continue
                path = os.path.join(dirpath, fname)
                rel = os.path.relpath(path, ROOT)
                owner = next((extra for prefix, extra in EXTRA_OF.items()
                              if rel == prefix or rel.startswith(prefix + os.sep)), "core")
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), rel)
                # imports under `if TYPE_CHECKING:` name types for the checker, never run
                typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                               and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                               for stmt in block.body for n in ast.walk(stmt)}
                for node in ast.walk(tree):
                    if id(node) in typing_only:
                        continue
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        names = [node.module]
                    else:
                        continue
                    for name in names:
                        top = name.split(".")[0]
                        if top not in sys.stdlib_module_names and top != "hptrack":
                            found.setdefault(top, {}).setdefault(owner, set()).add(rel)
    return found


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    installed = installed_distributions().get(module)
    return {canonical(d) for d in installed} if installed else {canonical(module)}


def test_every_import_is_declared_where_it_is_used():
    meta = project()
    extras = meta["optional-dependencies"]
    core = distributions(meta["dependencies"], extras)
    imports = third_party_imports()
    assert {"duckdb", "pyarrow", "sklearn", "scipy"} <= set(imports)  # the walk sees the package
    problems = []
    for module, owners in sorted(imports.items()):
        dists = distributions_of(module)
        for owner, files in sorted(owners.items()):
            declared = core if owner == "core" else core | distributions(extras.get(owner, []), extras)
            if not dists & declared:
                where = "the core dependencies" if owner == "core" else f"the '{owner}' extra"
                problems.append(f"{module} ({'/'.join(sorted(dists))}) is imported by {sorted(files)} "
                                f"but not declared in {where} of pyproject.toml")
    assert problems == []


def test_core_dependencies_are_all_used_by_the_core():
    """`pip install hptrack` pulls only what the core imports (no integration's library)."""
    meta = project()
    core = distributions(meta["dependencies"], meta["optional-dependencies"])
    used = set()
    for module, owners in third_party_imports().items():
        if "core" in owners:
            used |= distributions_of(module)
    assert sorted(core - used) == []


def test_each_integration_has_its_extra_and_dev_has_them_all():
    extras = project()["optional-dependencies"]
    for extra in ("optuna", "skopt", "ray", "dask", "spark", "s3", "gcs", "demo", "test", "dev"):
        assert extra in extras, f"missing extra {extra!r}"
    dev = distributions(extras["dev"], extras)
    for extra in ("test", "optuna", "skopt", "ray", "dask", "s3"):
        assert distributions(extras[extra], extras) <= dev, f"dev lacks the {extra!r} extra"
    assert distributions(extras["demo"], extras) == {"optuna"}
