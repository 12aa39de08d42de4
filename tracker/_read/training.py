"""What a training loop recorded: where :class:`hptrack.EarlyStopping` stopped
each trial, and the learning rate it reported per step.

The read side of ``hptrack show`` and the report's training lines::

    >>> s = hptrack.training.summary("sgd-lr-schedules")
    >>> s.trials   # per trial: stopped_early, stop_step, best_step, best_score, epochs_saved,
    ...            # restored, steps, lr_first, lr_last
    >>> s.lr       # per report: trial_number, step, value, lr

A stop is the trial's ``annotation`` with ``payload.early_stopping`` (the
first one counts); the learning rate is the first of ``LR_KEYS`` found among
the search's reported metrics (``t.report(step, value, lr=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike
from hptrack._read.read import by_search, connect, resolve_search
from hptrack._read.views import AsOf, Connection

if TYPE_CHECKING:
    import polars as pl

__all__ = ["LR_KEYS", "TrainingSummary", "summary"]

LR_KEYS = ("lr", "learning_rate", "eta0")

_ES = "TRY(payload -> 'early_stopping')"

# over the searches $sids whose learning rate is the metric $lr
_TRIALS_SQL = f"""
WITH stops AS (
    SELECT search_id, trial_id, arg_min({_ES}, event_id) AS es
    FROM events WHERE search_id IN (SELECT unnest($sids::VARCHAR[])) AND type = 'annotation'
         AND trial_id IS NOT NULL AND {_ES} IS NOT NULL
    GROUP BY search_id, trial_id
), steps AS (
    SELECT search_id, trial_id, count(DISTINCT step) AS steps,
           arg_min(TRY_CAST(TRY(metrics ->> $lr) AS DOUBLE), step) AS lr_first,
           arg_max(TRY_CAST(TRY(metrics ->> $lr) AS DOUBLE), step) AS lr_last
    FROM reports WHERE search_id IN (SELECT unnest($sids::VARCHAR[])) GROUP BY search_id, trial_id
)
SELECT t.search_id, t.trial_number, t.trial_id, t.state, s.es IS NOT NULL AS stopped_early,
       TRY_CAST(s.es ->> 'stop_step' AS BIGINT) AS stop_step,
       TRY_CAST(s.es ->> 'best_step' AS BIGINT) AS best_step,
       TRY_CAST(s.es ->> 'best_score' AS DOUBLE) AS best_score,
       TRY_CAST(s.es ->> 'epochs_saved' AS BIGINT) AS epochs_saved,
       TRY_CAST(s.es ->> 'restored' AS BOOLEAN) AS restored,
       coalesce(r.steps, 0) AS steps, r.lr_first, r.lr_last
FROM trials t LEFT JOIN stops s USING (search_id, trial_id) LEFT JOIN steps r USING (search_id, trial_id)
WHERE t.search_id IN (SELECT unnest($sids::VARCHAR[])) ORDER BY t.search_id, t.trial_number
"""

_LR_SQL = """
SELECT r.search_id, r.trial_id, t.trial_number, r.step, r.value,
       TRY_CAST(TRY(r.metrics ->> $lr) AS DOUBLE) AS lr
FROM reports r JOIN trials t USING (search_id, trial_id)
WHERE r.search_id IN (SELECT unnest($sids::VARCHAR[])) AND TRY(r.metrics ->> $lr) IS NOT NULL
ORDER BY r.search_id, t.trial_number, r.step, r.ts
"""

# which of LR_KEYS each search's reports carry
_KEYS_SQL = "SELECT search_id, " + ", ".join(
    f"bool_or(TRY(metrics ->> '{k}') IS NOT NULL)" for k in LR_KEYS) + (
    " FROM reports WHERE search_id IN (SELECT unnest($sids::VARCHAR[])) GROUP BY search_id")


@dataclass
class TrainingSummary:
    search: str
    search_id: str
    lr_key: str | None        # the metric read as the learning rate, None if no report has one
    trials: pl.DataFrame      # one row per trial (see the module docstring)
    lr: pl.DataFrame          # trial_number, step, value, lr

    @property
    def n_stopped(self) -> int:
        return int(self.trials["stopped_early"].sum())

    @property
    def empty(self) -> bool:
        """Nothing to show: no trial stopped early and no report carried a learning rate."""
        return self.n_stopped == 0 and self.lr_key is None

    def to_dict(self) -> dict:
        return {"search": self.search, "search_id": self.search_id, "lr_key": self.lr_key,
                "trials": self.trials.to_dicts()}


def summary(search: str, store: StoreLike = None, as_of: AsOf = None, con: Connection | None = None, *,
            trial_ids: Iterable[str] | None = None, strict: bool = False) -> TrainingSummary:
    """Early stops and learning rates of ``search`` (name or id).

    ``trial_ids`` limits the per-step ``lr`` frame to those trials (the report
    draws a sample of a large search); ``trials`` always has every trial."""
    con = con or connect(store, as_of, strict=strict)
    sid, name = resolve_search(con, search)
    return summaries(con, {sid: name}, {sid: trial_ids})[sid]


def summaries(con: Connection, searches: dict[str, str],
              trial_ids: dict[str, Iterable[str] | None] | None = None) -> dict[str, TrainingSummary]:
    """``{search_id: summary(search_id, con=con, trial_ids=trial_ids[search_id])}`` for
    ``searches`` (search_id -> name), in a few queries over all of them (``hptrack
    report``'s batch read)."""
    import polars as pl

    ids = list(searches)
    keys = {sid: next((k for k, has in zip(LR_KEYS, hits) if has), None)
            for sid, *hits in con.sql(_KEYS_SQL, params={"sids": ids}).fetchall()}
    by_key: dict[str, list] = {}   # the SQL reads one metric: one pass per key in use
    for sid in ids:
        by_key.setdefault(keys.get(sid) or LR_KEYS[0], []).append(sid)
    trials, lrs = {}, {}
    for key, group in by_key.items():
        params = {"sids": group, "lr": key}
        trials.update(by_search(con.sql(_TRIALS_SQL, params=params).pl(), group))
        lrs.update(by_search(con.sql(_LR_SQL, params=params).pl(), group))
    out = {}
    for sid in ids:
        lr = lrs[sid]
        keep = (trial_ids or {}).get(sid)
        if keep is not None:
            lr = lr.filter(pl.col("trial_id").is_in(list(keep)))
        out[sid] = TrainingSummary(searches[sid], sid, keys.get(sid), trials[sid], lr.drop("trial_id"))
    return out
