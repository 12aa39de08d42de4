"""How many fits a planned search runs and how long it will take, from recorded folds.

The count is exact: candidates x folds, plus one refit when ``refit`` is set
(:mod:`hptrack.analysis.planned` lists the candidates with scikit-learn's own
``ParameterGrid`` / ``ParameterSampler``).

The time is read from history, never invented. The history is every fold
``hptrack.sklearn`` recorded (``fit_time``, ``score_time``, ``n_train`` in its
payload) of a search of the same estimator class on data with the same number
of features; with none, the plan says so and gives no time. From it:

- a planned fold whose candidate was recorded with the same params on
  training rows within 1% of the fold's takes the mean of those recorded
  folds (so replanning a recorded search on the same data gives back the sum of
  its recorded fold times);
- any other fold is predicted by least squares on the log scale:
  ``log(seconds) ~ log(n_train) + log(p)`` for each positive numeric param
  ``p`` the history varies (``n_estimators``, ``C``, ``max_iter`` ...) and an
  indicator per other value a varied categorical param takes (``kernel``),
  with a tiny ridge penalty, back-transformed with the mean of the exponentiated
  residuals (Duan's smearing). When the history holds one data size only
  (its folds within a factor of 1.5), time is taken as proportional to the
  training rows and the range reaches quadratic (kernel SVMs, trees grow faster
  than linearly), and the plan says so; a fitted exponent outside 0-2.5
  (two noisy sizes close together) is clamped into it, with a note; params the history never varied, or
  values outside its range, are named in ``notes``.

Wall time: the folds are dealt, in scikit-learn's order (candidate by
candidate, fold by fold), to ``workers = min(n_jobs, cores, folds)`` workers,
each fold to the first one free; the refit (the mean over candidates of the
predicted fit time on all rows, as the best one is not known yet) runs after.
The range (``seconds_low``, ``seconds_high``) scales that by the 10th and 90th
percentile of the recorded folds' residuals around the model. Added: the
dispatch and recording overhead per fit that the history's own searches showed
(their wall time beyond their folds'). Not counted: starting joblib's worker
processes, and machine load that differs from the history's.

The module is not named ``plan``: a submodule of that name would replace the
function ``hptrack.analysis.plan`` on the package once imported.

>>> p = hptrack.analysis.plan(GridSearchCV(SVC(), grid, cv=5, n_jobs=2), X, y)
>>> p.n_fits, p.seconds, p.text
"""

from __future__ import annotations

import heapq
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hptrack._files.store import StoreLike
from hptrack._read.views import Connection
from hptrack.analysis.notebook import Shown
from hptrack.analysis.planned import PlannedSearch, from_payload, from_search, from_space
from hptrack.schema import decode_param

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Plan", "estimate", "history", "plan", "plan_space"]

QUANTILES = (0.1, 0.9)   # the range: these quantiles of the recorded folds' log residuals
SAME_ROWS = 0.01         # a recorded fold "of the same config" has training rows within this share
ONE_SIZE = 1.5           # history whose folds' rows span less than this factor has one data size
RIDGE = 1e-6             # keeps collinear params (varied together) solvable
SLOPES = (0.0, 2.5)      # a rows exponent fitted outside this range is clamped into it (time never falls with rows)
SUPERLINEAR = 2.0        # from one data size, the range allows time up to quadratic in the rows


