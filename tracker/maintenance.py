"""Store upkeep: ``verify`` says what is wrong and how to fix it; ``compact``
seals orphaned write-ahead logs and merges small segments.

Both are safe next to running writers. ``compact`` never touches a log a live
writer holds, and only deletes files it has read and rewritten; every step
first writes the new file (temp name, fsync, rename) and only then deletes
the old ones, so a kill at any moment leaves each event in at least one file.
Readers de-duplicate on ``event_id``, and running ``compact`` again finishes
the job.

>>> report = verify("./.hptrack")
>>> report.ok, [p.message for p in report.problems]
>>> compact("./.hptrack").to_dict()

Problem kinds. Errors (data unreadable, missing, or not ours to read):
``no_store``, ``empty_segment``, ``unreadable_segment``, ``missing_columns``,
``wrong_column_types``, ``newer_schema``, ``incomplete_rows``, ``bad_log``,
``damaged_log``, ``seq_gap``, ``conflicting_events``. Warnings (leftovers a
crash is allowed to leave, which ``compact`` clears, and files that are not
hptrack's): ``temp_file``, ``torn_log``, ``orphan_log``, ``empty_log``,
``duplicates``, ``foreign_file``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field

from .checks import ERROR, REQUIRED_COLUMNS, WARNING, Problem, newer, rel_path, segment_problems, short
from .rows import to_table
from .schema import COLUMNS, SCHEMA_VERSION
from .store import Store
from .read import sql_list
from .wal import fsync_dir, read_log
from .writer import log_is_live

# An empty log younger than this may be one a writer is creating right now
# (the file exists a moment before its header and lock do).
EMPTY_LOG_GRACE_S = 60.0
_MAX_GAPS_LISTED = 5
# Rows per row group of a compacted file: small enough that DuckDB has several
# to read in parallel and that as_of (time-sorted files) skips whole groups,
# large enough to compress well.
COMPACT_ROW_GROUP = 16_384


@dataclass
class VerifyReport:
    root: str
    problems: list[Problem] = field(default_factory=list)
    n_segments: int = 0
    n_logs: int = 0
    n_events: int = 0       # distinct events readable from segments and logs
    n_searches: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (from, to)

    @property
    def ok(self) -> bool:
        """True when nothing is unreadable or lost (warnings are fine)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "n_segments": self.n_segments,
                "n_logs": self.n_logs, "n_events": self.n_events, "n_searches": self.n_searches,
                "problems": [p.to_dict() for p in self.problems],
                "quarantined": [{"from": a, "to": b} for a, b in self.quarantined]}


@dataclass
class CompactResult:
    files_before: int = 0       # segments + logs before
    files_after: int = 0        # segments + logs after
    events: int = 0             # rows held by segment files after compaction
    sealed_logs: int = 0        # logs of dead writers sealed into segments (or, if empty, deleted)
    removed_duplicates: int = 0  # duplicate rows dropped while merging
    merged_searches: int = 0    # partitions rewritten as one file
    removed_temp_files: int = 0  # stale temporary files of interrupted writes
    skipped: list[str] = field(default_factory=list)  # damaged files left in place

    def to_dict(self) -> dict:
        return asdict(self)


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
    if log_is_live(path):
        return True
    if header and header.get("host") == socket.gethostname():
        pid = header.get("pid")
        if isinstance(pid, int) and pid > 0 and _pid_alive(pid):
            return True
    return False


# --- files -----------------------------------------------------------------

@dataclass
class _Log:
    path: str
    rel: str
    header: dict | None
    rows: list
    live: bool
    problems: list[Problem]
    sealable: bool      # holds events compact may seal (when not live)
    disposable: bool    # holds no events at all: compact may delete it (when not live)


def _inspect_log(st: Store, path: str) -> _Log | None:
    rel = rel_path(st, path)
    try:
        lc = read_log(path)
    except FileNotFoundError:
        return None  # sealed and deleted since it was listed
    live = writer_alive(path, lc.header)
    log = _Log(path, rel, lc.header, lc.rows, live, [], sealable=False, disposable=False)
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
    version = lc.header.get("schema_version", 1)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        log.problems.append(Problem(path, "newer_schema", ERROR, newer(rel, version)))
        return log
    log.sealable = True
    if lc.torn_bytes:
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


# --- verify ----------------------------------------------------------------

