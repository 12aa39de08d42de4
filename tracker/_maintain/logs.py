"""Write-ahead logs as upkeep sees them: whose they are, whether their writer
is still alive, what they hold and whether ``compact`` may seal or delete them."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from hptrack._files.checks import ERROR, WARNING, Problem, newer, rel_path, short
from hptrack._files.rows import describe_bad_rows, log_rows_table
from hptrack._files.store import Store
from hptrack._files.wal import read_log
from hptrack._write.writer import log_is_live
from hptrack.schema import SCHEMA_VERSION

# An empty log younger than this may be one a writer is creating right now
# (the file exists a moment before its header and lock do).
EMPTY_LOG_GRACE_S = 60.0


# --- liveness --------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a zombie has exited; it only waits for its parent to reap it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def writer_alive(path: str, header: dict | None) -> bool:
    """Whether the writer of a log may still use it.

    The flock is the primary signal. The pid check covers the moments a live
    writer holds no lock on its log: just after creating it, and after it has
    rotated (closed) the log but before sealing and deleting it.
    """
    if not os.path.isfile(path) or os.path.islink(path):
        return False  # probing a FIFO would block; a link is not a writer's log
    if log_is_live(path):
        return True
    if header and header.get("host") == socket.gethostname():
        pid = header.get("pid")
        if isinstance(pid, int) and pid > 0 and _pid_alive(pid):
            return True
    return False


# --- files -----------------------------------------------------------------

@dataclass
class Log:
    path: str
    rel: str
    header: dict | None
    rows: list
    live: bool
    problems: list[Problem]
    sealable: bool      # holds events compact may seal (when not live)
    disposable: bool    # holds no events at all: compact may delete it (when not live)
    table: Any = None  # its readable rows in the stored schema (pyarrow), see log_table
    bad_rows: list = field(default_factory=list)  # (seq, reason) of rows left out of table


def inspect_log(st: Store, path: str) -> Log | None:
    rel = rel_path(st, path)
    try:
        lc = read_log(path)
    except FileNotFoundError:
        return None  # sealed and deleted since it was listed
    live = lc.regular and writer_alive(path, lc.header)
    log = Log(path, rel, lc.header, lc.rows, live, [], sealable=False, disposable=False)
    if lc.problem:
        if lc.cut_at_creation:
            try:
                young = time.time() - os.path.getmtime(path) < EMPTY_LOG_GRACE_S
            except FileNotFoundError:
                return None
            log.disposable = not young
            if not live and not young:
                log.problems.append(Problem(path, "empty_log", WARNING,
                                            f"{rel}: write-ahead log cut short while it was being created "
                                            "(its writer crashed); it holds no events: compact deletes it"))
            return log
        log.problems.append(Problem(path, "bad_log", ERROR,
                                    f"{rel}: not a readable hptrack write-ahead log ({lc.problem}); "
                                    "move it out of wal/ (compact leaves it alone)"))
        return log
    assert lc.header is not None  # read_log sets problem when a log has no header
    version = lc.header.get("schema_version", 1)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        log.problems.append(Problem(path, "newer_schema", ERROR, newer(rel, version)))
        return log
    log.sealable = True
    _read_rows(log, version)
    if lc.bad_records:
        log.sealable = False
        where = "; ".join(f"the record at byte {pos} {why}" for pos, why in lc.bad_records[:3])
        more = f" and {len(lc.bad_records) - 3} more" if len(lc.bad_records) > 3 else ""
        log.problems.append(Problem(
            path, "damaged_log", ERROR,
            f"{rel}: {where}{more}; no writer writes such a record (the file was damaged or forged); "
            f"readers use its {len(lc.rows)} other events; keep the file for recovery or move it out "
            "(compact leaves it alone)"))
    elif lc.torn_bytes:
        pos = lc.size - lc.torn_bytes
        if lc.damaged:
            log.sealable = False
            log.problems.append(Problem(
                path, "damaged_log", ERROR,
                f"{rel}: the record at byte {pos} is damaged but intact records follow it, so events "
                f"after it cannot be read ({lc.torn_bytes} bytes); keep the file for recovery "
                "(compact leaves it alone)"))
        elif not live:  # a live writer's last record may simply be mid-write
            log.problems.append(Problem(
                path, "torn_log", WARNING,
                f"{rel}: the last {lc.torn_bytes} bytes are a record cut short when its writer crashed; "
                "that record was never acknowledged, so nothing acknowledged is lost; "
                "compact seals the rest and deletes the log"))
    if not live and log.sealable:
        who = f"writer {lc.header.get('writer_id')}"
        if lc.header.get("pid") is not None:
            who += f" (pid {lc.header.get('pid')} on {lc.header.get('host')})"
        log.problems.append(Problem(
            path, "orphan_log", WARNING,
            f"{rel}: write-ahead log of {who}, which is no longer running; its {len(lc.rows)} "
            "events are readable and will be sealed by compact (into a Parquet segment)"))
    return log


def _read_rows(lg: Log, version) -> None:
    """Turn the log's rows into its table, leaving out (and naming) rows that
    break the event rules."""
    if not lg.rows:
        return
    assert lg.header is not None  # a log with rows has a header
    try:
        lg.table, lg.bad_rows = log_rows_table(lg.rows, lg.header["writer_id"], version)
    except Exception as exc:  # no row can be read: log_table says so
        lg.table = exc
        return
    if lg.bad_rows:
        # A warning, not an error: verify --quarantine must not move the good
        # events out of the store before compact has sealed them.
        lg.problems.append(Problem(lg.path, "bad_rows", WARNING,
                                   f"{lg.rel}: {describe_bad_rows(lg.bad_rows, lg.table.num_rows)}; "
                                   "compact seals those and keeps this log, which you may then move "
                                   "out of wal/ (what is left in it cannot be stored, and shows as a "
                                   "seq_gap of its writer)"))


def log_table(lg: Log) -> Any:
    """A log's readable rows in the stored schema; None (and a problem noted) if none fit it."""
    if lg.table is None and lg.rows:
        assert lg.header is not None  # a log with rows has a header
        _read_rows(lg, lg.header.get("schema_version", 1))
    if isinstance(lg.table, Exception):  # checksummed, so written this way: a forged or foreign log
        lg.sealable = False
        lg.problems.append(Problem(lg.path, "bad_log", ERROR,
                                   f"{lg.rel}: its records do not match the event "
                                   f"schema ({short(lg.table)}); move it out of wal/ (compact leaves it alone)"))
        lg.table = None
        return None
    return lg.table