@dataclass(repr=False)
class Plan(Shown):
    """The fits a search will run and, from recorded folds, how long it will take (seconds,
    ``None`` when no matching history exists)."""

    estimator: str
    strategy: str
    n_candidates: int
    n_folds: int
    n_fits: int                     # n_candidates x n_folds, + 1 with refit
    refit: bool
    workers: int                    # min(n_jobs, cores, fits)
    n_features: int
    seconds: float | None           # the estimate of the wall time
    seconds_low: float | None       # 10th-percentile ... 90th-percentile range
    seconds_high: float | None
    overhead_s: float = 0.0         # part of seconds: dispatch and recording, at the history's rate per fit
    history_searches: list[str] = field(default_factory=list)   # names of the searches it read
    history_folds: int = 0          # recorded folds that matched (same estimator, same n_features)
    exact_folds: int = 0            # planned folds taken from recorded folds of the same config
    basis: str = ""                 # what the prediction used
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """One line: "12 candidates x 5 folds + 1 refit = 61 fits, about 40 s (31-52 s) on 2 workers"."""
        head = f"{self.n_candidates} candidates x {self.n_folds} folds{' + 1 refit' if self.refit else ''} " \
               f"= {self.n_fits} fits"
        if self.seconds is None:
            return (f"{head}; time unknown: no recorded folds of {_short(self.estimator)} on "
                    f"{self.n_features} features (record a smaller search of it with hptrack.sklearn.track "
                    "first)")
        return (f"{head}, about {duration(self.seconds)} ({duration(self.seconds_low)}-"
                f"{duration(self.seconds_high)}) on {self.workers} worker{'s' if self.workers > 1 else ''}, "
                f"from {self.history_folds} recorded folds of {len(self.history_searches)} search"
                f"{'es' if len(self.history_searches) > 1 else ''}")

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}

    def _facts(self) -> tuple[str, list[tuple[str, Any]], list[tuple[str, Any]]]:
        return (f"plan of {_short(self.estimator)} ({self.strategy})",
                [("fits", self.n_fits), ("time", None if self.seconds is None else duration(self.seconds)),
                 ("range", None if self.seconds is None else
                  f"{duration(self.seconds_low)}-{duration(self.seconds_high)}"),
                 ("workers", self.workers), ("history", f"{self.history_folds} folds"),
                 ("notes", "; ".join(self.notes) or None)], [])


def _short(estimator: str) -> str:
    return estimator.rsplit(".", 1)[-1]


def duration(seconds: float | None) -> str:
    """Seconds for people: 4.2 s, 40 s, 12 min, 1.5 h."""
    if seconds is None:
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- reading the history ------------------------------------------------------------
_FOLDS = """
WITH s AS (SELECT search_id, arg_min(payload, event_id) AS payload, min(ts) AS ts FROM events
           WHERE type = 'search_started' GROUP BY search_id),
e AS (SELECT search_id, count(*) AS n, max(ts) AS ts, any_value(payload) AS payload FROM events
      WHERE type = 'search_finished' GROUP BY search_id)
SELECT f.search_id, coalesce(s.payload ->> 'name', f.search_id) AS search, s.payload AS search_payload,
       f.trial_id, f.fold, f.fit_time, f.score_time, f.n_train,
       CASE WHEN e.n = 1 THEN epoch(e.ts) - epoch(s.ts) END AS wall_s,
       TRY_CAST(e.payload ->> 'refit_time' AS DOUBLE) AS refit_s
FROM (SELECT search_id, trial_id, fold, TRY_CAST(payload ->> 'iter' AS BIGINT) AS it,
             max(TRY_CAST(payload ->> 'fit_time' AS DOUBLE)) AS fit_time,
             max(TRY_CAST(payload ->> 'score_time' AS DOUBLE)) AS score_time,
             max(TRY_CAST(payload ->> 'n_train' AS BIGINT)) AS n_train
      FROM scores WHERE split = 'fold' GROUP BY ALL) f
JOIN s USING (search_id) LEFT JOIN e USING (search_id)
WHERE (s.payload ->> 'estimator') = ? AND f.fit_time IS NOT NULL AND f.n_train IS NOT NULL
ORDER BY f.search_id, f.trial_id, f.fold, f.it
"""


