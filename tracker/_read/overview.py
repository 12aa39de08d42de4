"""What is in a store, at a glance: the library side of ``hptrack ls`` and ``hptrack show``.

>>> hptrack.ls()                               # one row per search
>>> view = hptrack.show("rf-grid")             # settings + trials, best first
>>> view.settings["direction"], view.trials.head()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hptrack._files.checks import load_json
from hptrack._files.store import StoreLike
from hptrack._read.read import connect, resolve_search
from hptrack._read.read import trials as trials_of
from hptrack._read.views import AsOf, Connection

if TYPE_CHECKING:
    import polars as pl

# The best value follows the search's direction; only complete trials count,
# a failed or pruned trial's last value is not a result.
_LS_SQL = """
WITH best AS (
    SELECT t.search_id,
           CASE WHEN s.direction = 'minimize' THEN min(t.value) ELSE max(t.value) END AS best,
           -- of tied values the first trial, whatever order the scan gives (stable over compaction)
           CASE WHEN s.direction = 'minimize' THEN arg_min(t.trial_number, (t.value, t.trial_number))
                ELSE arg_max(t.trial_number, (t.value, -t.trial_number)) END AS best_trial
    FROM trials t JOIN searches s USING (search_id)
    WHERE t.state = 'complete' AND t.value IS NOT NULL AND NOT isnan(t.value)
    GROUP BY t.search_id, s.direction
)
SELECT s.name, s.strategy, s.strategy_label, s.metric, s.direction, s.n_trials, s.n_complete, s.n_failed,
       s.n_pruned, s.n_running, b.best, b.best_trial, s.started_at, s.finished_at, s.search_id
FROM searches s LEFT JOIN best b USING (search_id)
ORDER BY s.started_at, s.name
"""

STATE_ORDER = {"complete": 0, "running": 1, "pruned": 2, "failed": 3}


def ls(store: StoreLike = None, as_of: AsOf = None, con: Connection | None = None, *,
       strict: bool = False) -> pl.DataFrame:
    """One row per search in ``store`` (polars): name, strategy (and ``strategy_label``,
    with its pruner: ``tpe+median``), metric, direction,
    trial counts by state, best value (by the search's direction) and when it started."""
    con = con or connect(store, as_of, strict=strict)
    return con.sql(_LS_SQL).pl()


@dataclass
class SearchView:
    """A search's settings (dict) and its trials (polars, best first)."""

    settings: dict = field(default_factory=dict)
    trials: Any = None  # a polars DataFrame

    def to_dict(self) -> dict:
        return {"search": self.settings, "trials": self.trials.to_dicts()}


def show(search: str, store: StoreLike = None, as_of: AsOf = None, con: Connection | None = None, *,
         strict: bool = False) -> SearchView:
    """The settings of ``search`` (name or id) and its trials, best first.

    Complete trials come first, ordered by value in the search's direction,
    then running, pruned and failed ones, each by trial number. Param columns
    are as in :func:`hptrack.trials`.
    """
    import polars as pl

    con = con or connect(store, as_of, strict=strict)
    search_id, _ = resolve_search(con, search)
    (row,) = con.sql(
        "SELECT s.*, l.best, l.best_trial FROM searches s "
        f"LEFT JOIN ({_LS_SQL}) l USING (search_id) WHERE search_id = ?",
        params=[search_id],
    ).pl().to_dicts()
    payload = load_json(row.pop("payload"), {})
    payload = payload if isinstance(payload, dict) else {}
    space = row.pop("space")
    settings = {"name": row.pop("name"), "search_id": row.pop("search_id"), **row,
                "space": load_json(space)}
    # Everything else recorded at search_started (code version, host, user attrs).
    settings.update({k: v for k, v in payload.items() if k not in settings})

    df = trials_of(search_id, con=con)
    minimize = settings.get("direction") == "minimize"
    df = (df.with_columns(
              pl.col("state").replace_strict(STATE_ORDER, default=len(STATE_ORDER),
                                             return_dtype=pl.Int32).alias("_rank"),
              pl.col("value").fill_nan(None).alias("_value"))
            .sort(["_rank", "_value", "trial_number"], descending=[False, not minimize, False],
                  nulls_last=True)
            .drop("_rank", "_value"))
    return SearchView(settings=settings, trials=df)