def verify(store=None, quarantine=False) -> VerifyReport:
    """Check every file of a store; return what is wrong, in plain words.

    Errors mean data that cannot be read or is missing (damaged segments, logs
    that are not logs, files from a newer hptrack, gaps in a writer's sequence
    numbers). Warnings are leftovers a crash is allowed to leave (temporary
    files, torn log tails, logs of dead writers, events stored twice) and
    foreign files; ``compact`` clears the leftovers.

    ``quarantine=True`` moves every file with an error (never a live writer's
    log) to ``<store>/quarantine/``, keeping its path inside the store; nothing
    is deleted, and readers no longer stumble on it.

    >>> r = verify()
    >>> r.ok, r.n_events, [p.message for p in r.problems]
    """
    st = store if isinstance(store, Store) else Store(store)
    report = VerifyReport(st.root)
    if not st.found():
        report.problems.append(Problem(st.root, "no_store", ERROR,
                                       f"no store at {st.root}: check the path (--store, $HPTRACK_STORE)"))
        return report
    for path in st.temp_files():
        report.problems.append(Problem(path, "temp_file", WARNING,
                                       f"{rel_path(st, path)}: leftover temporary file from an interrupted "
                                       "write; safe to delete (compact removes it)"))
    for path in st.other_files():
        where = "events/" if path.startswith(st.events_dir + os.sep) else "wal/"
        report.problems.append(Problem(path, "foreign_file", WARNING,
                                       f"{rel_path(st, path)}: not an hptrack file; hptrack ignores it, but "
                                       f"nothing but hptrack files belongs in {where}: move it out of the store"))
    # Logs first, then segments: a log sealed in between is then seen twice
    # (harmless) rather than not at all (a false gap).
    wal_paths = st.wal_files()
    logs = [lg for lg in (_inspect_log(st, p) for p in wal_paths) if lg is not None]
    for lg in logs:
        report.problems.extend(lg.problems)
    report.n_logs = len(logs)
    _scan_events(st, report, logs)
    order = {ERROR: 0, WARNING: 1}
    report.problems.sort(key=lambda p: (order.get(p.severity, 2), p.kind, p.path))
    if quarantine:
        live = {lg.path for lg in logs if lg.live}
        for path in dict.fromkeys(p.path for p in report.errors):
            if st.exists(path) and path not in live:
                report.quarantined.append((path, _quarantine(st, path)))
    return report


def _quarantine(st: Store, path: str) -> str:
    """Move ``path`` under <store>/quarantine/, never over another file."""
    base = st.root if st.is_remote_path(path) else st.local_dir  # a remote store's logs are local
    target = f"{base}/quarantine/{rel_path(st, path)}"
    if st.exists(target):
        target += f".{uuid.uuid4().hex[:8]}"
    st.move(path, target)
    return target


def _log_table(lg: _Log):
    """A log's rows in the stored schema; None (and a problem noted) if they do not fit it."""
    try:
        return to_table(lg.rows, lg.header["writer_id"], lg.header.get("schema_version", 1))
    except Exception as exc:  # checksummed, so written this way: a forged or foreign log
        lg.sealable = False
        lg.problems.append(Problem(lg.path, "bad_log", ERROR,
                                   f"{lg.rel}: its records do not match the event "
                                   f"schema ({short(exc)}); move it out of wal/ (compact leaves it alone)"))
        return None


def _wal_arrow(report, logs):
    import pyarrow as pa

    tables = []
    for lg in logs:
        # A damaged log's readable rows still count; a newer one's rows may not parse.
        if lg.header and lg.rows and not any(p.kind == "newer_schema" for p in lg.problems):
            t = _log_table(lg)
            if t is None:
                report.problems.append(lg.problems[-1])
                continue
            tables.append(t.append_column("filename", pa.array([lg.path] * t.num_rows, pa.string())))
    if not tables:
        return None
    return pa.concat_tables(tables)


_IDENTITY_COLUMNS = ("event_id", "writer_id", "seq", "ts", "search_id")
_IDENTITY = "filename, event_id, writer_id, seq, search_id, schema_version, ts"