def history(con: Connection, estimator: str) -> pl.DataFrame:
    """One row per recorded CV fold of a search of ``estimator`` (module.QualName): ``search_id,
    search, n_features, n_train, fit_time, score_time, params`` (the trial's full params, the
    search's fixed ones overlaid with its own, as sorted JSON), and its search's
    ``search_wall_s`` (started to finished, when it finished once), ``search_refit_s`` and
    ``search_n_jobs``."""
    import polars as pl

    rows = con.sql(_FOLDS, params=[estimator]).fetchall()
    ids = sorted({r[0] for r in rows})
    trial_params: dict[tuple[str, str], dict] = {}
    if ids:
        for sid, tid, name, kind, num, text in con.sql(
                "SELECT search_id, trial_id, name, kind, value_num, value_str FROM params "
                "WHERE search_id IN (SELECT unnest(?::VARCHAR[])) AND trial_id IS NOT NULL",
                params=[ids]).fetchall():
            trial_params.setdefault((sid, tid), {})[name] = decode_param(kind, num, text)
    payloads: dict[str, dict] = {}
    out = []
    for sid, search, payload, tid, _fold, fit, score, n_train, wall, refit in rows:
        info = payloads.get(sid)
        if info is None:
            info = payloads[sid] = json.loads(payload) if payload else {}
        shape = ((info.get("dataset_fingerprint") or {}).get("X") or {}).get("shape") or []
        params = {**(info.get("estimator_params") or {}), **trial_params.get((sid, tid), {})}
        out.append({"search_id": sid, "search": search, "estimator": estimator,
                    "n_features": int(shape[1]) if len(shape) == 2 else None, "n_train": int(n_train),
                    "fit_time": float(fit), "score_time": float(score or 0.0), "params": _key(params),
                    "search_wall_s": wall, "search_refit_s": refit, "search_n_jobs": info.get("n_jobs")})
    return pl.DataFrame(out, schema=_schema())


