"""``verify``: what is wrong with a store, in plain words, and how to fix it.

Safe next to running writers; it reads and (with ``quarantine``) moves files,
never deletes.

>>> report = verify("./.hptrack")
>>> report.ok, [p.message for p in report.problems]

Problem kinds. Errors (data unreadable, missing, or not ours to read):
``no_store``, ``empty_segment``, ``unreadable_segment``, ``missing_columns``,
``wrong_column_types``, ``newer_schema``, ``incomplete_rows``, ``bad_log``,
``damaged_log``, ``seq_gap``, ``conflicting_events``, ``fallback_log`` (acknowledged
events a dead writer could only put in a fallback log on this machine). Warnings (leftovers a
crash is allowed to leave, which ``compact`` clears, and files that are not
hptrack's): ``temp_file``, ``torn_log``, ``orphan_log``, ``empty_log``,
``duplicates``, ``foreign_file``, ``unparsable_payload``. ``not_a_file`` (an
error): a link, FIFO, device, socket or folder where a store file belongs.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from hptrack._files.checks import ERROR, WARNING, Problem, newer, rel_path, segment_problems, short
from hptrack._files.store import Store, StoreLike
from hptrack._maintain.fallback import fallback_problems
from hptrack._maintain.logs import inspect_log, log_table
from hptrack._read.views import replaced_files, sql_list
from hptrack.schema import SCHEMA_VERSION

_MAX_GAPS_LISTED = 5


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


# --- verify ----------------------------------------------------------------

def verify(store: StoreLike = None, quarantine: bool = False) -> VerifyReport:
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
    for path, what in st.odd_files():
        report.problems.append(Problem(path, "not_a_file", ERROR,
                                       f"{rel_path(st, path)}: {what}; readers leave it out without opening it: "
                                       "move it out of the store (verify --quarantine does)"))
    # Logs first, then segments: a log sealed in between is then seen twice
    # (harmless) rather than not at all (a false gap).
    wal_paths = st.wal_files()
    logs = [lg for lg in (inspect_log(st, p) for p in wal_paths) if lg is not None]
    for lg in logs:
        report.problems.extend(lg.problems)
    report.n_logs = len(logs)
    _scan_events(st, report, logs)
    order = {ERROR: 0, WARNING: 1}
    report.problems.sort(key=lambda p: (order.get(p.severity, 2), p.kind, p.path))
    if quarantine:
        live = {lg.path for lg in logs if lg.live}
        for path in dict.fromkeys(p.path for p in report.errors):
            if st.exists(path) and path not in live and path != st.root:  # a store-wide problem names the root
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


def _wal_arrow(report, logs):
    import pyarrow as pa

    tables = []
    for lg in logs:
        # A damaged log's readable rows still count; a newer one's rows may not parse.
        if lg.header and lg.rows and not any(p.kind == "newer_schema" for p in lg.problems):
            t = log_table(lg)
            if t is None:  # then compact cannot seal it either: no orphan_log promise
                report.problems[:] = [p for p in report.problems
                                      if not (p.path == lg.path and p.kind == "orphan_log")]
                report.problems.append(lg.problems[-1])
                continue
            tables.append(t.append_column("filename", pa.array([lg.path] * t.num_rows, pa.string())))
    if not tables:
        return None
    return pa.concat_tables(tables)


_IDENTITY = "filename, event_id, writer_id, seq, search_id, schema_version, ts, payload_ok"
# a payload the views' JSON functions cannot parse (they read it as NULL): not JSON, or
# a lone surrogate escape, as json.dumps wrote exception messages naming undecodable files
_PAYLOAD_OK = "coalesce(json_valid(payload), true) AS payload_ok"


def _load_identity(con, segments, wal) -> None:
    """One table ``ev`` of every row's identity columns, from segments and logs."""
    con.sql("DROP TABLE IF EXISTS ev")
    parts = []
    if segments:
        parts.append(f"SELECT * EXCLUDE (payload) FROM (SELECT {_IDENTITY.replace('payload_ok', 'payload')}, "
                     f"{_PAYLOAD_OK} FROM read_parquet({sql_list(segments)}, filename = true, "
                     "union_by_name = true, hive_partitioning = false))")
    if wal is not None:
        parts.append(f"SELECT {_IDENTITY.replace('payload_ok', _PAYLOAD_OK)} FROM _wal")
    if not parts:
        parts.append(f"SELECT {_IDENTITY} FROM (SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS event_id, "
                     "NULL::VARCHAR AS writer_id, NULL::BIGINT AS seq, NULL::VARCHAR AS search_id, "
                     "NULL::SMALLINT AS schema_version, NULL::TIMESTAMPTZ AS ts, true AS payload_ok) WHERE false")
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
        good: list[str] = []
        footers: dict = {}
        for path in segments:
            if path in bad:
                continue
            found = segment_problems(st, path, footers)
            if found is None:
                continue
            if found:
                bad[path] = found
            else:
                good.append(path)
        # files a merged file replaces await deletion by compact: readers leave them out
        replaced = replaced_files(segments, footers)
        good = [p for p in good if p not in replaced]
        for p in replaced:
            bad.pop(p, None)
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
    report.n_segments = len(segments) - len(replaced)
    for found in bad.values():
        report.problems.extend(found)
    _check_rows(st, report, con)
    report.problems.extend(fallback_problems(st, con))


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
    for path, n in q("SELECT filename, count(*) FROM ev WHERE NOT payload_ok GROUP BY 1 ORDER BY 1"):
        report.problems.append(Problem(path, "unparsable_payload", WARNING,
                                       f"{rel_path(st, path)}: the payload of {n} event(s) is not JSON that "
                                       "the views can parse (e.g. a lone surrogate escape such as \\udcff); "
                                       "those fields (error, metrics, name, ...) read as NULL, the raw text "
                                       "stays in events.payload"))
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
        named = ", ".join(rel_path(st, f) for f in files[:5])
        named += f" and {len(files) - 5} more" if len(files) > 5 else ""
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