def _load_identity(con, segments, wal) -> None:
    """One table ``ev`` of every row's identity columns, from segments and logs."""
    con.sql("DROP TABLE IF EXISTS ev")
    parts = []
    if segments:
        parts.append(f"SELECT {_IDENTITY} FROM read_parquet({sql_list(segments)}, filename = true, "
                     "union_by_name = true, hive_partitioning = false)")
    if wal is not None:
        parts.append(f"SELECT {_IDENTITY} FROM _wal")
    if not parts:
        parts.append(f"SELECT {_IDENTITY} FROM (SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS event_id, "
                     "NULL::VARCHAR AS writer_id, NULL::BIGINT AS seq, NULL::VARCHAR AS search_id, "
                     "NULL::SMALLINT AS schema_version, NULL::TIMESTAMPTZ AS ts) WHERE false")
    con.sql("CREATE TEMP TABLE ev AS " + " UNION ALL BY NAME ".join(parts))


def _scan_events(st: Store, report: VerifyReport, logs) -> None:
    import duckdb

    con = duckdb.connect(":memory:")
    st.register(con)
    con.sql("SET python_enable_replacements = false")
    wal = _wal_arrow(report, logs)
    if wal is not None:
        con.register("_wal", wal)
    bad: dict[str, list[Problem]] = {}
    for _attempt in range(5):
        segments = st.segment_files()
        good = []
        for path in segments:
            if path in bad:
                continue
            found = segment_problems(st, path)
            if found is None:
                continue
            if found:
                bad[path] = found
            else:
                good.append(path)
        try:
            _load_identity(con, good, wal)
            break
        except duckdb.Error as first_error:
            vanished = [p for p in good if not st.exists(p)]
            if vanished:
                continue  # a compaction replaced files while we read: list again
            n_bad = len(bad)
            for path in good:  # find the culprit(s): data pages a footer check cannot see
                try:
                    _load_identity(con, [path], None)
                except duckdb.Error as exc:
                    if st.exists(path):
                        bad[path] = [Problem(path, "unreadable_segment", ERROR,
                                             f"{rel_path(st, path)}: its data cannot be decoded ({short(exc)}); "
                                             "queries fail while it is in the store: move it out "
                                             "(restore it from a backup if you have one)")]
            if len(bad) == n_bad:
                raise first_error  # not one file's fault (e.g. files whose schemas cannot be unified)
    else:
        raise RuntimeError(f"could not read a stable listing of {st.root}: files keep changing")
    report.n_segments = len(segments)
    for found in bad.values():
        report.problems.extend(found)
    _check_rows(st, report, con)