def _schema() -> dict:
    import polars as pl

    return {"search_id": pl.String, "search": pl.String, "estimator": pl.String, "n_features": pl.Int64,
            "n_train": pl.Int64, "fit_time": pl.Float64, "score_time": pl.Float64, "params": pl.String,
            "search_wall_s": pl.Float64, "search_refit_s": pl.Float64, "search_n_jobs": pl.Int64}


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# --- the model ----------------------------------------------------------------------
def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class _LogModel:
    """``log(seconds)`` by least squares on ``log(n_train)`` and the params the history varies."""

    def __init__(self, params: list[dict], n_train: np.ndarray, seconds: np.ndarray, names: set[str]) -> None:
        self.numeric: list[tuple[str, float, float, float]] = []   # name, median, low, high of the history
        self.levels: list[tuple[str, str]] = []                    # (name, level) indicators
        self.single: dict[str, Any] = {}                           # names the history never varied
        self.known: dict[str, set[str]] = {}                       # a categorical's recorded values
        for name in sorted(names):
            values = [p.get(name) for p in params]
            if all(_numeric(v) for v in values) and len(set(values)) > 1:
                logs = np.log(np.asarray(values, dtype=float))
                self.numeric.append((name, float(np.median(logs)), float(logs.min()), float(logs.max())))
            else:
                texts = sorted({json.dumps(v, default=str) for v in values})
                if len(texts) > 1:
                    self.levels += [(name, t) for t in texts[1:]]
                    self.known[name] = set(texts)
                else:
                    self.single[name] = values[0]
        logn = np.log(n_train.astype(float))
        self.rows = (float(logn.min()), float(logn.max()))
        self.center = float(logn.mean())
        self.one_size = self.rows[1] - self.rows[0] < math.log(ONE_SIZE)
        self.slope: float | None = 1.0 if self.one_size else None   # the rows' exponent, None: fitted
        self.fitted_slope: float | None = None
        y = np.log(np.maximum(seconds, 1e-6))
        self._fit(params, logn, y)
        if self.slope is None:
            self.fitted_slope = float(self.beta[1] / self.scale[0])
            if not SLOPES[0] <= self.fitted_slope <= SLOPES[1]:
                # two noisy sizes close together can give any slope: keep a plausible one
                self.slope = float(np.clip(self.fitted_slope, *SLOPES))
                self._fit(params, logn, y)

    def _fit(self, params: list[dict], logn: np.ndarray, y: np.ndarray) -> None:
        y = y - (0.0 if self.slope is None else self.slope * logn)
        X = self._design(params, logn)
        self.mean, self.scale = X.mean(axis=0), X.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        Z = np.column_stack([np.ones(len(y)), (X - self.mean) / self.scale])
        # ridge on the standardised columns only (never on the intercept)
        pen = np.sqrt(RIDGE * len(y)) * np.eye(Z.shape[1])[1:]
        A = np.vstack([Z, pen])
        self.beta = np.linalg.lstsq(A, np.concatenate([y, np.zeros(len(pen))]), rcond=None)[0]
        self.residuals = y - Z @ self.beta
        self.smear = float(np.mean(np.exp(self.residuals)))

    def _design(self, params: list[dict], logn: np.ndarray) -> np.ndarray:
        cols = [logn] if self.slope is None else []
        for name, median, _, _ in self.numeric:
            cols.append(np.array([math.log(p[name]) if _numeric(p.get(name)) else median for p in params]))
        for name, level in self.levels:
            cols.append(np.array([float(json.dumps(p.get(name), default=str) == level) for p in params]))
        return np.column_stack(cols) if cols else np.zeros((len(logn), 0))

    def predict(self, params: list[dict], n_train: np.ndarray, slope: float | None = None) -> np.ndarray:
        """Seconds per fit; ``slope`` overrides the exponent of the rows when it is not fitted."""
        logn = np.log(n_train.astype(float))
        X = self._design(params, logn)
        Z = np.column_stack([np.ones(len(logn)), (X - self.mean) / self.scale])
        fixed = self.slope if slope is None else slope
        rows = 0.0 if self.slope is None else self.center * self.slope + fixed * (logn - self.center)
        return np.exp(Z @ self.beta + rows) * self.smear

    def bounds(self, params: list[dict], n_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mid, low, high) seconds per fit: the prediction, and the range of the residuals'
        quantiles, widened to a slope of SUPERLINEAR in the rows when the history has one size."""
        mid = self.predict(params, n_train)
        alt = self.predict(params, n_train, slope=SUPERLINEAR) if self.one_size else mid
        q_low, q_high = self.spread()
        return mid, np.minimum(mid, alt) * q_low, np.maximum(mid, alt) * q_high

    def spread(self) -> tuple[float, float]:
        """The factors of the residuals' QUANTILES (at most 1, at least 1)."""
        low, high = np.exp(np.quantile(self.residuals, QUANTILES)) / self.smear
        return min(1.0, float(low)), max(1.0, float(high))

    def basis(self) -> str:
        terms = (["log n_train"] if self.slope is None else []) + [f"log {n}" for n, *_ in self.numeric]
        terms += sorted({n for n, _ in self.levels})
        return "log seconds ~ " + (" + ".join(terms) if terms else "a constant") + \
            ("" if self.slope is None else f" (+ log n_train, slope {self.slope:g})")

    def notes(self, params: list[dict], n_train: np.ndarray) -> list[str]:
        out = []
        lo, hi = float(np.log(n_train.min())), float(np.log(n_train.max()))
        if self.slope is not None and not self.one_size:
            out.append(f"the recorded sizes give time ~ rows^{self.fitted_slope:.2f}, outside "
                       f"{SLOPES[0]:g}-{SLOPES[1]:g}: taken as rows^{self.slope:g}")
        if self.one_size and (hi > self.rows[1] + 0.1 or lo < self.rows[0] - 0.1):
            out.append(f"the history has one data size (~{math.exp(self.rows[1]):.0f} training rows): time "
                       f"is taken as proportional to the rows (~{math.exp(hi):.0f} planned), the range up to "
                       "quadratic")
        elif not self.one_size and (hi > self.rows[1] + 0.05 or lo < self.rows[0] - 0.05):
            out.append(f"extrapolating from {math.exp(self.rows[0]):.0f}-{math.exp(self.rows[1]):.0f} recorded "
                       f"training rows to {math.exp(hi):.0f}")
        for name, _, low, high in self.numeric:
            vals = [math.log(p[name]) for p in params if _numeric(p.get(name))]
            if vals and (max(vals) > high + 1e-9 or min(vals) < low - 1e-9):
                out.append(f"{name} beyond the recorded {math.exp(low):.4g}..{math.exp(high):.4g}")
        for name, v in self.single.items():
            other = sorted({json.dumps(p.get(name), default=str) for p in params} - {json.dumps(v, default=str)})
            if other:
                out.append(f"{name}={', '.join(other)} never recorded (only {json.dumps(v, default=str)}): "
                           "its effect on time is not modelled")
        for name, known in self.known.items():
            unseen = sorted({json.dumps(p.get(name), default=str) for p in params} - known)
            if unseen:
                out.append(f"{name}={', '.join(unseen)} never recorded: taken as {min(known)}")
        return out


