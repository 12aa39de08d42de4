"""Session fixtures of the conformance suite: every piece of real material is built
once per session, into one store per way in, and shared by all its tests."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session")
def material_root(tmp_path_factory):
    """Where the material's stores live. On a tmpfs when there is one: the suite checks
    what is recorded, not durability, and an fsync per trial on a busy disk cost more
    than all the material's fits (52 s against 44 s measured on /tmp vs /dev/shm)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        root = tempfile.mkdtemp(prefix="hptrack-conformance-", dir=shm)
        yield root
        shutil.rmtree(root, ignore_errors=True)
    else:
        yield str(tmp_path_factory.mktemp("conformance"))


def built(material_root, name, build, stores_of):
    """The material ``build`` makes in its own folder, yielded to its tests; this
    process's writers of its stores (``stores_of(material)``) are sealed and closed
    before the folders go."""
    from hptrack._write.writer import Writer

    root = os.path.join(material_root, name)
    os.makedirs(root)
    material = build(root)
    yield material
    for store in stores_of(material):
        Writer.for_store(store).close()


@pytest.fixture(scope="session")
def optuna_material(material_root):
    from .optuna_material import build

    yield from built(material_root, "optuna", build, lambda m: m.stores.values())


@pytest.fixture(scope="session")
def sklearn_material(material_root):
    from .sklearn_material import build

    yield from built(material_root, "sklearn", build, lambda m: [m.store])


@pytest.fixture(scope="session")
def analysis_material(material_root):
    from .analysis_material import build

    yield from built(material_root, "analysis", build, lambda m: [m.store])
