"""Population based training read back from its events: who was copied into whom,
when and with what params (``lineage``), and one member's schedule (``schedule``).

Works on any search whose forks were recorded as ``trial_forked`` events: hptrack.pbt,
Ray Tune's PBT through ``hptrack.ray``, or its ``pbt_global.txt`` imported."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf, Connection

if TYPE_CHECKING:

    import polars as pl

__all__ = ["lineage", "schedule"]


LINEAGE_SQL = """
SELECT f.trial_id,
       f.payload ->> 'parent_trial_id' AS parent_trial_id,
       f.step,
       TRY_CAST(f.payload ->> 'parent_score' AS DOUBLE) AS parent_score,
       f.payload ->> 'replaced_trial_id' AS replaced_trial_id,
       TRY_CAST(f.payload ->> 'replaced_score' AS DOUBLE) AS replaced_score,
       CAST(f.payload -> 'params_before' AS VARCHAR) AS params_before,
       CAST(f.payload -> 'params_after' AS VARCHAR) AS params_after,
       f.ts
FROM events f
WHERE f.type = 'trial_forked' AND f.search_id = ?
ORDER BY f.step, f.ts, f.event_id
"""


def lineage(search: str, store: StoreLike = None, *, as_of: AsOf = None, con: Connection | None = None) -> pl.DataFrame:
    """One row per fork of the PBT search ``search`` (name or id): ``trial_id`` (the
    child), ``parent_trial_id``, ``step``, ``parent_score``, ``replaced_trial_id``,
    ``replaced_score``, ``params_before`` and ``params_after`` (dicts), ``ts``."""
    import polars as pl

    from hptrack._read.read import connect, resolve_search
    con = con or connect(store, as_of=as_of)
    sid, _ = resolve_search(con, search)
    df = con.sql(LINEAGE_SQL, params=[sid]).pl()
    if df.height == 0:
        return df
    # structs with one field per param (polars infers the fields from the dicts)
    return df.with_columns(
        pl.Series("params_before", [_params(v) for v in df["params_before"]]),
        pl.Series("params_after", [_params(v) for v in df["params_after"]]))


def _params(text):
    # a fork written by Search.fork without params_before (a warm restart) has none
    return None if text is None else json.loads(text)


def schedule(search: str, trial_id: str | None = None, store: StoreLike = None, *,
             con: Connection | None = None) -> pl.DataFrame:
    """The hyperparameter schedule of one member, rebuilt from events by walking its
    forks back to an original member: one row per stretch (``trial_id``,
    ``from_step``, ``to_step`` (exclusive, null for the last), then the params).
    ``trial_id`` defaults to the best complete trial (the earliest one of a tie)."""
    import polars as pl

    from hptrack._read.read import connect, resolve_search
    con = con or connect(store)
    sid, _ = resolve_search(con, search)
    if trial_id is None:
        direction = con.sql("SELECT direction FROM searches WHERE search_id = ?",
                            params=[sid]).fetchall()[0][0]
        order = "DESC" if direction == "maximize" else "ASC"
        trial_id = con.sql(f"SELECT trial_id FROM trials WHERE search_id = ? AND state = 'complete' "
                           f"ORDER BY value {order}, recorded_number LIMIT 1", params=[sid]).fetchall()[0][0]
    forks = {r[0]: (r[1], r[2]) for r in con.sql(
        "SELECT trial_id, payload ->> 'parent_trial_id', step FROM events "
        "WHERE type = 'trial_forked' AND search_id = ?", params=[sid]).fetchall()}
    chain, tid, seen = [], trial_id, set()
    while tid is not None and tid not in seen:
        seen.add(tid)
        parent, step = forks.get(tid, (None, None))
        # a child's training starts after the step it copied
        chain.append((tid, None if step is None else step + 1))
        tid = parent
    chain.reverse()
    rows = []
    for k, (tid, start) in enumerate(chain):
        params = dict(con.sql("SELECT name, value FROM params WHERE trial_id = ?",
                              params=[tid]).fetchall())
        end = chain[k + 1][1] if k + 1 < len(chain) else None
        rows.append({"trial_id": tid, "from_step": start or 0, "to_step": end,
                     **{n: _num(v) for n, v in params.items()}})
    return pl.DataFrame(rows)


def _num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