# --- the estimate -------------------------------------------------------------------
def workers_for(n_jobs: int | None, cores: int, tasks: int) -> int:
    """joblib's workers for ``n_jobs`` (None: 1, -1: every core, -2: all but one), at most one per task."""
    n = 1 if n_jobs is None else (int(n_jobs) if n_jobs > 0 else cores + 1 + int(n_jobs))
    return max(1, min(n, cores, tasks))


def machine_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def makespan(seconds: np.ndarray, workers: int) -> float:
    """Wall time of running tasks in order, each on the first worker free."""
    free = [0.0] * workers
    for s in seconds:
        heapq.heappush(free, heapq.heappop(free) + float(s))
    return max(free)


def estimate(folds: pl.DataFrame, planned: PlannedSearch, cores: int | None = None) -> Plan:
    """The plan of ``planned`` from a table of recorded folds (as :func:`history` returns): only the
    rows of the same estimator and number of features are used. ``cores`` defaults to this machine's."""
    import polars as pl

    cores = cores or machine_cores()
    n_tasks = planned.n_candidates * planned.n_folds
    workers = workers_for(planned.n_jobs, cores, max(1, n_tasks))
    rows = folds.filter((pl.col("estimator") == planned.estimator)
                        & (pl.col("n_features") == planned.n_features))
    plan = Plan(planned.estimator, planned.strategy, planned.n_candidates, planned.n_folds, planned.n_fits,
                planned.refit, workers, planned.n_features, None, None, None)
    if rows.is_empty() or n_tasks == 0:
        if not rows.is_empty():
            plan.notes.append("the space has no candidates")
        return plan
    params = [json.loads(p) for p in rows["params"]]
    n_train = rows["n_train"].to_numpy()
    fold_s = rows["fit_time"].to_numpy() + rows["score_time"].to_numpy()
    names = set.intersection(*(set(p) for p in params)) & set(planned.candidates[0])
    fold_model = _LogModel(params, n_train, fold_s, names)
    cand_tasks = [c for c in planned.candidates for _ in planned.fold_n_train]
    task_rows = np.array(planned.fold_n_train * planned.n_candidates)
    mid, low, high = fold_model.bounds(cand_tasks, task_rows)
    recorded = _recorded(rows["params"].to_list(), n_train, fold_s)
    q_low, q_high = fold_model.spread()
    exact = 0
    for i, (c, n) in enumerate(zip(cand_tasks, task_rows)):
        same = [s for m, s in recorded.get(_key(c), []) if abs(m - n) <= SAME_ROWS * n]
        if same:
            mid[i] = float(np.mean(same))
            low[i], high[i], exact = mid[i] * q_low, mid[i] * q_high, exact + 1
    totals = [makespan(t, workers) for t in (mid, low, high)]
    if planned.refit:
        fit_model = _LogModel(params, n_train, rows["fit_time"].to_numpy(), names)
        refit = fit_model.bounds(planned.candidates, np.full(planned.n_candidates, planned.n_samples))
        totals = [t + float(r.mean()) for t, r in zip(totals, refit)]
    hist_workers = {workers_for(j, cores, 2) > 1 for j in rows["search_n_jobs"].to_list()}
    if hist_workers and (workers > 1) not in hist_workers:
        # joblib's workers run BLAS on one thread each; one process uses every core's thread
        plan.notes.append(f"the history ran {'in parallel' if workers == 1 else 'in one process'}, the plan "
                          f"{'in one process' if workers == 1 else f'on {workers} workers'}: per-fit times differ "
                          "where the estimator uses BLAS threads (record a search with the same n_jobs)")
    per_fit = overhead_per_fit(rows, cores)
    plan.overhead_s = per_fit * planned.n_fits / workers
    totals = [t + plan.overhead_s for t in totals]
    plan.seconds, plan.seconds_low, plan.seconds_high = totals
    plan.history_searches = sorted(set(rows["search"].to_list()))
    plan.history_folds, plan.exact_folds = rows.height, exact
    plan.basis = (f"{exact} of {n_tasks} folds from recorded folds of the same config; " if exact else "") + \
        fold_model.basis() + (f"; + {per_fit * 1000:.1f} ms per fit of dispatch and recording" if per_fit else "")
    if exact < n_tasks:
        plan.notes += fold_model.notes(planned.candidates, np.array(planned.fold_n_train))
    return plan


