"""The report's importance fits, kept on this machine by what they were fitted on.

A fit is a pure function of its inputs (a search's trials, space, direction and params,
the seed, the sample size), of hptrack's own code and of the numeric libraries it runs
on. An entry's key is a sha256 over all of them, so an entry is only ever found by the
inputs that made it: a search with one more trial, an upgrade or an edited module is a
miss and is fitted again. Nothing to invalidate, nothing that can go stale.

An entry is a folder under ``$HPTRACK_CACHE_DIR/importance`` (default
``~/.cache/hptrack``): Arrow IPC files and one JSON file, no pickle, so a damaged or
planted entry can at worst be read as a miss (it is then removed). It is written in a
temporary folder and renamed into place: a reader sees a whole entry or none, and of two
writers racing for one key the second finds the first's entry and drops its own (the
same content). A cache that cannot be written (read-only, full disk) is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hptrack._files.store import cache_home

if TYPE_CHECKING:
    from typing import Any

FORMAT = 1  # of an entry's files; part of every key


@dataclass
class Fitted:
    """What the report keeps of a search's importance fit."""

    importance: Any                                  # polars (param, importance, std, ...)
    marginals: dict = field(default_factory=dict)    # param -> polars (value, mean, std)
    sample: tuple = (0, 0)                           # (trials fitted, usable trials)
    stability: str | None = None                     # Stability.note
    note: str | None = None                          # the sample's note when it was sampled


def folder() -> str:
    return os.path.join(cache_home(), "importance")


def key(args: dict) -> str | None:
    """The entry's name for sensitivity.analyse(**args), None when the inputs cannot be
    written down exactly (the fit then runs uncached)."""
    import polars as pl

    args = dict(args)
    trials = args.pop("source")
    try:
        buf = io.BytesIO()
        # the same trials, the same bytes: one record batch and plain (not view) strings,
        # as polars' string views of a frame sliced from one read of every search carry
        # buffers of the other searches' rows, which would change the name
        trials.rechunk().write_ipc(buf, compression="uncompressed", compat_level=pl.CompatLevel.oldest())
        settings = json.dumps(args, sort_keys=True, allow_nan=True)
    except Exception:  # an object column, a space of objects: no exact key
        return None
    h = hashlib.sha256(_code().encode())
    h.update(settings.encode())
    h.update(buf.getvalue())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _code() -> str:
    """The format, the library versions and a sha256 of hptrack's own modules."""
    import importlib.metadata
    import importlib.util
    import sys

    h = hashlib.sha256()
    # the folders the installed package is read from (an editable install maps its
    # subpackages to folders of their own), found without importing anything
    bases = set()
    for name in ("hptrack", "hptrack.analysis"):
        spec = importlib.util.find_spec(name)
        bases.update(spec.submodule_search_locations or [] if spec else [])
    for base in sorted(bases):
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".js")):
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, base).encode())
                    with open(path, "rb") as f:
                        h.update(hashlib.sha256(f.read()).digest())
    versions = {d: importlib.metadata.version(d) for d in ("numpy", "scipy", "scikit-learn", "polars")}
    return json.dumps({"format": FORMAT, "python": sys.version, "versions": versions, "code": h.hexdigest()})


def load(name: str) -> Fitted | None:
    """The entry ``name``, or None when there is none or it cannot be read whole."""
    path = os.path.join(folder(), name)
    if not os.path.lexists(path):
        return None
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        params, sample = meta["marginals"], meta["sample"]
        if not (isinstance(params, list) and all(isinstance(p, str) for p in params)
                and isinstance(sample, list) and len(sample) == 2 and all(type(n) is int for n in sample)
                and all(meta[k] is None or isinstance(meta[k], str) for k in ("stability", "note"))):
            raise ValueError("unexpected meta.json")
        importance = _read_frame(os.path.join(path, "importance.arrow"))
        marginals = {p: _read_frame(os.path.join(path, f"marginal-{i}.arrow")) for i, p in enumerate(params)}
        return Fitted(importance, marginals, tuple(sample), meta["stability"], meta["note"])
    except Exception:  # damaged or not ours: a miss, and out of the way of the next save
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
        return None


def _read_frame(path: str) -> Any:
    import polars as pl

    with open(path, "rb") as f:  # read, not memory-mapped: a file cut short is an error, not a SIGBUS
        return pl.read_ipc(io.BytesIO(f.read()))


def save(name: str, fitted: Fitted) -> None:
    """Keep ``fitted`` as entry ``name``; best effort (a cache is never worth a failed report)."""
    tmp = None
    try:
        os.makedirs(folder(), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=folder())
        fitted.importance.write_ipc(os.path.join(tmp, "importance.arrow"))
        for i, m in enumerate(fitted.marginals.values()):
            m.write_ipc(os.path.join(tmp, f"marginal-{i}.arrow"))
        meta = {"marginals": list(fitted.marginals), "sample": list(fitted.sample),
                "stability": fitted.stability, "note": fitted.note}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.rename(tmp, os.path.join(folder(), name))  # fails when another writer got there first
        tmp = None
    except Exception:  # read-only, full, lost the race: the next report fits it again
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