def _check_rows(st: Store, report: VerifyReport, con) -> None:
    def q(sql, *params):
        return con.sql(sql, params=list(params)).fetchall()

    for path, version in q("SELECT filename, max(schema_version) FROM ev GROUP BY 1 "
                           "HAVING max(schema_version) > ? ORDER BY 1", SCHEMA_VERSION):
        if path.endswith(".parquet"):  # logs were judged by their header
            report.problems.append(Problem(path, "newer_schema", ERROR, newer(rel_path(st, path), version)))
    for path, n in q("SELECT filename, count(*) FROM ev WHERE event_id IS NULL OR writer_id IS NULL "
                     "OR seq IS NULL OR ts IS NULL OR search_id IS NULL GROUP BY 1 ORDER BY 1"):
        report.problems.append(Problem(path, "incomplete_rows", ERROR,
                                       f"{rel_path(st, path)}: {n} rows lack an event_id, writer_id, seq, ts "
                                       "or search_id, so they cannot be identified; move the file out"))
    gaps: dict[str, list[tuple[int, int]]] = {}
    for writer, first, last in q(
            "WITH s AS (SELECT DISTINCT writer_id, seq FROM ev WHERE writer_id IS NOT NULL AND seq >= 0), "
            "g AS (SELECT writer_id, seq, lag(seq) OVER (PARTITION BY writer_id ORDER BY seq) AS prev FROM s) "
            "SELECT writer_id, coalesce(prev, -1) + 1, seq - 1 FROM g "
            "WHERE seq > coalesce(prev, -1) + 1 ORDER BY writer_id, seq"):
        gaps.setdefault(writer, []).append((first, last))
    for writer, ranges in gaps.items():
        n = sum(b - a + 1 for a, b in ranges)
        shown = ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in ranges[:_MAX_GAPS_LISTED])
        if len(ranges) > _MAX_GAPS_LISTED:
            shown += f" and {len(ranges) - _MAX_GAPS_LISTED} more ranges"
        report.problems.append(Problem(
            st.root, "seq_gap", ERROR,
            f"writer {writer}: {n} events are missing (seq {shown}); a segment or log holding them "
            "was deleted or lost. Restore it from a backup if you have one; otherwise they are gone"))
    (total, distinct, searches), = q("SELECT count(*), count(DISTINCT event_id), count(DISTINCT search_id) FROM ev")
    report.n_events, report.n_searches = distinct, searches
    if total > distinct:
        files = [r[0] for r in q(
            "SELECT DISTINCT filename FROM ev WHERE event_id IN "
            "(SELECT event_id FROM ev GROUP BY 1 HAVING count(*) > 1) ORDER BY 1")]
        named = ", ".join(rel_path(st, f) for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        report.problems.append(Problem(
            st.root, "duplicates", WARNING,
            f"{total - distinct} events are stored twice (in {named}); expected after an interrupted "
            "compaction or a crash while sealing a log, and readers count them once: run compact to merge them"))
    for event_id, in q("SELECT event_id FROM ev WHERE event_id IS NOT NULL GROUP BY 1 HAVING "
                       "min(writer_id) <> max(writer_id) OR min(seq) <> max(seq) OR min(ts) <> max(ts) "
                       "ORDER BY 1 LIMIT 20"):
        report.problems.append(Problem(
            st.root, "conflicting_events", ERROR,
            f"event_id {event_id} names two different events (different writer, seq or time); "
            "one of the files holding it was edited or forged: find them with "
            f"hptrack query \"SELECT * FROM events WHERE event_id = '{event_id}'\""))


# --- compact ---------------------------------------------------------------

@contextlib.contextmanager
def _compact_lock(st: Store):
    """One compaction per store at a time: two could race to rewrite a partition.
    The OS drops the lock when the process dies, so a killed compaction never blocks the next."""
    import fcntl

    os.makedirs(st.local_dir, exist_ok=True)  # a remote store's lock guards this machine only
    fd = os.open(os.path.join(st.local_dir, ".compact.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def compact(store=None) -> CompactResult:
    """Seal logs of dead writers into Parquet, then merge each search's segments into one file.

    Safe to kill at any moment (run it again to finish) and to run while writers
    append: live logs are never touched, and only files that were read and
    rewritten are deleted. Damaged files are left in place (see :func:`verify`).

    >>> compact().to_dict()
    {'files_before': 312, 'files_after': 3, 'events': 48210, 'sealed_logs': 1, ...}
    """
    st = store if isinstance(store, Store) else Store(store)
    result = CompactResult()
    if not st.found():
        return result
    with _compact_lock(st):
        result.files_before = len(st.segment_files()) + len(st.wal_files())
        _seal_orphans(st, result)
        _merge_partitions(st, result)
        _remove_stale_temps(st, result)
        segments = st.segment_files()
        result.files_after = len(segments) + len(st.wal_files())
        result.events = _count_rows(st, segments)
    return result


def _count_rows(st: Store, paths) -> int:
    n = 0
    for p in paths:
        try:
            n += st.read_metadata(p).num_rows
        except Exception:
            pass  # damaged or gone: verify reports it
    return n


def _seal_orphans(st: Store, result: CompactResult) -> None:
    for path in st.wal_files():
        lg = _inspect_log(st, path)
        if lg is None or lg.live:
            continue
        if lg.disposable:  # holds no events
            if _unlink(st, path):
                result.sealed_logs += 1
        elif not lg.sealable:
            result.skipped.append(path)
        elif _seal_log(st, lg):
            _unlink(st, path)
            result.sealed_logs += 1
        else:
            result.skipped.append(path)
    if os.path.isdir(st.wal_dir):
        fsync_dir(st.wal_dir)


def _seal_log(st: Store, lg: _Log) -> bool:
    """Write a dead writer's logged rows as the segments it would have written.

    A partition file that already exists is the writer's own seal (it died
    before deleting the log) or ours from a killed run: keep it if it holds
    the rows. Returns False, keeping the log, if it does not.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not lg.rows:
        return True
    writer_id = lg.header["writer_id"]
    table = _log_table(lg)
    if table is None:
        return False
    name = f"{writer_id}-{lg.rows[0][0]:012d}.parquet"
    todo = []
    for search_id in pc.unique(table["search_id"]).to_pylist():
        target = f"{st.partition_dir(search_id)}/{name}"
        if not st.exists(target):
            todo.append(search_id)
        elif not _holds(st, target, table.filter(pc.equal(table["search_id"], search_id))):
            return False
    if todo:
        st.write_segments(table.filter(pc.is_in(table["search_id"], value_set=pa.array(todo))), name)
    return True


def _holds(st: Store, path: str, part) -> bool:
    """Whether the segment at ``path`` already holds every event of ``part``
    (the writer crashed after sealing it but before deleting its log)."""
    try:
        ids = set(st.parquet_file(path).read(columns=["event_id"]).column("event_id").to_pylist())
    except Exception:
        return False
    return set(part.column("event_id").to_pylist()) <= ids


def _read_segment(st: Store, path: str):
    """A segment's table, or None if it must not be compacted (damaged, foreign, newer)."""
    import pyarrow.compute as pc

    table = st.parquet_file(path).read()  # not pq.read_table: it would add a hive 'search' column
    names = set(table.column_names)
    if not set(REQUIRED_COLUMNS) <= names:
        return None
    if table.num_rows:
        top = pc.max(table["schema_version"]).as_py()
        if top is not None and top > SCHEMA_VERSION:
            return None
        if any(table[c].null_count for c in _IDENTITY_COLUMNS):
            return None  # verify calls these rows incomplete
    return table


def _merge_partitions(st: Store, result: CompactResult) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    by_dir: dict[str, list[str]] = {}
    for path in st.segment_files():
        by_dir.setdefault(os.path.dirname(path), []).append(path)
    for directory, paths in by_dir.items():
        if len(paths) < 2:
            continue
        tables, read = [], []
        for path in paths:
            if segment_problems(st, path):  # [] means clean, None means gone
                result.skipped.append(path)
                continue
            try:
                table = _read_segment(st, path)
            except FileNotFoundError:
                continue
            except Exception:
                table = None
            if table is None:
                result.skipped.append(path)
                continue
            tables.append(table)
            read.append(path)
        if len(read) < 2:
            continue
        merged = pa.concat_tables(tables, promote_options="permissive")
        extra = [c for c in merged.column_names if c not in COLUMNS]
        merged = merged.select(list(COLUMNS) + extra)
        merged = merged.sort_by([("ts", "ascending"), ("event_id", "ascending")])
        if merged.num_rows > 1:
            # Copies of one event have one event_id, hence one ts: sorted, they are neighbours.
            ids = merged.column("event_id").combine_chunks()
            keep = pa.concat_arrays([pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))])
            dropped = merged.num_rows - pc.sum(keep).as_py()
            if dropped:
                merged = merged.filter(keep)
                result.removed_duplicates += dropped
        first = merged.column("event_id")[0].as_py() if merged.num_rows else uuid.uuid4().hex
        name = f"compact-{first}.parquet"
        if st.exists(f"{directory}/{name}"):
            # A rerun after a kill can pick the same first event; never replace a file,
            # so no reader or later step ever sees a name change content.
            name = f"compact-{first}-{uuid.uuid4().hex[:8]}.parquet"
        out = st.write_file(merged, directory, name, row_group_size=COMPACT_ROW_GROUP)
        for path in read:
            if path != out:
                _unlink(st, path)
        st.sync_dir(directory)
        result.merged_searches += 1


def _remove_stale_temps(st: Store, result: CompactResult) -> None:
    """Delete temporary files no process can still be writing.

    A writer's temp segment ``.<writer>-<seq>.parquet.<rand>.tmp`` is written
    while its log ``wal/<writer>-<seq>.wal`` still exists; once that log is
    gone or its writer dead, nobody will rename the temp. ``compact-*`` temps
    are only written under the compaction lock, which we hold.
    """
    for path in st.temp_files():
        base = os.path.basename(path)
        if not (base.startswith(".") and base.endswith(".tmp") and path.startswith(st.events_dir + os.sep)):
            continue
        name = base[1:-len(".tmp")].rsplit(".", 1)[0]
        if not name.endswith(".parquet"):
            continue
        if not name.startswith("compact-"):
            log = os.path.join(st.wal_dir, name[:-len(".parquet")] + ".wal")
            if os.path.exists(log):
                try:
                    header = read_log(log).header
                except FileNotFoundError:
                    header = None
                if os.path.exists(log) and writer_alive(log, header):
                    continue
        if _unlink(st, path):
            result.removed_temp_files += 1


def _unlink(st: Store, path: str) -> bool:
    try:
        st.remove(path)
        return True
    except FileNotFoundError:
        return False
