"""Fixtures shared by test modules: a real S3-compatible server on 127.0.0.1."""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sys
import uuid

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
# tests/ holds helpers shared by every test folder (helpers_proc, objectives)
sys.path.insert(0, TESTS)


class _NoTestFolderPackages:
    """tests/optuna, tests/ray, tests/dask ... are folders of tests named after the libraries,
    not packages. With tests/ on sys.path (this file and pytest put it there), a venv without
    Optuna would otherwise import the empty folder as a namespace package on `import optuna`,
    and `pytest.importorskip("ray")` would not skip: such an import fails as it does for users."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is not None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name)
        if spec is not None and spec.origin is None and spec.submodule_search_locations and all(
                os.path.dirname(loc) == TESTS for loc in spec.submodule_search_locations):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTestFolderPackages())

BUCKET = "hptrack-team"


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory):
    """hptrack's local state (remote stores' logs, the report's kept importance fits) in a
    folder of the run's own, not the CI user's ~/.cache; tests that need another set theirs."""
    saved = os.environ.get("HPTRACK_CACHE_DIR")
    os.environ["HPTRACK_CACHE_DIR"] = str(tmp_path_factory.mktemp("hptrack-cache"))
    yield
    if saved is None:
        os.environ.pop("HPTRACK_CACHE_DIR", None)
    else:
        os.environ["HPTRACK_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server mode (a dev extra), started once for the whole run."""
    moto_server = pytest.importorskip("moto.server", reason="moto (dev extra) runs the local S3 server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, tmp_path):
    """What a machine of the team sets to reach the bucket (and where its own logs go)."""
    return {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "HPTRACK_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def s3_store(s3_env, monkeypatch):
    """A fresh prefix in the bucket; this process and its children reach it through the env."""
    s3fs = pytest.importorskip("s3fs", reason="s3fs (s3 extra) is how hptrack reaches S3")
    from hptrack._write.writer import Writer

    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    yield url
    Writer.for_store(url).close()


@pytest.fixture(params=["local", "memory", "s3"])
def any_store(request, tmp_path):
    """The same test on each kind of store a user has: a folder, ``memory://`` (one
    process) and S3 (moto's server; skipped with the reason when s3fs or moto is absent)."""
    from hptrack._write.writer import Writer

    if request.param == "local":
        url = str(tmp_path / "store")
    elif request.param == "memory":
        url = f"memory://hptrack-{uuid.uuid4().hex[:10]}"
    else:
        url = request.getfixturevalue("s3_store")
    yield url
    Writer.for_store(url).close()
