"""One snapshot held in memory: ``freeze(con)`` turns the six public views of a
connection into tables holding the rows the views hold at that moment.

A view folds the event log again on every query, and the fold covers every
search whatever the query's WHERE: a report that asks a few dozen small
questions per search of a 200-search store folded the whole store thousands
of times (minutes; issue #16). After ``freeze`` each fold has run once and a
query reads a table. The SQL and its answers stay the same: same names, same
columns, same rows (tests/core/test_snapshot.py compares every view before
and after). An ``as_of`` connection freezes its past state.

The tables are sorted by search (and within it by the natural order of the
rows), so a search's rows are contiguous and DuckDB's zone maps skip the rest.
"""

from __future__ import annotations

from hptrack._read.views import VIEWS, Connection

__all__ = ["ORDER", "freeze"]

# the sort of each table: search first; the rest makes the order total where a view's is
ORDER = {
    "events": "search_id, event_id",
    "searches": "search_id",
    "trials": "search_id, trial_number, trial_id",
    "params": "search_id, trial_id, name",
    "reports": "search_id, trial_id, step, ts, value",
    "scores": "search_id, trial_id, ts, split, fold, metric, value",
}


def freeze(con: Connection) -> Connection:
    """Replace the views ``events, searches, trials, params, reports, scores`` of
    ``con`` by tables of their current rows (see the module docstring); returns
    ``con``. Every table is built before any view is dropped, so each one is read
    from the same, unfrozen state."""
    assert set(ORDER) == set(VIEWS)
    con.sql("BEGIN TRANSACTION")
    try:
        for view in VIEWS:
            con.sql(f"CREATE TABLE _frozen_{view} AS SELECT * FROM {view} ORDER BY {ORDER[view]}")
        for view in VIEWS:
            con.sql(f"DROP VIEW {view}")
            con.sql(f"ALTER TABLE _frozen_{view} RENAME TO {view}")
        con.sql("COMMIT")
    except BaseException:
        con.sql("ROLLBACK")
        raise
    return con
