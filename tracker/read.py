"""The read side: a DuckDB connection whose views fold the event log into state.

``connect(store, as_of=None)`` lists the store's sealed Parquet segments and
reads the live write-ahead logs, and defines the views ``events, searches,
trials, params, reports, scores`` over them. Every view is a function of the
events up to ``as_of``. Events materialised twice (a log sealed while a crash
was deleting it, a compaction cut short) are de-duplicated on ``event_id``.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

from .checks import rel_path, segment_problems, short
from .errors import SearchNotFound, StoreError
from .rows import schema, to_table
from .schema import SCHEMA_VERSION
from .store import Store
from .wal import read_log

VIEWS = ("events", "searches", "trials", "params", "reports", "scores")

_VIEW_SQL = """
CREATE VIEW events AS
SELECT * FROM _raw_events WHERE {as_of_filter}
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1;

CREATE VIEW trials AS
WITH started AS (
    SELECT search_id, trial_id, min(ts) AS started_at, min(event_id) AS start_event,
           arg_min(trial_number, event_id) AS recorded_number,
           arg_min(writer_id, event_id) AS writer_id
    FROM events WHERE type = 'trial_started' GROUP BY ALL
), ended AS (
    -- the first terminal event of each trial wins, as a whole
    SELECT search_id, trial_id, type AS end_type, value, ts AS finished_at,
           step AS end_step, payload AS end_payload
    FROM events WHERE type IN ('trial_completed', 'trial_failed', 'trial_pruned')
    QUALIFY row_number() OVER (PARTITION BY search_id, trial_id ORDER BY event_id) = 1
), reported AS (
    SELECT search_id, trial_id, max(step) AS last_step, count(*) AS n_reports
    FROM events WHERE type = 'trial_reported' GROUP BY ALL
)
SELECT s.search_id, s.trial_id,
       (row_number() OVER (PARTITION BY s.search_id ORDER BY s.started_at, s.start_event) - 1)::INTEGER
           AS trial_number,
       CASE e.end_type WHEN 'trial_completed' THEN 'complete' WHEN 'trial_failed' THEN 'failed'
                       WHEN 'trial_pruned' THEN 'pruned' ELSE 'running' END AS state,
       e.value, s.started_at, e.finished_at,
       epoch(e.finished_at - s.started_at)::DOUBLE AS duration_s,
       coalesce(e.end_step, r.last_step) AS last_step,
       coalesce(r.n_reports, 0) AS n_reports,
       CASE WHEN e.end_type = 'trial_failed' THEN e.end_payload ->> 'error' END AS error,
       CASE WHEN e.end_type = 'trial_completed' THEN e.end_payload -> 'metrics' END AS metrics,
       s.recorded_number, s.writer_id
FROM started s
LEFT JOIN ended e USING (search_id, trial_id)
LEFT JOIN reported r USING (search_id, trial_id);

CREATE VIEW searches AS
WITH s AS (
    SELECT search_id, min(ts) AS started_at, arg_min(payload, event_id) AS payload
    FROM events WHERE type = 'search_started' GROUP BY ALL
), f AS (
    SELECT search_id, max(ts) AS finished_at FROM events WHERE type = 'search_finished' GROUP BY ALL
), reopened AS (
    SELECT search_id, max(ts) AS last_started FROM events WHERE type = 'search_started' GROUP BY ALL
), t AS (
    SELECT search_id, count(*) AS n_trials,
           count(*) FILTER (WHERE state = 'complete') AS n_complete,
           count(*) FILTER (WHERE state = 'failed') AS n_failed,
           count(*) FILTER (WHERE state = 'pruned') AS n_pruned,
           count(*) FILTER (WHERE state = 'running') AS n_running
    FROM trials GROUP BY ALL
)
SELECT s.search_id, s.payload ->> 'name' AS name, s.payload ->> 'strategy' AS strategy,
       s.payload ->> 'direction' AS direction, s.payload ->> 'metric' AS metric,
       s.started_at,
       -- a search re-opened after its last finish is running again
       CASE WHEN f.finished_at >= o.last_started THEN f.finished_at END AS finished_at,
       coalesce(t.n_trials, 0) AS n_trials, coalesce(t.n_complete, 0) AS n_complete,
       coalesce(t.n_failed, 0) AS n_failed, coalesce(t.n_pruned, 0) AS n_pruned,
       coalesce(t.n_running, 0) AS n_running,
       TRY_CAST(s.payload ->> 'seed' AS BIGINT) AS seed,
       s.payload -> 'space' AS space, s.payload
