"""Multi-objective searches analysed as such: the Pareto front and the hypervolume.

A trial is on the Pareto front when no other complete trial dominates it
(at least as good in every objective, better in one), as Optuna's
``study.best_trials``: trials with identical values are all on it.

The hypervolume after each complete trial (in trial-number order, as
Optuna's ``plot_hypervolume_history``) is the exact volume of the objective
space that the complete trials so far dominate, bounded by a reference
point. The default reference point is, per objective, the worst value over
the complete trials moved further out by 10% of that objective's range
(10% of its magnitude, or 0.1, when every trial has the same value), so every
trial counts; it depends on the trials as of the snapshot, so pass
``reference_point=`` (in the objectives' own units) to compare searches or
snapshots. Trials outside a given reference point stay on the front but add
no volume.

The module is not named ``pareto`` because ``hptrack.analysis.pareto`` is the
function: a submodule of that name would replace it on the package once imported.

>>> p = hptrack.analysis.pareto("mlp-digits")
>>> p.count, p.directions, p.front, p.hypervolume.tail(1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf, Connection
from hptrack.analysis.notebook import Shown

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl
    from numpy.typing import ArrayLike

__all__ = ["Pareto", "hypervolume", "pareto"]

MARGIN = 0.1   # the default reference point lies this share of each objective's range beyond its worst


@dataclass(repr=False)
class Pareto(Shown):
    """The Pareto front of a search and its hypervolume history."""

    search: str
    search_id: str
    directions: list           # one per objective, "minimize" or "maximize"
    objectives: list           # the objective columns of front (value_0, ... or value)
    front: pl.DataFrame              # polars: trial_number, trial_id, one column per objective, params
    hypervolume: pl.DataFrame        # polars: trial_number, hypervolume (after that complete trial)
    reference_point: list      # in the objectives' own units
    reference_given: bool      # False: the default (worst plus MARGIN of the range)
    n_complete: int            # complete trials the front is taken from

    def _facts(self):
        facts = [("objectives", ", ".join(f"{o} ({d})" for o, d in zip(self.objectives, self.directions))),
                 ("front", f"{self.count} of {self.n_complete} complete trials"),
                 ("hypervolume", self.final_hypervolume)]
        return repr(self.search), facts, [("Pareto front", self.front)]

    @property
    def count(self) -> int:
        return self.front.height

    @property
    def final_hypervolume(self) -> float:
        return float(self.hypervolume["hypervolume"][-1]) if self.hypervolume.height else 0.0

    def to_dict(self) -> dict:
        return {"search": self.search, "directions": self.directions, "count": self.count,
                "n_complete": self.n_complete, "reference_point": self.reference_point,
                "reference_given": self.reference_given,
                "front": self.front.to_dicts(), "hypervolume": self.hypervolume.to_dicts()}


def pareto(search: str, store: StoreLike = None, as_of: AsOf = None, con: Connection | None = None, *,
           reference_point: Sequence[float] | None = None) -> Pareto:
    """The Pareto front of ``search`` (name or id) over its complete trials,
    and the hypervolume after each of them (see the module docstring for the
    reference point). A single-objective search has a one-objective front:
    its best trial(s).

    Args:
        reference_point: one value per objective, in the objectives' own units
            (a bound the front must beat: above every value of a minimised
            objective, below every value of a maximised one).
    """
    from hptrack._read.read import connect, objectives, resolve_search, trials

    con = con or connect(store, as_of)
    search_id, name = resolve_search(con, search)
    directions = [d or "maximize" for d in objectives(con, search_id)]
    return front_of(trials(search_id, con=con), directions, reference_point, name, search_id)


def front_of(df: pl.DataFrame, directions: list, reference_point: Sequence[float] | None = None, search: str = "",
             search_id: str = "") -> Pareto:
    """``pareto`` of a trials table as ``hptrack.trials`` returns it."""
    import polars as pl

    from hptrack._read.read import is_trial_column, objective_column

    cols = [objective_column(k) for k in range(len(directions))] if len(directions) > 1 else ["value"]
    bad = [d for d in directions if d not in ("minimize", "maximize")]
    if bad:
        raise ValueError(f"search {search!r} records direction {bad[0]!r}; expected minimize or maximize")
    finite = [pl.col(c).cast(pl.Float64).is_finite().fill_null(False) for c in cols]
    done = df.filter((pl.col("state") == "complete") & pl.all_horizontal(finite)).sort("trial_number")
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    losses = done.select(cols).cast(pl.Float64).to_numpy().reshape(done.height, len(cols)) * sign
    given = reference_point is not None
    ref = _reference(losses, sign, reference_point, search)
    on_front, history = _history(losses, ref)
    params = [c for c in df.columns if not is_trial_column(c)]
    front = done.filter(pl.Series(on_front)).select("trial_number", "trial_id", *cols, *params)
    hv = pl.DataFrame({"trial_number": done["trial_number"], "hypervolume": history},
                      schema={"trial_number": pl.Int32, "hypervolume": pl.Float64})
    return Pareto(search, search_id, list(directions), cols, front, hv,
                  [float(v) for v in ref * sign], given, done.height)


def _reference(losses, sign, reference_point, search: str):
    """The reference point in loss units (every objective minimised)."""
    m = len(sign)
    if reference_point is not None:
        ref = np.asarray(reference_point, dtype=float).ravel()
        if len(ref) != m:
            raise ValueError(f"reference_point has {len(ref)} values but search {search!r} has "
                             f"{m} objectives; give one per objective, in their own units")
        if not np.all(np.isfinite(ref)):
            raise ValueError(f"reference_point must be finite numbers, got {list(reference_point)}")
        return ref * sign
    if not len(losses):
        return np.zeros(m)
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = worst - best
    # every trial alike in an objective: step out by its magnitude instead, so the box is not flat
    span = np.where(span > 0, span, np.maximum(np.abs(worst), 1.0))
    return worst + MARGIN * span


def _history(losses, ref):
    """(mask of the rows on the final front, hypervolume after each row).

    The front is kept as rows go by: a row that a front member dominates
    changes nothing, one that enters drops the members it dominates, and only
    then is the (exact) hypervolume computed again."""
    front: list[int] = []
    history = np.zeros(len(losses))
    current = 0.0
    for i, p in enumerate(losses):
        members = losses[front] if front else np.empty((0, losses.shape[1]))
        if not _dominated(p, members):
            front = [j for j, q in zip(front, members) if not _dominates(p, q)] + [i]
            current = hypervolume(losses[front], ref)
        history[i] = current
    mask = np.zeros(len(losses), dtype=bool)
    mask[front] = True
    return mask, history


def _dominates(a, b) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def _dominated(p, members) -> bool:
    """Whether some row of ``members`` dominates ``p`` (all minimised)."""
    if not len(members):
        return False
    return bool(np.any(np.all(members <= p, axis=1) & np.any(members < p, axis=1)))


def hypervolume(losses: ArrayLike, ref: ArrayLike) -> float:
    """The exact volume dominated by the rows of ``losses`` (every objective
    minimised) inside the box they share with ``ref``: a sweep in two
    dimensions, slices along the last objective above that. Rows not below
    ``ref`` in every objective add nothing."""
    pts = np.asarray(losses, dtype=float)
    ref = np.asarray(ref, dtype=float)
    pts = pts[np.all(pts < ref, axis=1)] if len(pts) else pts
    if not len(pts):
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        x, y = pts[order, 0], np.minimum.accumulate(pts[order, 1])
        return float(np.sum(np.diff(np.append(x, ref[0])) * (ref[1] - y)))
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    tops = np.append(pts[1:, -1], ref[-1])
    return float(sum((top - p[-1]) * hypervolume(pts[: i + 1, :-1], ref[:-1])
                     for i, (p, top) in enumerate(zip(pts, tops)) if top > p[-1]))
