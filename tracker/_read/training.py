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
from typing import TYPE_CHECKING, Any

from hptrack._files.store import StoreLike
from hptrack._read.read import connect, resolve_search
from hptrack._read.views import AsOf, Connection

if TYPE_CHECKING:
    import polars as pl

__all__ = ["LR_KEYS", "TrainingSummary", "summary"]

LR_KEYS = ("lr", "learning_rate", "eta0")

_ES = "TRY(payload -> 'early_stopping')"

_TRIALS_SQL = f"""
WITH stops AS (
    SELECT trial_id, arg_min({_ES}, event_id) AS es
    FROM events WHERE search_id = $sid AND type = 'annotation' AND trial_id IS NOT NULL
         AND {_ES} IS NOT NULL
    GROUP BY trial_id
), steps AS (
    SELECT trial_id, count(DISTINCT step) AS steps,
           arg_min(TRY_CAST(TRY(metrics ->> $lr) AS DOUBLE), step) AS lr_first,
           arg_max(TRY_CAST(TRY(metrics ->> $lr) AS DOUBLE), step) AS lr_last
    FROM reports WHERE search_id = $sid GROUP BY trial_id
)
SELECT t.trial_number, t.trial_id, t.state, s.es IS NOT NULL AS stopped_early,
       TRY_CAST(s.es ->> 'stop_step' AS BIGINT) AS stop_step,
       TRY_CAST(s.es ->> 'best_step' AS BIGINT) AS best_step,
       TRY_CAST(s.es ->> 'best_score' AS DOUBLE) AS best_score,
       TRY_CAST(s.es ->> 'epochs_saved' AS BIGINT) AS epochs_saved,
       TRY_CAST(s.es ->> 'restored' AS BOOLEAN) AS restored,
       coalesce(r.steps, 0) AS steps, r.lr_first, r.lr_last
FROM trials t LEFT JOIN stops s USING (trial_id) LEFT JOIN steps r USING (trial_id)
WHERE t.search_id = $sid ORDER BY t.trial_number
"""

_LR_SQL = """
SELECT t.trial_number, r.step, r.value, TRY_CAST(TRY(r.metrics ->> $lr) AS DOUBLE) AS lr
FROM reports r JOIN trials t USING (search_id, trial_id)
WHERE r.search_id = $sid AND TRY(r.metrics ->> $lr) IS NOT NULL {keep}
ORDER BY t.trial_number, r.step, r.ts
"""


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
    key = _lr_key(con, sid)
    trials = con.sql(_TRIALS_SQL, params={"sid": sid, "lr": key or LR_KEYS[0]}).pl()
    keep = ""
    params: dict[str, Any] = {"sid": sid, "lr": key or LR_KEYS[0]}
    if trial_ids is not None:
        keep, params["ids"] = "AND r.trial_id IN (SELECT unnest($ids::VARCHAR[]))", list(trial_ids)
    lr = con.sql(_LR_SQL.format(keep=keep), params=params).pl()
    return TrainingSummary(name, sid, key, trials, lr)


def _lr_key(con, sid) -> str | None:
    for key in LR_KEYS:
        hit = con.sql("SELECT 1 FROM reports WHERE search_id = ? AND TRY(metrics ->> ?) IS NOT NULL "
                      "LIMIT 1", params=[sid, key]).fetchall()
        if hit:
            return key
    return None