FROM s LEFT JOIN f USING (search_id) LEFT JOIN reopened o USING (search_id)
LEFT JOIN t USING (search_id);

CREATE VIEW params AS
WITH p AS (
    SELECT search_id, trial_id, event_id, unnest(params) AS p
    FROM events WHERE params IS NOT NULL AND len(params) > 0
), latest AS (
    -- the whole last value per name (arg_max of single fields would skip NULLs,
    -- and arg_max over the struct turns -0.0 into 0.0)
    SELECT search_id, trial_id, p.name AS name, p.kind AS kind, p.num AS value_num, p.str AS value_str
    FROM p
    QUALIFY row_number() OVER (PARTITION BY search_id, trial_id, p.name ORDER BY event_id DESC) = 1
)
SELECT *,
       CASE kind WHEN 'int' THEN coalesce(value_str, CAST(CAST(value_num AS HUGEINT) AS VARCHAR))
                 WHEN 'bool' THEN CASE WHEN value_num = 1 THEN 'true' ELSE 'false' END
                 WHEN 'float' THEN CAST(value_num AS VARCHAR)
                 WHEN 'null' THEN 'null'
                 ELSE value_str END AS value
FROM latest;

CREATE VIEW reports AS
SELECT search_id, trial_id, step, resource, value, payload -> 'metrics' AS metrics, ts
FROM events WHERE type = 'trial_reported';