def overhead_per_fit(folds: pl.DataFrame, cores: int) -> float:
    """The median over the recorded searches of the time they spent beyond their folds and refit
    (dispatch, recording, starting workers), per fit; 0 when none finished once."""
    per = []
    for (_,), g in folds.group_by(["search_id"]):
        wall, refit, n_jobs = g["search_wall_s"][0], g["search_refit_s"][0], g["search_n_jobs"][0]
        if wall is None:
            continue
        fits = g.height + int(refit is not None)
        busy = float((g["fit_time"] + g["score_time"]).sum()) / workers_for(n_jobs, cores, g.height)
        per.append(max(0.0, (wall - busy - (refit or 0.0)) / fits))
    return float(np.median(per)) if per else 0.0


def _recorded(keys: list[str], n_train: np.ndarray, seconds: np.ndarray) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for k, n, s in zip(keys, n_train, seconds):
        out.setdefault(k, []).append((int(n), float(s)))
    return out


# --- entry points -------------------------------------------------------------------
def _history_of(estimator: str, store: StoreLike, con: Connection | None) -> pl.DataFrame:
    from hptrack._files.store import Store
    from hptrack._read.read import connect

    if con is None:
        if not Store(store).found():
            return history_empty()
        con = connect(store)
    return history(con, estimator)


def history_empty() -> pl.DataFrame:
    """A history with no folds (a store that does not exist yet)."""
    import polars as pl

    return pl.DataFrame(schema=_schema())


def plan(search: Any, X: Any = None, y: Any = None, *, groups: Any = None, n_jobs: int | None = None,
         store: StoreLike = None, con: Connection | None = None, cores: int | None = None) -> Plan:
    """How many fits ``search`` (a GridSearchCV / RandomizedSearchCV, tracked or not, or a
    :class:`~hptrack.analysis.planned.PlannedSearch`) runs on ``X, y`` and, from the folds the
    store recorded of the same estimator on data of as many features, how long it takes.
    Nothing is fitted. ``n_jobs`` overrides the search's; a tracked search's own ``store`` is the
    default store."""
    planned = search if isinstance(search, PlannedSearch) else from_search(search, X, y, groups, n_jobs)
    if store is None:
        store = getattr(search, "store", None)  # hptrack.sklearn.track(..., store=...)
    return estimate(_history_of(planned.estimator, store, con), planned, cores)


def plan_space(estimator: str | None = None, space: Any = None, *, like: str | None = None,
               n_samples: int | None = None, n_features: int | None = None, cv: int | None = None,
               n_iter: int | None = None, n_jobs: int | None = None, refit: bool | None = None,
               random_state: int | None = None, store: StoreLike = None, con: Connection | None = None,
               cores: int | None = None) -> Plan:
    """:func:`plan` of a search given by its parts (what ``hptrack plan`` takes): ``estimator``
    (an import path such as ``sklearn.svm.SVC``) and ``space`` (a grid, or distributions with
    ``n_iter``) on ``n_samples`` x ``n_features`` rows with ``cv`` folds; or ``like``, a
    recorded search whose estimator, space, data size, cv and n_jobs are the defaults."""
    args = {"estimator": estimator, "space": space, "n_samples": n_samples, "n_features": n_features,
            "cv": cv, "n_iter": n_iter, "n_jobs": n_jobs, "refit": refit, "random_state": random_state}
    if like is not None:
        from hptrack._files.store import Store
        from hptrack._read.read import connect, resolve_search

        if con is None:
            if not Store(store).found():
                raise LookupError(f"no hptrack store at {Store(store).root} to find search {like!r} in")
            con = connect(store)
        search_id, _ = resolve_search(con, like)
        rows = con.sql("SELECT arg_min(payload, event_id) FROM events WHERE type = 'search_started' "
                       "AND search_id = ?", params=[search_id]).fetchall()
        planned = from_payload(json.loads(rows[0][0]) if rows and rows[0][0] else {}, **args)
    else:
        missing = [k for k in ("estimator", "space", "n_samples", "n_features") if args[k] is None]
        if missing:
            raise ValueError(f"give {', '.join(missing)} (or like=<a recorded search>)")
        planned = from_space(**{k: v for k, v in args.items() if v is not None})
    return estimate(_history_of(planned.estimator, store, con), planned, cores)
