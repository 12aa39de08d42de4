"""The read side's entry points: ``connect(store, as_of=None)`` opens a DuckDB
connection with the views ``events, searches, trials, params, reports, scores``
(see ``views``) using the stored folds where they hold (see ``projections``),
and ``trials(search)`` is one search's trials as a polars frame.
"""

from __future__ import annotations

import numbers
import os
import re
from typing import TYPE_CHECKING, Any

from hptrack._files.store import Store, StoreLike
from hptrack._read.views import (
    _CONNECT_ATTEMPTS,
    AsOf,
    Connection,
    _report_left_out,
    define_views,
    open_connection,
    readable_segments,
    split_overlapping,
    wal_table,
)
from hptrack.errors import SearchNotFound

if TYPE_CHECKING:
    import polars as pl


def connect(store: StoreLike = None, as_of: AsOf = None, *, strict: bool = False,
            projections: bool = True) -> Connection:
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
            from hptrack._read.projections import usable

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


def resolve_search(con: Connection, search: str) -> tuple[str, str]:
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


def objectives(con: Connection, search_id: str) -> list:
    """The directions of the search's objectives, in order: one for a
    single-objective search (None if it recorded none), one per objective
    for a multi-objective one (``payload.directions`` of search_started)."""
    return objectives_of(con, [search_id])[search_id]


def _directions(payload_text) -> list:
    """``objectives`` from a search_started payload (JSON text)."""
    from hptrack._files.checks import load_json

    payload = load_json(payload_text, {}) if payload_text else {}
    payload = payload if isinstance(payload, dict) else {}
    many = payload.get("directions")
    if isinstance(many, list) and len(many) > 1:
        return [str(d) for d in many]
    return [payload.get("direction")]


def pick_objective(directions: list, objective: int | None, search: str) -> int:
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


def trials(search: str, store: StoreLike = None, as_of: AsOf = None, con: Connection | None = None, *,
           strict: bool = False, objective: int | None = None) -> pl.DataFrame:
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
    con = con or connect(store, as_of, strict=strict)
    search_id, name, payload = _resolve(con, search)
    if objective is not None:
        objective = pick_objective(_directions(payload), objective, name)
    return trials_of(con, [search_id], objective)[search_id]


def trials_of(con: Connection, search_ids: list[str], objective: int | None = None) -> dict[str, pl.DataFrame]:
    """``{search_id: trials(search_id, con=con)}`` for many searches, read in two
    queries over all of them (``hptrack report``'s batch read; a query per search
    costs a round trip each). ``objective`` must already be checked (``pick_objective``)."""
    directions = objectives_of(con, search_ids)
    many = any(len(d) > 1 for d in directions.values())  # only then read the values (a JSON parse per trial)
    base = con.sql(
        f"SELECT search_id, {', '.join(TRIAL_COLUMNS)}{', values' if many else ''} FROM trials "
        "WHERE search_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY search_id, trial_number",
        params=[search_ids],
    ).pl()
    rows = con.sql(
        "SELECT p.search_id, p.trial_id, p.name, p.kind, p.value_num, p.value_str FROM params p "
        "WHERE p.search_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY p.search_id, p.name",
        params=[search_ids],
    ).pl()
    bases = by_search(base, search_ids)
    params = by_search(rows, search_ids)
    out = {}
    for sid in search_ids:
        n = len(directions[sid])
        one = bases[sid]
        if n > 1:
            one = _with_objectives(one, n, objective)
        elif many:
            one = one.drop("values")
        out[sid] = _with_params(one, params[sid])
    return out


def by_search(frame: pl.DataFrame, search_ids: list[str]) -> dict[str, pl.DataFrame]:
    """``frame`` (with a search_id column) per search id, without that column; empty
    frames of the same columns for ids it has no row of."""
    parts = {k[0]: v.drop("search_id") for k, v in
             frame.partition_by("search_id", as_dict=True, maintain_order=True).items()}
    empty = frame.clear().drop("search_id")
    return {sid: parts.get(sid, empty) for sid in search_ids}


def objectives_of(con: Connection, search_ids: list[str]) -> dict[str, list]:
    """``{search_id: objectives(con, search_id)}`` in one query."""
    rows = dict(con.sql("SELECT search_id, arg_min(payload, event_id) FROM events WHERE type = 'search_started' "
                        "AND search_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY search_id",
                        params=[search_ids]).fetchall())
    return {sid: _directions(rows.get(sid)) for sid in search_ids}


def _with_params(base, rows):
    """``base`` (one row per trial) with one column per param of ``rows`` (the params
    view's rows of its trials, by name)."""
    import polars as pl

    from hptrack.schema import decode_param

    by_name: dict[str, Any] = {}   # name -> a polars column (fast path) or {trial_id: value}
    kinds: dict[str, set] = {}
    for (name,), part in rows.partition_by("name", as_dict=True, maintain_order=True).items():
        kinds[name] = set(part["kind"].unique().to_list())
        column = _param_column(part, kinds[name] - {"null"}, base)
        by_name[name] = column if column is not None else {
            trial_id: decode_param(kind, num, text) for trial_id, kind, num, text in
            part.select("trial_id", "kind", "value_num", "value_str").iter_rows()}
    ids = base["trial_id"].to_list()
    columns = []
    assigned: set[str] = set()
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


def _named(series, name: str, assigned, by_name):
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