CREATE VIEW scores AS
SELECT search_id, trial_id, split, fold, coalesce(metric, 'value') AS metric, value, ts, payload
FROM events WHERE type = 'trial_scored';
"""


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


def wal_table(store: Store):
    """All events held in write-ahead logs (live writers and crashed ones), and
    ``(path, reason)`` of each log left out because it cannot be read."""
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
        if log.rows:
            try:
                tables.append(to_table(log.rows, log.header["writer_id"], version))
            except (ValueError, TypeError, OverflowError, KeyError) as exc:
                left_out.append((path, f"records do not match the event schema ({short(exc)})"))
    return (pa.concat_tables(tables) if tables else schema().empty_table()), left_out


def readable_segments(store: Store):
    """The store's segments that pass the footer checks, and ``(path, reason)``
    of the others (see hptrack.checks)."""
    good, left_out = [], []
    for path in store.segment_files():
        found = segment_problems(store, path)
        if found is None:
            continue  # replaced by a compaction since we listed it
        if found:
            left_out.append((path, found[0].message))
        else:
            good.append(path)
    return good, left_out


def sql_list(paths) -> str:
    """A DuckDB list literal of file paths."""
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def connect(store=None, as_of=None, *, strict=False):
    """A DuckDB connection with the views ``events, searches, trials, params,
    reports, scores`` over ``store``, folded as of ``as_of`` (default: now).

    A damaged file (unreadable, foreign, from a newer hptrack) is left out with
    a warning naming it; with ``strict=True`` it is an error instead.
    ``hptrack verify`` says more, ``hptrack verify --quarantine`` moves such
    files aside.

    >>> con = hptrack.connect()
    >>> con.sql("SELECT name, n_trials FROM searches").show()
    """
    import duckdb

    st = Store(store)
    wal, bad_logs = wal_table(st)
    segments, bad_segments = readable_segments(st)
    _report_left_out(st, bad_logs + bad_segments, strict)
    con = duckdb.connect(":memory:")
    con.sql("SET python_enable_replacements = false")
    # This rewrite turns the views' "first/last event wins" (QUALIFY row_number() = 1)
    # into an aggregate that changes -0.0 into 0.0; values must come back as stored.
    con.sql("SET disabled_optimizers = 'top_n_window_elimination'")
    con.register("_wal_events", wal)
    if segments:
        con.sql(
            "CREATE VIEW _raw_events AS "
            f"SELECT * FROM read_parquet({sql_list(segments)}, union_by_name = true, hive_partitioning = false) "
            "UNION ALL BY NAME SELECT * FROM _wal_events"
        )
    else:
        con.sql("CREATE VIEW _raw_events AS SELECT * FROM _wal_events")
    if as_of is None:
        as_of_filter = "true"
    else:
        con.sql("SET VARIABLE hptrack_as_of = ?::TIMESTAMPTZ", params=[parse_time(as_of)])
        as_of_filter = "ts <= getvariable('hptrack_as_of')"
    con.sql(_VIEW_SQL.format(as_of_filter=as_of_filter))
    return con


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
    rows = con.sql(
        "SELECT search_id, name FROM searches WHERE search_id = ? OR name = ? ORDER BY started_at LIMIT 1",
        params=[search, search],
    ).fetchall()
    if not rows:
        names = [r[0] for r in con.sql("SELECT name FROM searches ORDER BY started_at").fetchall()]
        hint = f"known searches: {', '.join(names[:20])}" if names else "the store has no searches yet"
        raise SearchNotFound(f"no search named {search!r} in the store ({hint})")
    return rows[0]


TRIAL_COLUMNS = ("trial_number", "trial_id", "state", "value", "started_at", "finished_at",
                 "duration_s", "last_step", "error")


def trials(search: str, store=None, as_of=None, con=None, *, strict=False):
    """One row per trial of ``search`` (name or id), one column per param.

    Param columns keep the param's name; a name that clashes with a trial
    column gets the prefix ``param:``. Ints become Int64, floats Float64, bools
    Boolean, strings String; a param of mixed kinds is a String column.
    """
    import polars as pl

    from .schema import decode_param

    con = con or connect(store, as_of, strict=strict)
    search_id, _ = resolve_search(con, search)
    base = con.sql(
        f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials WHERE search_id = ? ORDER BY trial_number",
        params=[search_id],
    ).pl()
    rows = con.sql(
        "SELECT p.trial_id, p.name, p.kind, p.value_num, p.value_str FROM params p "
        "WHERE p.search_id = ? ORDER BY p.name",
        params=[search_id],
    ).fetchall()
    by_name: dict[str, dict] = {}
    kinds: dict[str, set] = {}
    for trial_id, name, kind, num, text in rows:
        by_name.setdefault(name, {})[trial_id] = decode_param(kind, num, text)
        kinds.setdefault(name, set()).add(kind)
    ids = base["trial_id"].to_list()
    columns = []
    assigned = set()
    for name, values in by_name.items():
        ks = kinds[name] - {"null"}
        dtype = {frozenset({"int"}): pl.Int64, frozenset({"float"}): pl.Float64,
                 frozenset({"int", "float"}): pl.Float64, frozenset({"bool"}): pl.Boolean,
                 frozenset({"str"}): pl.String}.get(frozenset(ks), pl.String)
        col = [values.get(i) for i in ids]
        if dtype is pl.String:
            col = [None if v is None else str(v) for v in col]
        elif dtype is pl.Int64 and any(v is not None and not -2**63 <= v < 2**63 for v in col):
            dtype, col = pl.String, [None if v is None else str(v) for v in col]
        elif dtype is pl.Float64:
            col = [None if v is None else float(v) for v in col]
        col_name = name
        # never two columns of one name; a param's own name beats a prefixed one
        while col_name in TRIAL_COLUMNS or col_name in assigned or (col_name != name and col_name in by_name):
            col_name = f"param:{col_name}"
        assigned.add(col_name)
        columns.append(pl.Series(col_name, col, dtype=dtype))
    return base.with_columns(columns) if columns else base
