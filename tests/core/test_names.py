"""One name, one thing: every public module imports on its own, and no package
attribute is a function at one moment and a submodule at another."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDERS = {"tracker": "hptrack", "analysis": "hptrack.analysis", "cli": "hptrack.cli"}


def modules() -> list[str]:
    """Every module of the package, subpackages included (their ``__init__`` as the package)."""
    names = []
    for folder, package in FOLDERS.items():
        root = os.path.join(REPO, folder)
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, root)
            prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
            for f in sorted(files):
                if f == "__init__.py" and rel != ".":
                    names.append(prefix)
                elif f.endswith(".py") and f not in ("__init__.py", "__main__.py"):  # __main__ runs the CLI
                    names.append(f"{prefix}.{f[:-3]}")
    return names


# A warm parent (third-party libraries imported, nothing of hptrack) forks one child per
# module, so each child imports that module first, as a fresh interpreter would.
_EACH_ALONE = r"""
import importlib, json, os, sys, traceback
import click, duckdb, numpy, polars, pyarrow.parquet, rich, sklearn.model_selection
try:
    import optuna  # an extra: warm when installed, hptrack.optuna must import without it
except ImportError:
    pass
assert not [m for m in sys.modules if m.split(".")[0] == "hptrack"]
failed, needs_extra = {}, {}


def start(name):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            code = 0
        except ImportError as e:  # an integration whose extra is not installed must say so
            os.write(w, str(e).encode()[-2000:])
            code = 2 if "pip install 'hptrack[" in str(e) else 1
        except BaseException:
            os.write(w, traceback.format_exc(limit=-3).encode()[-2000:])
            code = 1
        os._exit(code)
    os.close(w)
    return name, pid, r


def finish(name, pid, r):
    with os.fdopen(r, "rb") as pipe:
        err = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 2:
        needs_extra[name] = err
    elif status:
        failed[name] = err or f"status {status}"


running = []   # one child per core at a time: each imports its module alone in its own process
for name in json.loads(sys.argv[1]):
    if len(running) == (os.cpu_count() or 1):
        finish(*running.pop(0))
    running.append(start(name))
for child in running:
    finish(*child)
print(json.dumps([failed, needs_extra]))
"""


def importable(library: str) -> bool:
    try:
        importlib.import_module(library)
    except ImportError:
        return False
    return True


def test_every_module_imports_on_its_own():
    assert len(modules()) > 50 and "hptrack._files.store" in modules() and "hptrack.sklearn" in modules()
    env = {k: v for k, v in os.environ.items() if k != "HPTRACK_STORE"}
    out = subprocess.run([sys.executable, "-c", _EACH_ALONE, json.dumps(modules())],
                         capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    failed, needs_extra = json.loads(out.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())
    # on a core-only venv: hptrack.optuna without Optuna, and only where Optuna is absent
    for name, message in needs_extra.items():
        library = re.search(r"the '(\w+)' extra", message).group(1)
        assert not importable(library), f"{name}: {message}"


_ONE_THING = r"""
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    try:
        importlib.import_module(name)   # every submodule loaded: each sets its package attribute
    except ImportError as e:            # an integration whose extra is not installed here
        assert "pip install 'hptrack[" in str(e), e
clashes = {}
for pkg_name in [n for n in names if n in sys.modules and hasattr(sys.modules[n], "__path__")]:
    pkg = sys.modules[pkg_name]
    for public in getattr(pkg, "__all__", []):
        # a public function named like a submodule is the module once that is imported
        if f"{pkg_name}.{public}" in sys.modules:
            clashes[f"{pkg_name}.{public}"] = type(getattr(pkg, public)).__name__
print(json.dumps(clashes))
"""


def test_every_public_name_means_one_thing():
    out = subprocess.run([sys.executable, "-c", _ONE_THING, json.dumps(modules())],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.parametrize("package", ["hptrack", "hptrack.analysis"])
def test_public_names_stay_what_they_are_after_first_use(package):
    # the README's calls, twice: the first use of a lazy name must not replace it
    code = (f"import importlib; pkg = importlib.import_module({package!r})\n"
            "for name in pkg.__all__:\n"
            "    first = getattr(pkg, name)\n"
            "    again = getattr(pkg, name)\n"
            "    assert again is first, (name, first, again)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
