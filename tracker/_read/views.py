"""The views: DuckDB SQL that folds the event log into state, over the store's
sealed Parquet segments and live write-ahead logs.

Events materialised twice (a log sealed while a crash was deleting it, a
compaction cut short) are de-duplicated on ``event_id``; only files whose
footers say they may share events go through that (see ``split_overlapping``),
so a compacted store is read without it. Files a merged file replaces are left
out (see ``segment_state``).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeAlias

from hptrack._files.checks import rel_path, segment_problems, short
from hptrack._files.rows import describe_bad_rows, log_rows_table, schema
from hptrack._files.store import Store
from hptrack._files.wal import read_log
from hptrack.errors import StoreError
from hptrack.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import duckdb

# what an ``as_of=`` argument accepts: a datetime or an ISO-8601 string; None is now
AsOf: TypeAlias = "datetime | str | None"
# a DuckDB connection (duckdb is imported where it is used)
Connection: TypeAlias = "duckdb.DuckDBPyConnection"

VIEWS = ("events", "searches", "trials", "params", "reports", "scores")

_VIEW_SQL = """
-- the events the views below fold: all of them, except those of searches
-- whose fold compact has stored as a projection (_read/projections.py)
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


# names the stored projections (_read/projections.py): a change of the views makes them stale
VIEW_SQL_DIGEST = hashlib.sha256(_VIEW_SQL.encode()).hexdigest()


def parse_time(value: datetime | str) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO-8601 string (UTC if naive)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"cannot read time {value!r}; use ISO 8601, e.g. 2026-11-27T10:30:00Z") from None
    if not isinstance(value, datetime):
        raise TypeError(f"as_of must be a datetime or an ISO-8601 string, got {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def wal_table(store: Store, keep: Callable[[tuple], bool] | None = None) -> tuple[Any, list[tuple[str, str]]]:
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
        assert log.header is not None  # read_log sets problem when a log has no header
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


def map_files(store: Store, fn: Callable[..., Any], paths: list) -> list:
    """``[fn(p) for p in paths]``; for a remote store several at once, since
    each file read (a footer) is a round trip to the object store."""
    if store.remote and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(REMOTE_READERS) as pool:
            return list(pool.map(fn, paths))
    return [fn(p) for p in paths]


def readable_segments(store: Store, footers: dict | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """The store's segments that readers use (they pass the footer checks and no
    readable merged file replaces them), and ``(path, reason)`` of the damaged
    others (see _files/checks.py). ``footers`` receives each good one's footer."""
    live, left_out, _ = segment_state(store, footers)
    return live, left_out


def segment_state(store: Store, footers: dict | None = None) -> tuple[list[str], list, dict]:
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


def replaced_files(paths: Iterable[str], footers: dict) -> dict[str, list[str]]:
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


def split_overlapping(segments: list[str], footers: dict, wal: Any) -> tuple[list[str], list[str]]:
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
        active: list[tuple] = []
        for w, q, path in items:
            active = [a for a in active if a[0][1] >= w[0]]
            for _aw, aq, apath in active:
                if aq[0] <= q[1] and q[0] <= aq[1]:
                    overlapping.add(path)
                    overlapping.add(apath)
            active.append((w, q, path))
    distinct = [p for p in segments if p not in overlapping]
    return distinct, [p for p in segments if p in overlapping]


def _wal_ranges(wal) -> dict:
    """(search_id, writer_id) -> (min seq, max seq) of the logs' rows."""
    import pyarrow.compute  # noqa: F401  (loaded for Table.group_by().aggregate, which runs on it)

    g = wal.group_by(["search_id", "writer_id"]).aggregate([("seq", "min"), ("seq", "max")])
    return {(sid, w): (lo, hi) for sid, w, lo, hi in zip(
        g["search_id"].to_pylist(), g["writer_id"].to_pylist(), g["seq_min"].to_pylist(), g["seq_max"].to_pylist())}


def _partition_dir_of(segments, search_id: str):
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


def sql_list(paths: Iterable[str]) -> str:
    """A DuckDB list literal of file paths, each matched literally (see literal_path)."""
    return "[" + ", ".join("'" + literal_path(p).replace("'", "''") + "'" for p in paths) + "]"


def scan_sql(paths: list[str], footers: dict) -> str:
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


_CONNECT_ATTEMPTS = 5


def open_connection(st: Store) -> Connection:
    """An empty DuckDB connection set up to read ``st``."""
    import duckdb

    con = duckdb.connect(":memory:")
    st.register(con)
    con.sql("SET python_enable_replacements = false")
    _no_progress_bar(con)
    # This rewrite turns the views' "first/last event wins" (QUALIFY row_number() = 1)
    # into an aggregate that changes -0.0 into 0.0; values must come back as stored.
    con.sql("SET disabled_optimizers = 'top_n_window_elimination'")
    return con


def _no_progress_bar(con: Connection) -> None:
    """A long fold (compact's projections) would draw DuckDB's progress bar. In a Jupyter kernel
    without ipywidgets DuckDB has it off already and refuses the SET (duckdb/duckdb#7590):
    every read in such a notebook failed before this check."""
    import duckdb

    try:
        con.sql("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        if con.sql("SELECT current_setting('enable_progress_bar')").fetchall() != [(False,)]:
            raise


def define_views(con: Connection, footers: dict, folded: list[str], overlapping: list[str], wal: Any = None,
                 as_of: AsOf = None, projected: dict | None = None) -> None:
    """The views over segments ``folded`` (which share no event), segments that
    may (``overlapping``) and the logs' rows ``wal``. ``projected``: partition
    folder -> (segments, trials projection, params projection) of searches whose
    fold is read from its projection instead."""
    projected = projected or {}
    con.register("_wal_events", wal if wal is not None else schema().empty_table())
    con.register("_no_events", schema().empty_table())

    def files(paths):
        return scan_sql(paths, footers) if paths else "SELECT * FROM _no_events"

    def stored(paths, view) -> str:
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
