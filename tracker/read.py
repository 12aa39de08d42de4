"""The read side: a DuckDB connection whose views fold the event log into state.

``connect(store, as_of=None)`` lists the store's sealed Parquet segments and
reads the live write-ahead logs, and defines the views ``events, searches,
trials, params, reports, scores`` over them. Every view is a function of the
events up to ``as_of``. Events materialised twice (a log sealed while a crash
was deleting it, a compaction cut short) are de-duplicated on ``event_id``;
only files whose footers say they may share events go through that (see
``split_overlapping``), so a compacted store is read without it. Files a
merged file replaces are left out (see ``segment_state``).
"""

from __future__ import annotations

import hashlib
import numbers
import os
import re
import warnings
from datetime import datetime, timezone

from .checks import rel_path, segment_problems, short
from .errors import SearchNotFound, StoreError
from .rows import describe_bad_rows, log_rows_table, schema
from .schema import SCHEMA_VERSION
from .store import Store
from .wal import read_log

VIEWS = ("events", "searches", "trials", "params", "reports", "scores")

_VIEW_SQL = """
-- the events the views below fold: all of them, except those of searches
-- whose fold compact has stored as a projection (hptrack.projections)
CREATE VIEW _fold_events AS
SELECT * FROM _folded_files WHERE {as_of_filter}
UNION ALL BY NAME
SELECT * FROM (
    SELECT * FROM _overlapping_events WHERE {as_of_filter}
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1
);

CREATE VIEW events AS
SELECT * FROM _fold_events UNION ALL BY NAME SELECT * FROM _projected_files WHERE {as_of_filter};

CREATE VIEW _trial_fold AS
-- One pass over each trial's lifecycle events, no joins. The first terminal
-- event wins as a whole: every field is taken at the same (unique) event_id,
-- with the _null variants so a NULL field is kept rather than skipped.
SELECT search_id, trial_id,
       min(ts) FILTER (WHERE type = 'trial_started') AS started_at,
       min(event_id) FILTER (WHERE type = 'trial_started') AS start_event,
       arg_min(trial_number, event_id) FILTER (WHERE type = 'trial_started') AS recorded_number,
       arg_min(writer_id, event_id) FILTER (WHERE type = 'trial_started') AS writer_id,
       arg_min_null(type, event_id) FILTER (WHERE type <> 'trial_started' AND type <> 'trial_reported') AS end_type,
       arg_min_null(value, event_id) FILTER (WHERE type <> 'trial_started' AND type <> 'trial_reported') AS value,
       arg_min_null(ts, event_id) FILTER (WHERE type <> 'trial_started' AND type <> 'trial_reported') AS finished_at,
       arg_min_null(step, event_id) FILTER (WHERE type <> 'trial_started' AND type <> 'trial_reported') AS end_step,
       arg_min_null(payload, event_id) FILTER (WHERE type <> 'trial_started' AND type <> 'trial_reported') AS end_payload,
       max(step) FILTER (WHERE type = 'trial_reported') AS last_step,
       count(*) FILTER (WHERE type = 'trial_reported') AS n_reports
FROM _fold_events
WHERE type IN ('trial_started', 'trial_reported', 'trial_completed', 'trial_failed', 'trial_pruned')
GROUP BY search_id, trial_id
HAVING count(*) FILTER (WHERE type = 'trial_started') > 0;

CREATE VIEW _trials_folded AS
SELECT search_id, trial_id,
       (row_number() OVER (PARTITION BY search_id ORDER BY started_at, start_event) - 1)::INTEGER
           AS trial_number,
       CASE end_type WHEN 'trial_completed' THEN 'complete' WHEN 'trial_failed' THEN 'failed'
                     WHEN 'trial_pruned' THEN 'pruned' ELSE 'running' END AS state,
       value, started_at, finished_at,
       epoch(finished_at - started_at)::DOUBLE AS duration_s,
       coalesce(end_step, last_step) AS last_step,
       n_reports,
       -- TRY: a payload DuckDB cannot parse (not JSON, a lone surrogate escape written
       -- by an older hptrack) reads as NULL there instead of failing every query
       CASE WHEN end_type = 'trial_failed' THEN TRY(end_payload ->> 'error') END AS error,
       CASE WHEN end_type = 'trial_completed' THEN TRY(end_payload -> 'metrics') END AS metrics,
       recorded_number, writer_id,
       -- every objective of a multi-objective trial (NULL for a single objective)
       CASE WHEN end_type = 'trial_completed' THEN TRY_CAST(TRY(end_payload -> 'values') AS DOUBLE[]) END
           AS "values"
FROM _trial_fold;

CREATE VIEW _trials_projected AS {trials_projected};

CREATE VIEW trials AS
SELECT * FROM _trials_folded UNION ALL BY NAME SELECT * FROM _trials_projected;

CREATE VIEW searches AS
WITH s AS (
    SELECT search_id, min(ts) AS started_at, arg_min(payload, event_id) AS payload
    FROM events WHERE type = 'search_started' GROUP BY ALL
), f AS (
    SELECT search_id, max(ts) AS finished_at FROM events WHERE type = 'search_finished' GROUP BY ALL
), reopened AS (
    SELECT search_id, max(ts) AS last_started FROM events WHERE type = 'search_started' GROUP BY ALL
), t AS (
    -- states as the trials view folds them, without the trial numbering
    SELECT search_id, count(*) AS n_trials,
           count(*) FILTER (WHERE state = 'complete') AS n_complete,
           count(*) FILTER (WHERE state = 'failed') AS n_failed,
           count(*) FILTER (WHERE state = 'pruned') AS n_pruned,
           count(*) FILTER (WHERE state = 'running') AS n_running,
           bool_or(reported) AS reported
    FROM (
        SELECT search_id,
               CASE arg_min_null(type, event_id) FILTER (WHERE type NOT IN ('trial_started', 'trial_reported'))
                   WHEN 'trial_completed' THEN 'complete' WHEN 'trial_failed' THEN 'failed'
                   WHEN 'trial_pruned' THEN 'pruned' ELSE 'running' END AS state,
               bool_or(type = 'trial_reported') AS reported
        FROM _fold_events
        WHERE type IN ('trial_started', 'trial_reported', 'trial_completed', 'trial_failed', 'trial_pruned')
        GROUP BY search_id, trial_id HAVING count(*) FILTER (WHERE type = 'trial_started') > 0
        UNION ALL
        SELECT search_id, state, n_reports > 0 FROM _trials_projected
    ) GROUP BY ALL
), pr0 AS (
    -- the pruner, short (MedianPruner -> median, SuccessiveHalvingPruner -> sha, NopPruner ->
    -- none at all): the same sampler under another pruner is another strategy to compare
    SELECT search_id, regexp_extract(TRY(payload -> 'pruner' ->> 'class'), '[^.]+$') AS cls,
           list_transform(
               [cls, regexp_extract(TRY(payload -> 'pruner' -> 'settings' -> 'wrapped_pruner' ->> 'class'),
                                    '[^.]+$')],
               lambda c: CASE c WHEN '' THEN NULL WHEN 'NopPruner' THEN NULL
                           WHEN 'SuccessiveHalvingPruner' THEN 'sha'
                           ELSE lower(regexp_replace(c, 'Pruner$', '')) END) AS short
    FROM s
), pr AS (
    SELECT search_id, CASE WHEN cls = 'PatientPruner' THEN coalesce('patient-' || short[2], 'patient')
                           ELSE short[1] END AS pruner
    FROM pr0
), fp AS (
    -- the data hptrack.sklearn fitted on (shape and a hash of X and y's sha256)
    SELECT search_id,
           'data ' || replace(trim(TRY(payload -> 'dataset_fingerprint' -> 'X' ->> 'shape'), '[] '), ',', 'x')
           || ' #' || substr(md5(TRY(payload -> 'dataset_fingerprint' -> 'X' ->> 'sha256')
                                 || coalesce(TRY(payload -> 'dataset_fingerprint' -> 'y' ->> 'sha256'), '')),
                             1, 10) AS data
    FROM s
)
SELECT s.search_id, coalesce(TRY(s.payload ->> 'name'), s.search_id) AS name, TRY(s.payload ->> 'strategy') AS strategy,
       TRY(s.payload ->> 'direction') AS direction, TRY(s.payload ->> 'metric') AS metric,
       s.started_at,
       -- a search re-opened after its last finish is running again
       CASE WHEN f.finished_at >= o.last_started THEN f.finished_at END AS finished_at,
       coalesce(t.n_trials, 0) AS n_trials, coalesce(t.n_complete, 0) AS n_complete,
       coalesce(t.n_failed, 0) AS n_failed, coalesce(t.n_pruned, 0) AS n_pruned,
       coalesce(t.n_running, 0) AS n_running,
       TRY_CAST(TRY(s.payload ->> 'seed') AS BIGINT) AS seed,
       TRY(s.payload -> 'space') AS space,
       -- searches are compared only within one task: an explicit task attribute, else the
       -- data sklearn fitted on, else the dataset attribute; null: unknown
       coalesce(nullif(trim(TRY(s.payload ->> 'task')), ''), fp.data,
                nullif(trim(TRY(s.payload ->> 'dataset')), '')) AS task,
       pr.pruner,
       -- what compare and report group by: the strategy with its pruner (tpe+median); a pruner
       -- counts only in a search whose trials report intermediate values, the only searches it
       -- can act on (Optuna gives every study a MedianPruner, used or not)
       coalesce(TRY(s.payload ->> 'strategy'), 'custom')
           || CASE WHEN t.reported THEN coalesce('+' || pr.pruner, '') ELSE '' END AS strategy_label,
       TRY(s.payload ->> 'kind') AS kind,
       s.payload,
       TRY_CAST(TRY(s.payload -> 'directions') AS VARCHAR[]) AS directions  -- NULL: one objective
FROM s LEFT JOIN f USING (search_id) LEFT JOIN reopened o USING (search_id)
LEFT JOIN t USING (search_id) LEFT JOIN pr USING (search_id) LEFT JOIN fp USING (search_id);

CREATE VIEW _params_folded AS
WITH p AS (
    -- (unnest yields nothing for an empty list; a len() filter would only cost a pass)
    SELECT search_id, trial_id, event_id, unnest(params) AS p
    FROM _fold_events WHERE params IS NOT NULL
), latest AS (
    -- the whole last value per name: each field at the same (latest) event_id;
    -- arg_max_null keeps NULL fields (arg_max would skip them), and per field
    -- rather than over the struct, which turns -0.0 into 0.0
    SELECT search_id, trial_id, p.name AS name, arg_max_null(p.kind, event_id) AS kind,
           arg_max_null(p.num, event_id) AS value_num, arg_max_null(p.str, event_id) AS value_str
    FROM p GROUP BY search_id, trial_id, p.name
)
SELECT *,
       CASE kind WHEN 'int' THEN coalesce(value_str, CAST(CAST(value_num AS HUGEINT) AS VARCHAR))
                 WHEN 'bool' THEN CASE WHEN value_num = 1 THEN 'true' ELSE 'false' END
                 WHEN 'float' THEN CAST(value_num AS VARCHAR)
                 WHEN 'null' THEN 'null'
                 ELSE value_str END AS value
FROM latest;

CREATE VIEW _params_projected AS {params_projected};

CREATE VIEW params AS
SELECT * FROM _params_folded UNION ALL BY NAME SELECT * FROM _params_projected;

CREATE VIEW reports AS
SELECT search_id, trial_id, step, resource, value, TRY(payload -> 'metrics') AS metrics, ts
FROM events WHERE type = 'trial_reported';

CREATE VIEW scores AS
SELECT search_id, trial_id, split, fold, coalesce(metric, 'value') AS metric, value, ts, payload
FROM events WHERE type = 'trial_scored';
"""


