"""Fallback logs as ``verify`` sees them: events a writer could not put in the store.

When a store refuses writes (a full disk), a writer puts its flushes, fsynced,
in ``$HPTRACK_FALLBACK_DIR`` (default ``<tempdir>/hptrack-fallback``), one log
per episode, with the store's root in the header (see _write/writer.py). A
writer that lives until the store takes writes again moves them in itself; one
that died leaves acknowledged events only there, which ``verify`` reports.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

from hptrack._files.checks import ERROR, WARNING, Problem
from hptrack._files.store import Store
from hptrack._files.wal import MAGIC, SUFFIX, read_log
from hptrack._read.views import Connection

_HEAD = struct.Struct("<II")
_MAX_HEADER = 1 << 16


def fallback_dir() -> str:
    import tempfile

    from hptrack._write.writer import FALLBACK_ENV

    return os.environ.get(FALLBACK_ENV) or os.path.join(tempfile.gettempdir(), "hptrack-fallback")


def _header(path: str) -> dict | None:
    """The JSON header of a log, reading at most its first record (never the whole file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + _HEAD.size)
            if len(head) < len(MAGIC) + _HEAD.size or not head.startswith(MAGIC):
                return None
            length, crc = _HEAD.unpack_from(head, len(MAGIC))
            if length > _MAX_HEADER:
                return None
            payload = f.read(length)
        if zlib.crc32(payload) != crc:
            return None
        header = json.loads(payload)
        return header if isinstance(header, dict) else None
    except (OSError, ValueError):
        return None


def fallback_logs(st: Store) -> list[str]:
    """The fallback logs on this machine that name ``st`` as their store."""
    folder = fallback_dir()
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    paths = []
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith(SUFFIX) and os.path.isfile(path) and (_header(path) or {}).get("store") == st.root:
            paths.append(path)
    return paths


def fallback_problems(st: Store, con: Connection) -> list[Problem]:
    """One problem per fallback log of ``st``: an error while it holds events
    the store lacks (``ev``, the identity table verify built on ``con``)."""
    import pyarrow as pa

    from hptrack._maintain.logs import writer_alive

    problems = []
    for path in fallback_logs(st):
        try:
            lc = read_log(path)
        except OSError:
            continue
        writer = (lc.header or {}).get("writer_id")
        seqs = [r[0] for r in lc.rows]
        con.register("_fallback", pa.table({"writer_id": [writer] * len(seqs), "seq": seqs}))
        (missing,), = con.sql("SELECT count(*) FROM (SELECT DISTINCT writer_id, seq FROM _fallback "
                              "EXCEPT SELECT writer_id, seq FROM ev)").fetchall()
        con.unregister("_fallback")
        restore = (f"copy it into {st.wal_dir}{os.sep} and run `hptrack compact`")
        if writer_alive(path, lc.header):
            problems.append(Problem(path, "fallback_log", WARNING,
                                    f"{path}: writer {writer}, still running, could not write {missing} "
                                    "of its events to the store and keeps them (fsynced) in this fallback "
                                    "log; it moves them into the store once the store takes writes again"))
        elif missing:
            problems.append(Problem(path, "fallback_log", ERROR,
                                    f"{path}: {missing} acknowledged events of writer {writer} are not in "
                                    "the store but only in this fallback log (the store refused writes, "
                                    f"e.g. a full disk, and the writer died): {restore}"))
        else:
            problems.append(Problem(path, "fallback_log", WARNING,
                                    f"{path}: a fallback log whose {len(seqs)} events are all in the store "
                                    "already; safe to delete"))
    return problems