# names the stored projections (hptrack.projections): a change of the views makes them stale
VIEW_SQL_DIGEST = hashlib.sha256(_VIEW_SQL.encode()).hexdigest()


def parse_time(value) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO-8601 string (UTC if naive)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"cannot read time {value!r}; use ISO 8601, e.g. 2026-11-27T10:30:00Z") from None
    if not isinstance(value, datetime):
        raise TypeError(f"as_of must be a datetime or an ISO-8601 string, got {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def wal_table(store: Store, keep=None):
    """All events held in write-ahead logs (live writers and crashed ones), and
    ``(path, reason)`` of each log left out because it cannot be read. ``keep``,
    a test of a logged row (a tuple in ``schema.ROW_FIELDS`` order), reads only
    the rows it passes: converting every row is most of the cost."""
    import pyarrow as pa

    tables, left_out = [], []
    for path in store.wal_files():
        try:
            log = read_log(path)
        except FileNotFoundError:
            continue  # sealed and deleted since we listed it
        if log.problem:
            if not log.cut_at_creation:  # an empty log of a crashed writer is normal
                left_out.append((path, log.problem))
            continue
        version = log.header.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            left_out.append((path, f"written by a newer hptrack (schema v{version})"))
            continue
        if log.bad_records:
            left_out.append((path, f"{len(log.bad_records)} damaged record(s) (the rest is read)"))
        rows = log.rows if keep is None else [r for r in log.rows if keep(r)]
        if rows:
            try:
                table, bad = log_rows_table(rows, log.header["writer_id"], version)
            except Exception as exc:  # checksummed rows that are not events: a forged log
                left_out.append((path, f"records do not match the event schema ({short(exc)})"))
                continue
            tables.append(table)
            if bad:
                left_out.append((path, describe_bad_rows(bad, table.num_rows)))
    return (pa.concat_tables(tables) if tables else schema().empty_table()), left_out


REMOTE_READERS = 16  # footers read at once from an object store


def map_files(store: Store, fn, paths) -> list:
    """``[fn(p) for p in paths]``; for a remote store several at once, since
    each file read (a footer) is a round trip to the object store."""
    if store.remote and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(REMOTE_READERS) as pool:
            return list(pool.map(fn, paths))
    return [fn(p) for p in paths]


def readable_segments(store: Store, footers: dict | None = None):
    """The store's segments that readers use (they pass the footer checks and no
    readable merged file replaces them), and ``(path, reason)`` of the damaged
    others (see hptrack.checks). ``footers`` receives each good one's footer."""
    live, left_out, _ = segment_state(store, footers)
    return live, left_out


def segment_state(store: Store, footers: dict | None = None):
    """``(live, left_out, replaced)`` of the store's segments: the ones readers use,
    ``(path, reason)`` of the damaged ones, and ``path -> [merged files]`` of
    those that merged files replace.

    ``compact`` never deletes a file when it merges it: the merged file's footer
    names the files it holds (REPLACES_KEY), readers leave those out from then
    on, and a later compaction deletes them once its grace period has passed,
    so a reader that listed them just before can still read them.
    """
    footers = {} if footers is None else footers
    paths = store.segment_files()
    checked = map_files(store, lambda p: segment_problems(store, p, footers), paths)
    present = [(p, found) for p, found in zip(paths, checked) if found is not None]  # None: gone since listed
    replaced = replaced_files([p for p, _ in present], footers)
    live = [p for p, found in present if not found and p not in replaced]
    left_out = [(p, found[0].message) for p, found in present if found and p not in replaced]
    return live, left_out, replaced


def replaced_files(paths, footers) -> dict[str, list[str]]:
    """``path -> [merged files replacing it]`` for those of ``paths`` that a
    merged file among them (with its footer in ``footers``) replaces."""
    listed = set(paths)
    out: dict[str, list[str]] = {}
    for p in paths:
        footer = footers.get(p)
        for name in footer.replaces if footer is not None else ():
            target = os.path.join(os.path.dirname(p), name)
            if target in listed and target != p:
                out.setdefault(target, []).append(p)
    return out


def split_overlapping(segments, footers, wal):
    """(distinct, overlapping): segments that cannot share an event with any other
    file, and those that may.

    An event lives in its search's partition and is identified by (writer_id,
    seq), so two files can hold a copy of one event only if they sit in one
    folder and their footers' writer_id and seq ranges both overlap (a log
    sealed twice, a compaction cut short). Only the overlapping ones, and the
    write-ahead logs' rows, need the reader's de-duplication: after ``compact``
    that is usually none, and a window over every event is most of a query's
    cost. A file without statistics counts as overlapping. A single file never
    holds an event twice (writers and compact both write each one once).
    """
    boxes = {}  # path -> (folder, writer range, seq range) or None
    for path in segments:
        footer = footers.get(path)
        w, q = (footer.writer_range, footer.seq_range) if footer is not None else (None, None)
        boxes[path] = (os.path.dirname(path), w, q) if w and q else None
    overlapping = {p for p, b in boxes.items() if b is None}
    by_folder: dict[str, list] = {}
    for path, b in boxes.items():
        if b is not None:
            by_folder.setdefault(b[0], []).append((b[1], b[2], path))
    if wal is not None and wal.num_rows:
        for (sid, writer), (lo, hi) in _wal_ranges(wal).items():
            folder = _partition_dir_of(segments, sid)
            if folder is None:
                continue
            for w, q, path in by_folder.get(folder, ()):
                if w[0] <= writer <= w[1] and q[0] <= hi and lo <= q[1]:
                    overlapping.add(path)
    for items in by_folder.values():
        if len(items) < 2:
            continue
        # sweep over writer ranges; within each writer-overlapping pair compare seq ranges
        items.sort(key=lambda it: it[0][0])
        active = []
        for w, q, path in items:
            active = [a for a in active if a[0][1] >= w[0]]
            for aw, aq, apath in active:
                if aq[0] <= q[1] and q[0] <= aq[1]:
                    overlapping.add(path)
                    overlapping.add(apath)
            active.append((w, q, path))
    distinct = [p for p in segments if p not in overlapping]
    return distinct, [p for p in segments if p in overlapping]


def _wal_ranges(wal) -> dict:
    """(search_id, writer_id) -> (min seq, max seq) of the logs' rows."""
    import pyarrow.compute as pc  # noqa: F401  (group_by lives on the table)

    g = wal.group_by(["search_id", "writer_id"]).aggregate([("seq", "min"), ("seq", "max")])
    return {(sid, w): (lo, hi) for sid, w, lo, hi in zip(
        g["search_id"].to_pylist(), g["writer_id"].to_pylist(), g["seq_min"].to_pylist(), g["seq_max"].to_pylist())}


def _partition_dir_of(segments, search_id):
    """The folder of ``search_id``'s partition, in the same spelling as the segments' paths."""
    if not segments:
        return None
    events_dir = os.path.dirname(os.path.dirname(segments[0]))
    return os.path.join(events_dir, f"search={search_id}")


_GLOB_CHARS = re.compile(r"[*?\[]")


def literal_path(path: str) -> str:
    """``path`` as a pattern that DuckDB's file readers match only literally:
    they take every path as a glob, so a folder named ``search=*`` (made by hand:
    ids never hold glob characters) would otherwise match every partition. Each
    of ``* ? [`` becomes a one-character class (``[*]``), which DuckDB's globbing
    and fsspec's both read as that character."""
    return _GLOB_CHARS.sub(lambda m: f"[{m.group()}]", path) if _GLOB_CHARS.search(path) else path


def sql_list(paths) -> str:
    """A DuckDB list literal of file paths, each matched literally (see literal_path)."""
    return "[" + ", ".join("'" + literal_path(p).replace("'", "''") + "'" for p in paths) + "]"


def scan_sql(paths, footers) -> str:
    """SQL reading the segments ``paths``: one ``read_parquet`` per column list,
    joined by name. union_by_name would do it in one scan, but it reads every
    file's footer each time a query (or a view over it) is bound, which before
    a compaction costs more than most queries."""
    groups: dict[tuple, list[str]] = {}
    for p in paths:
        footer = footers.get(p)
        groups.setdefault(footer.columns if footer is not None else (p,), []).append(p)
    return " UNION ALL BY NAME ".join(
        f"SELECT * FROM read_parquet({sql_list(group)}, hive_partitioning = false)" for group in groups.values())


def connect(store=None, as_of=None, *, strict=False, projections=True):
    """A DuckDB connection with the views ``events, searches, trials, params,
    reports, scores`` over ``store``, folded as of ``as_of`` (default: now).

    A damaged file (unreadable, foreign, from a newer hptrack) is left out with
    a warning naming it; with ``strict=True`` it is an error instead.
    ``hptrack verify`` says more, ``hptrack verify --quarantine`` moves such
    files aside. ``projections=False`` folds every search from its events even
    where ``compact`` stored the fold (the answers are the same).

    >>> con = hptrack.connect()
    >>> con.sql("SELECT name, n_trials FROM searches").show()
    """
    import duckdb

    st = Store(store)
    for attempt in range(_CONNECT_ATTEMPTS):
        wal, bad_logs = wal_table(st)
        footers: dict = {}
        segments, bad_segments = readable_segments(st, footers)
        distinct, overlapping = split_overlapping(segments, footers, wal)
        used = {}
        if projections and as_of is None:
            from .projections import usable

            used = usable(st, distinct, overlapping, wal, [p for p, _ in bad_segments])
        con = open_connection(st)
        try:
            define_views(con, footers, [p for p in distinct if os.path.dirname(p) not in used],
                         overlapping, wal, as_of, projected=used)
        except duckdb.IOException:
            # A file listed above is gone: a compaction older than its grace period
            # deleted what it had replaced. List again; its replacement is there.
            planned = [*segments, *(p for v in used.values() for p in v[1:])]
            listed = set(st.segment_files()) | set(st.view_files())  # fresh, unlike a remote store's cache
            if attempt + 1 == _CONNECT_ATTEMPTS or all(p in listed for p in planned):
                raise
            con.close()
            continue
        break
    _report_left_out(st, bad_logs + bad_segments + st.odd_files(), strict)
    return con


_CONNECT_ATTEMPTS = 5


def open_connection(st: Store):
    """An empty DuckDB connection set up to read ``st``."""
    import duckdb

    con = duckdb.connect(":memory:")
    st.register(con)
    con.sql("SET python_enable_replacements = false")
    con.sql("SET enable_progress_bar = false")  # a long fold (compact's projections) would draw one
    # This rewrite turns the views' "first/last event wins" (QUALIFY row_number() = 1)
    # into an aggregate that changes -0.0 into 0.0; values must come back as stored.
    con.sql("SET disabled_optimizers = 'top_n_window_elimination'")
    return con


def define_views(con, footers, folded, overlapping, wal=None, as_of=None, projected=None) -> None:
    """The views over segments ``folded`` (which share no event), segments that
    may (``overlapping``) and the logs' rows ``wal``. ``projected``: partition
    folder -> (segments, trials projection, params projection) of searches whose
    fold is read from its projection instead."""
    projected = projected or {}
    con.register("_wal_events", wal if wal is not None else schema().empty_table())
    con.register("_no_events", schema().empty_table())

    def files(paths):
        return scan_sql(paths, footers) if paths else "SELECT * FROM _no_events"

    def stored(paths, view):
        if not paths:
            return f"SELECT * FROM {view} WHERE false"  # typed and empty
        return f"SELECT * FROM read_parquet({sql_list(paths)}, hive_partitioning = false)"

    con.sql(f"CREATE VIEW _folded_files AS {files(folded)}")
    con.sql(f"CREATE VIEW _projected_files AS {files([p for v in projected.values() for p in v[0]])}")
    con.sql(f"CREATE VIEW _overlapping_events AS {files(overlapping)} UNION ALL BY NAME SELECT * FROM _wal_events")
    if as_of is None:
        as_of_filter = "true"
    else:
        con.sql("SET VARIABLE hptrack_as_of = ?::TIMESTAMPTZ", params=[parse_time(as_of)])
        as_of_filter = "ts <= getvariable('hptrack_as_of')"
    con.sql(_VIEW_SQL.format(
        as_of_filter=as_of_filter,
        trials_projected=stored([v[1] for v in projected.values()], "_trials_folded"),
        params_projected=stored([v[2] for v in projected.values()], "_params_folded")))


def _report_left_out(st: Store, left_out, strict: bool) -> None:
    if not left_out:
        return
    listed = "; ".join(f"{rel_path(st, p)}: {why}" for p, why in left_out)
    if strict:
        raise StoreError(f"store {st.root} has {len(left_out)} damaged file(s): {listed} - "
                         "`hptrack verify --quarantine` moves them aside")
    warnings.warn(f"hptrack: left out {len(left_out)} damaged file(s) of store {st.root}: {listed} - "
                  "run `hptrack verify` for details, `hptrack verify --quarantine` to move them aside",
                  RuntimeWarning, stacklevel=3)


def resolve_search(con, search: str) -> tuple[str, str]:
    """(search_id, name) of a search given by name or id."""
    return _resolve(con, search)[:2]


def _resolve(con, search: str) -> tuple[str, str, str]:
    """(search_id, name, search_started payload) of a search given by name or id."""
    # from the search_started events as the searches view reads them, without
    # its trial counts (a fold of every trial of every search)
    rows = con.sql(
        "SELECT search_id, name, payload FROM (SELECT search_id, "
        "coalesce(TRY(payload ->> 'name'), search_id) AS name, payload, started_at FROM ("
        "SELECT search_id, arg_min(payload, event_id) AS payload, "
        "min(ts) AS started_at FROM events WHERE type = 'search_started' GROUP BY search_id)) "
        "WHERE search_id = ? OR name = ? ORDER BY started_at LIMIT 1",
        params=[search, search],
    ).fetchall()
    if not rows:
        names = [r[0] for r in con.sql("SELECT name FROM searches ORDER BY started_at").fetchall()]
        hint = f"known searches: {', '.join(names[:20])}" if names else "the store has no searches yet"
        raise SearchNotFound(f"no search named {search!r} in the store ({hint})")
    return rows[0]


TRIAL_COLUMNS = ("trial_number", "trial_id", "state", "value", "started_at", "finished_at",
                 "duration_s", "last_step", "error")

# the objective columns of a multi-objective search's trials: value_0, value_1, ...
# (reserved for every search, so a column of that name is never a param)
_OBJECTIVE_COLUMN = re.compile(r"value_[0-9]+\Z")


def objective_column(k: int) -> str:
    """The name of objective ``k``'s column in :func:`trials` (``value_0``, ...)."""
    return f"value_{k}"


def is_trial_column(name: str) -> bool:
    """Whether a column of :func:`trials` is the trial's own (state, value, an
    objective, ...) rather than a param."""
    return name in TRIAL_COLUMNS or _OBJECTIVE_COLUMN.match(name) is not None


def objectives(con, search_id: str) -> list:
    """The directions of the search's objectives, in order: one for a
    single-objective search (None if it recorded none), one per objective
    for a multi-objective one (``payload.directions`` of search_started)."""
    rows = con.sql("SELECT arg_min(payload, event_id) FROM events WHERE type = 'search_started' "
                   "AND search_id = ?", params=[search_id]).fetchall()
    return _directions(rows[0][0] if rows else None)


def _directions(payload_text) -> list:
    """``objectives`` from a search_started payload (JSON text)."""
    from .checks import load_json

    payload = load_json(payload_text, {}) if payload_text else {}
    payload = payload if isinstance(payload, dict) else {}
    many = payload.get("directions")
    if isinstance(many, list) and len(many) > 1:
        return [str(d) for d in many]
    return [payload.get("direction")]


def pick_objective(directions: list, objective, search: str) -> int:
    """The index of the objective an analysis uses: ``objective`` checked
    against ``directions`` (see :func:`objectives`), 0 when a single-objective
    search leaves it out. A multi-objective search must name one: using the
    first silently would answer a question nobody asked."""
    n = len(directions)
    listing = ", ".join(f"{k}: {d}" for k, d in enumerate(directions))
    if objective is None:
        if n == 1:
            return 0
        raise ValueError(f"search {search!r} has {n} objectives ({listing}); pick one with "
                         f"objective=0..{n - 1} (--objective in the CLI), or analyse them "
                         "together with hptrack.analysis.pareto (hptrack pareto SEARCH)")
    if isinstance(objective, bool) or not isinstance(objective, numbers.Integral) or not 0 <= objective < n:
        if n == 1:
            raise ValueError(f"search {search!r} has one objective; objective={objective!r} is not "
                             "one of them (use objective=0 or leave it out)")
        choices = ", ".join(map(str, range(n - 1))) + f" or {n - 1}"
        raise ValueError(f"objective={objective!r} is not an objective of search {search!r}: use "
                         f"{choices} ({listing})")
    return int(objective)


def trials(search: str, store=None, as_of=None, con=None, *, strict=False, objective=None):
    """One row per trial of ``search`` (name or id), one column per param.

    Param columns keep the param's name; a name that clashes with a trial
    column gets the prefix ``param:``. Ints become Int64, floats Float64, bools
    Boolean, strings String; a param of mixed kinds is a String column.

    A multi-objective search has one more column per objective, ``value_0``,
    ``value_1``, ... (in the order of its ``directions``; null unless the
    trial completed); ``value`` is objective 0, or objective ``objective``
    when given (which is how analyses take ``objective=``). A param named
    like an objective column gets the prefix ``param:`` too.
    """
    import polars as pl

    from .schema import decode_param

    con = con or connect(store, as_of, strict=strict)
    search_id, name, payload = _resolve(con, search)
    directions = _directions(payload)
    if objective is not None:
        objective = pick_objective(directions, objective, name)
    many = len(directions) > 1   # only then read the values (a JSON parse per trial)
    base = con.sql(
        f"SELECT {', '.join(TRIAL_COLUMNS)}{', values' if many else ''} FROM trials "
        "WHERE search_id = ? ORDER BY trial_number",
        params=[search_id],
    ).pl()
    if many:
        base = _with_objectives(base, len(directions), objective)
    rows = con.sql(
        "SELECT p.trial_id, p.name, p.kind, p.value_num, p.value_str FROM params p "
        "WHERE p.search_id = ? ORDER BY p.name",
        params=[search_id],
    ).pl()
    by_name: dict[str, object] = {}   # name -> a polars column (fast path) or {trial_id: value}
    kinds: dict[str, set] = {}
    for (name,), part in rows.partition_by("name", as_dict=True, maintain_order=True).items():
        kinds[name] = set(part["kind"].unique().to_list())
        column = _param_column(part, kinds[name] - {"null"}, base)
        by_name[name] = column if column is not None else {
            trial_id: decode_param(kind, num, text) for trial_id, kind, num, text in
            part.select("trial_id", "kind", "value_num", "value_str").iter_rows()}
    ids = base["trial_id"].to_list()
    columns = []
    assigned = set()
    for name, values in by_name.items():
        ks = kinds[name] - {"null"}
        dtype = {frozenset({"int"}): pl.Int64, frozenset({"float"}): pl.Float64,
                 frozenset({"int", "float"}): pl.Float64, frozenset({"bool"}): pl.Boolean,
                 frozenset({"str"}): pl.String}.get(frozenset(ks), pl.String)
        if isinstance(values, pl.Series):  # built column-wise by _param_column
            columns.append(_named(values, name, assigned, by_name))
            continue
        col = [values.get(i) for i in ids]
        if dtype is pl.String:
            col = [None if v is None else str(v) for v in col]
        elif dtype is pl.Int64 and any(v is not None and not -2**63 <= v < 2**63 for v in col):
            dtype, col = pl.String, [None if v is None else str(v) for v in col]
        elif dtype is pl.Float64:
            col = [None if v is None else float(v) for v in col]
        columns.append(_named(pl.Series(name, col, dtype=dtype), name, assigned, by_name))
    return base.with_columns(columns) if columns else base


def _named(series, name, assigned, by_name):
    col_name = name
    # never two columns of one name; a param's own name beats a prefixed one
    while is_trial_column(col_name) or col_name in assigned or (col_name != name and col_name in by_name):
        col_name = f"param:{col_name}"
    assigned.add(col_name)
    return series.alias(col_name)


def _with_objectives(base, n: int, objective):
    """``base`` with its ``values`` list as one column per objective and
    ``value`` set to objective ``objective`` (None: objective 0)."""
    import polars as pl

    values = pl.col("values").cast(pl.List(pl.Float64))
    base = base.with_columns(values.list.get(k, null_on_oob=True).alias(objective_column(k))
                             for k in range(n))
    if objective is not None:
        base = base.with_columns(pl.col(objective_column(objective)).alias("value"))
    return base.drop("values")


def _param_column(part, kinds: set, base):
    """One param's column in trial order, built column-wise for the common
    single-kind cases (what a per-value loop takes seconds for at 10^5
    trials); None for the rest (mixed kinds, ints beyond 2**53), which the
    caller decodes one by one."""
    import polars as pl

    k = frozenset(kinds)
    is_null = pl.col("kind") == "null"
    if k in (frozenset({"float"}), frozenset({"int", "float"}), frozenset({"int"})):
        if part.filter(pl.col("kind") == "int")["value_str"].null_count() != part.filter(
                pl.col("kind") == "int").height:
            return None  # an int too large for a float64 keeps its digits in value_str
        dtype = pl.Int64 if k == frozenset({"int"}) else pl.Float64
        expr = pl.when(is_null).then(None).otherwise(pl.col("value_num")).cast(dtype)
    elif k == frozenset({"bool"}):
        expr = pl.when(is_null).then(None).otherwise(pl.col("value_num") == 1)
    elif k == frozenset({"str"}):
        expr = pl.when(is_null).then(None).otherwise(pl.col("value_str"))
    else:
        return None
    values = part.select("trial_id", expr.alias("_v"))
    return base.select("trial_id").join(values, on="trial_id", how="left", maintain_order="left")["_v"]
