"""Which strategy buys the best model for a budget?

``compare(searches, by="auto"|"trials"|"time"|"resource"|"compute")`` puts
searches of the same task and metric (grid vs random vs TPE vs halving, each
maybe repeated over seeds) on a common axis and returns:

- ``curves``: best-so-far per search, long form (one row per finished trial);
- ``bands``: per strategy, the mean best-so-far over its searches with a 95%
  bootstrap band, on a common grid of the axis;
- ``ranks``: per strategy, the average rank over time (1 = best);
- ``per_search``: final best, normalised area under the best-so-far curve,
  cost to reach ``target``, normalised regret against ``reference``;
- ``summary``: one row per strategy;
- ``tests``: Friedman (with Iman-Davenport F and Nemenyi's critical
  difference) and pairwise Wilcoxon signed-rank with Holm correction on the
  best value each search reached within the common budget, searches paired by
  seed (or by order when seeds do not match).

Only searches of one task are compared (the ``task`` column of the
``searches`` view: an explicit ``task=`` attribute, else the data
hptrack.sklearn fitted on, else the ``dataset`` attribute), with one metric and
direction; anything else raises :class:`IncomparableSearches` naming the
conflict (``force=True`` compares different tasks or metrics anyway and says
so in ``why``). A nested-CV outer run is not a strategy and is refused.

Searches are grouped by the strategy recorded when they were opened, with
its pruner (``tpe+median``: the same sampler under another pruner spends its
budget differently). ``best`` names a strategy only when there are at least
two, its mean rank is strictly the best, Friedman's test (Iman-Davenport F) is
significant at ``alpha`` and, with three or more strategies, Nemenyi's test
separates it from the runner-up; ``verdict`` says which, with the numbers.
Only complete trials count as results: a pruned trial, or a low rung of successive
halving, never sets the best-so-far, whatever the axis. Trials a search reused from
another (``hptrack.sklearn.track(..., skip_done=True)``, warm-start copies in an
imported Optuna study) are left out: their budget was spent by the other search.

The axes. ``trials``: trials finished. ``time``: seconds since the search's
first trial started. ``resource``: the sum of each trial's largest reported
``resource``. ``compute``: the compute spent by every finished trial, pruned
and failed ones included, in full evaluations (see
:mod:`hptrack.analysis.budget`); there the budget is a ceiling, not a quota:
a search that finished under it keeps its best, so the common budget is the
largest any search spent and a cheap search is credited with its answer from
the moment it had it. ``auto`` (the default) is ``compute`` when any search is
multi-fidelity (a halving/hyperband strategy, or a pruned trial), else
``trials``: on the trials axis a multi-fidelity search's few finalists arrive
last and its area under the curve says nothing about the model it buys.
``Comparison.why`` states the axis used and why.

>>> r = hptrack.analysis.compare(["grid-s0", "grid-s1", "random-s0", "random-s1"])
>>> r.summary
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hptrack._files.store import StoreLike
from hptrack._read.reuse import reused_trials
from hptrack._read.views import AsOf, Connection
from hptrack.analysis import budget, stats
from hptrack.analysis.notebook import Shown
from hptrack.errors import HptrackError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl

__all__ = ["Comparison", "IncomparableSearches", "compare"]

AXES = ("auto", "trials", "time", "resource", "compute")
UNITS = {"trials": "trials", "time": "seconds", "resource": "resource", "compute": "full evaluations"}
_GRID_POINTS = 101


class IncomparableSearches(HptrackError, ValueError):
    """The searches given to :func:`compare` are not of one task, metric and direction
    (or one is a nested-CV outer run); the message names the conflict and the way out."""


@dataclass(repr=False)
class Comparison(Shown):
    by: str
    direction: str
    metric: str
    horizon: float            # the common budget: the smallest final x over the searches
    curves: pl.DataFrame            # polars
    per_search: pl.DataFrame
    bands: pl.DataFrame
    ranks: pl.DataFrame
    summary: pl.DataFrame
    tests: dict = field(default_factory=dict)
    why: str = ""             # the axis used, and why
    unit: str = ""            # what one unit of the axis is
    task: str | None = None   # the task compared (None: not recorded, or mixed with force=True)
    best: str | None = None   # the winning strategy, only when the tests say so
    verdict: str = ""         # why there is a best strategy or none, with the numbers

    def _facts(self):
        strategies = self.summary["strategy"].to_list() if "strategy" in self.summary.columns else []
        facts = [("strategies", ", ".join(map(str, strategies))), ("task", self.task),
                 ("budget axis", f"{self.by} (horizon {self.horizon:.4g} {self.unit})"),
                 ("best strategy", self.best or "none named"), ("verdict", self.verdict)]
        return f"{self.metric} ({self.direction}) by {self.by}", facts, [("per strategy", self.summary)]

    def to_dict(self) -> dict:
        return {"by": self.by, "why": self.why, "unit": self.unit, "direction": self.direction,
                "metric": self.metric, "task": self.task, "horizon": self.horizon,
                "best": self.best, "verdict": self.verdict, "summary": self.summary.to_dicts(),
                "per_search": self.per_search.to_dicts(), "tests": self.tests}


def compare(searches: str | Sequence[str], by: str = "auto", store: StoreLike = None, target: float | None = None,
            reference: float | None = None, alpha: float = 0.05,
            n_boot: int = 1000, seed: int = 0, con: Connection | None = None, as_of: AsOf = None, force: bool = False,
            objective: int | None = None) -> Comparison:
    """Compare searches (names or ids) of the same task and metric.

    ``by`` is the budget axis: ``trials`` finished, wall-clock ``time``
    seconds since the search's first trial started, summed ``resource`` (each
    trial's largest reported ``resource``), ``compute`` spent in full
    evaluations, or ``auto`` (``compute`` if any search is multi-fidelity, else
    ``trials``). ``target`` is a value to reach; ``reference`` the known
    optimum, for normalised regret. ``force=True`` compares searches of
    different tasks or metrics anyway (never different directions, never a
    nested-CV outer run).
    ``objective`` (0, 1, ...) picks the objective of multi-objective
    searches, which must name one.
    """
    import polars as pl

    from hptrack._read.read import connect

    if by not in AXES:
        raise ValueError(f"by must be one of {', '.join(AXES)}, got {by!r}")
    if isinstance(searches, str):
        searches = [searches]
    searches = list(dict.fromkeys(searches))
    if not searches:
        raise ValueError("compare() needs at least one search")
    con = con or connect(store, as_of)
    meta = _resolve(con, searches, objective)
    direction, metric, task, mixed = _like(meta, force)
    sign = 1.0 if direction == "maximize" else -1.0
    by, why = _axis(con, meta, by)
    if mixed:
        why = f"{mixed}, compared anyway (force=True); {why}"
    runs = _load(con, meta, by, sign, meta[0]["objective"])
    if by == "compute":
        why += f"; cost read from {budget.describe(r['costs'] for r in runs)}"
        low = [f"{r['name']} ({r['final_fidelity']:.0%})" for r in runs if r["final_fidelity"] < 0.9]
        if low:
            why += (f". Best result scored on part of the full resource: {', '.join(low)}; "
                    "its CV score is a low-fidelity estimate, compare test scores too")

    carry = by == "compute"   # the budget is a ceiling: a search that stopped keeps its best
    ends = [r["x"][-1] for r in runs]
    horizon = max(ends) if carry else min(ends)
    xmax = max(ends)
    grid = (np.arange(1, int(xmax) + 1, dtype=float) if by == "trials"
            else np.linspace(0.0, xmax, _GRID_POINTS))
    observed = np.concatenate([r["v"][~np.isnan(r["v"])] for r in runs])
    lo = float(observed.min())
    hi = sign * reference if reference is not None else float(observed.max())
    for r in runs:
        r["grid"] = _on_grid(r, grid, carry)
        r["at_horizon"] = _on_grid(r, np.array([horizon]), carry)[0]
    in_budget = grid <= horizon + 1e-12

    per_rows, curve_rows = [], []
    for r in runs:
        best = r["best"]
        final = best[-1]
        g = r["grid"][in_budget]
        norm = np.where(np.isnan(g), 0.0, (g - lo) / (hi - lo) if hi > lo else 1.0)
        row = {"search": r["name"], "search_id": r["search_id"], "strategy": r["strategy"],
               "seed": r["seed"], "n_trials": r["n_trials"], "budget": float(r["x"][-1]),
               "final_best": None if np.isnan(final) else sign * float(final),
               "final_fidelity": r["final_fidelity"],
               "best_at_horizon": None if np.isnan(r["at_horizon"]) else sign * float(r["at_horizon"]),
               "auc": float(norm.mean()) if len(norm) else None}
        if target is not None:
            hit = np.flatnonzero(best >= sign * target)
            row["to_target"] = float(r["x"][hit[0]]) if len(hit) else None
        if reference is not None:
            row["regret"] = None if np.isnan(final) else float(sign * reference - final)
            row["normalised_regret"] = (None if np.isnan(final) or hi <= lo
                                        else float((sign * reference - final) / (hi - lo)))
        per_rows.append(row)
        for x, v, b in zip(r["x"], r["v"], best):
            curve_rows.append({"search": r["name"], "strategy": r["strategy"], "seed": r["seed"],
                               "x": float(x), "value": None if np.isnan(v) else sign * float(v),
                               "best": None if np.isnan(b) else sign * float(b),
                               **({"regret": None if np.isnan(b) else float(sign * reference - b)}
                                  if reference is not None else {})})
    per_search = pl.DataFrame(per_rows, infer_schema_length=None)
    curves = pl.DataFrame(curve_rows, infer_schema_length=None)

    strategies = list(dict.fromkeys(r["strategy"] for r in runs))
    bands = _bands(runs, strategies, grid, sign, n_boot, seed)
    blocks = _blocks(runs, strategies)
    ranks, block_ranks = _ranks(runs, strategies, blocks, grid, in_budget)
    tests = _tests(runs, strategies, blocks, alpha)
    summary = _summary(per_search, strategies, block_ranks, target, reference, n_boot, seed)
    best, verdict = _verdict(summary, tests, alpha)
    return Comparison(by, direction, metric, float(horizon), curves, per_search, bands, ranks,
                      summary, tests, why=why, unit=UNITS[by], task=task, best=best, verdict=verdict)


def _like(meta, force):
    """(direction, metric, task, what was mixed) of searches that must be of one task.

    A search with no task recorded is taken on the caller's word; two known
    tasks that differ are a conflict, like two metrics."""
    outer = [m["name"] for m in meta if m["kind"] == "nested_cv"]
    if outer:
        raise IncomparableSearches(
            f"{', '.join(map(repr, outer))}: a nested-CV outer run (kind='nested_cv') is an estimate "
            "of one search's generalisation, not a strategy; compare the searches themselves "
            "(hptrack diagnose reads the nested-CV estimate)")
    directions = _conflict(meta, "direction", "directions")
    if directions:   # never comparable: one maximises what the other minimises
        raise IncomparableSearches(f"the searches are of {directions}: compare searches of one task, "
                                   "metric and direction")
    conflicts = [c for c in (_conflict(meta, "task", "tasks"), _conflict(meta, "metric", "metrics")) if c]
    if conflicts and not force:
        raise IncomparableSearches(
            f"the searches are of {'; '.join(conflicts)}: compare searches of one task and metric. "
            "If they are one task, record it: hptrack.search(..., task='...') (also task= in "
            "hptrack.sklearn.track, @hptrack.track and hptrack.optuna.Callback); or pass force=True "
            "(hptrack compare --force) to compare them anyway")
    tasks = {m["task"] for m in meta if m["task"] is not None}
    metrics = list(dict.fromkeys(m["metric"] for m in meta))
    return (meta[0]["direction"] or "maximize", metrics[0] or "value",
            next(iter(tasks)) if len(tasks) == 1 else None, "; ".join(conflicts))


def _conflict(meta, key, plural):
    """'different <plural> (x: a, b; y: c)' when the searches disagree on ``key``, else None.
    An unknown (None) value disagrees with nothing."""
    by_value: dict = {}
    for m in meta:
        if m[key] is not None:
            by_value.setdefault(m[key], []).append(m["name"])
    if len(by_value) < 2:
        return None
    named = "; ".join(f"{v}: {', '.join(names[:3])}"
                      + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                      for v, names in by_value.items())
    return f"different {plural} ({named})"


def _verdict(summary, tests, alpha):
    """(best strategy or None, a sentence with the numbers that decided it)."""
    rows = summary.to_dicts()
    if len(rows) < 2:
        return None, (f"no clear winner: only one strategy ({rows[0]['strategy']}) in this comparison; "
                      "compare it with another strategy on the same task")
    ranks = ", ".join(f"{r['strategy']} {r['mean_rank']:.2f}" for r in rows)
    top, runner = rows[0], rows[1]
    n = tests["n_blocks"]
    if "friedman" not in tests:
        return None, (f"no clear winner: one search per strategy (n = {n}), no test possible; "
                      f"mean ranks {ranks}; repeat each strategy over seeds to test the difference")
    p = tests["friedman"]["p_f"]
    numbers = f"mean ranks {ranks}; Friedman p = {p:.3g} (Iman-Davenport), n = {n} paired runs"
    if not top["mean_rank"] < runner["mean_rank"]:
        return None, f"no clear winner: {top['strategy']} and {runner['strategy']} tie; {numbers}"
    if not p < alpha:
        return None, f"no clear winner: the difference is not significant at alpha = {alpha:g}; {numbers}"
    pair = next((q for q in tests.get("nemenyi", {}).get("pairs", [])
                 if {q["a"], q["b"]} == {top["strategy"], runner["strategy"]}), None)
    if pair is not None and not pair["significant"]:
        return None, (f"no clear winner: {top['strategy']} is not significantly ahead of "
                      f"{runner['strategy']} (rank difference {abs(pair['rank_diff']):.2f} < Nemenyi "
                      f"critical difference {tests['nemenyi']['cd']:.2f}); {numbers}")
    after = (f", and ahead of {runner['strategy']} by more than Nemenyi's critical difference "
             f"{tests['nemenyi']['cd']:.2f}") if pair is not None else ""
    return top["strategy"], f"best mean rank, significant at alpha = {alpha:g}{after}; {numbers}"


def _axis(con, meta, by):
    """The axis to use and a sentence saying why."""
    if by != "auto":
        return by, f"by {by}, as asked"
    ids = [m["search_id"] for m in meta]
    pruned = dict(con.sql("SELECT search_id, count(*) FILTER (WHERE state = 'pruned') FROM trials "
                          "WHERE search_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
                          params=[ids]).fetchall())
    multi = [m["name"] for m in meta
             if budget.is_multi_fidelity(m["sampler"], {"pruned": pruned.get(m["search_id"], 0)})]
    if not multi:
        return "trials", "by trials: every search evaluates each trial at full fidelity"
    named = ", ".join(multi[:3]) + (f" and {len(multi) - 3} more" if len(multi) > 3 else "")
    return "compute", (f"by compute (full evaluations spent, pruned trials included): {named} "
                       f"{'is' if len(multi) == 1 else 'are'} multi-fidelity, so counting trials "
                       "would charge a cheap low-fidelity trial like a full one")


def _resolve(con, searches, objective: int | None = None):
    from hptrack._read.read import objectives_of, pick_objective
    from hptrack.errors import SearchNotFound

    rows = con.sql(
        "SELECT search_id, name, strategy, direction, metric, seed, started_at, task, strategy_label, kind "
        "FROM searches "
        "WHERE search_id IN (SELECT unnest(?::VARCHAR[])) OR name IN (SELECT unnest(?::VARCHAR[]))",
        params=[searches, searches]).fetchall()
    by_key: dict = {}
    for row in sorted(rows, key=lambda r: r[6]):
        for key in row[:2]:
            by_key.setdefault(key, row)
    missing = [s for s in searches if s not in by_key]
    if missing:
        raise SearchNotFound(f"no search named {', '.join(map(repr, missing[:10]))} in the store")
    seen, out = set(), []
    objectives = objectives_of(con, list(dict.fromkeys(by_key[s][0] for s in searches)))
    for s in searches:
        sid, name, strategy, direction, metric, seed_, _, task, label, kind = by_key[s]
        if sid not in seen:
            seen.add(sid)
            directions = objectives[sid]
            k = pick_objective(directions, objective, name)
            out.append({"search_id": sid, "name": name, "strategy": label,
                        "sampler": strategy or "custom",
                        "direction": directions[k] if len(directions) > 1 else (direction or "maximize"),
                        "metric": metric or "value", "seed": seed_, "task": task, "kind": kind,
                        "objective": k})
    return out


def _load(con, meta, by, sign, objective: int = 0):
    ids = [m["search_id"] for m in meta]
    trials = con.sql(
        # objective k of a multi-objective trial (values is NULL for a single objective)
        "SELECT t.search_id, t.trial_id, t.state, coalesce(t.values[?], t.value) AS value, "
        "epoch(t.finished_at) AS fin, "
        "epoch(min(t.started_at) OVER (PARTITION BY t.search_id)) AS first_start, r.res "
        "FROM trials t LEFT JOIN (SELECT search_id, trial_id, max(resource) AS res FROM reports "
        "  WHERE search_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL) r USING (search_id, trial_id) "
        "WHERE t.search_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY t.search_id, t.finished_at, t.trial_number", params=[objective + 1, ids, ids]).fetchall()
    costs = budget.trial_costs(con, ids) if by == "compute" else {}
    copies = reused_trials(con, ids)   # evaluated by another search: no budget spent here
    per: dict[str, list] = {}
    for row in trials:
        if row[1] not in copies[row[0]]:
            per.setdefault(row[0], []).append(row)
    runs = []
    for m in meta:
        rows = [r for r in per.get(m["search_id"], []) if r[4] is not None]  # finished trials
        if not any(r[2] == "complete" and r[3] is not None for r in rows):
            raise ValueError(f"search {m['name']!r} has no completed trial with a value")
        v = np.array([sign * r[3] if r[2] == "complete" and r[3] is not None else np.nan
                      for r in rows])
        if by == "trials":
            x = np.arange(1, len(rows) + 1, dtype=float)
        elif by == "time":
            x = np.array([r[4] - r[5] for r in rows], dtype=float)
        elif by == "compute":
            x = np.cumsum([costs[m["search_id"]]["cost"][r[1]] for r in rows])
        else:
            res = [r[6] for r in rows]
            if all(x is None for x in res):
                raise ValueError(f"search {m['name']!r} reports no resource; record it with "
                                 "trial.report(step, value, resource=...) or compare by compute, trials or time")
            x = np.cumsum([0.0 if x is None else float(x) for x in res])
        with np.errstate(invalid="ignore"):
            best = np.fmax.accumulate(v)
        c = costs.get(m["search_id"])
        at = int(np.nanargmax(v))                           # the best complete trial
        runs.append({**m, "x": x, "v": v, "best": best, "n_trials": len(rows), "costs": c,
                     "final_fidelity": None if c is None else c["fidelity"].get(rows[at][1], 1.0)})
    return runs


def _on_grid(run, grid, carry: bool = False):
    """Best-so-far at each grid point (NaN before the first finished trial, and,
    unless ``carry``, after the search's own end: it spent no budget there)."""
    pos = np.searchsorted(run["x"], grid, side="right") - 1
    out = np.where(pos >= 0, run["best"][np.clip(pos, 0, None)], np.nan)
    if not carry:
        out[grid > run["x"][-1] + 1e-12] = np.nan
    return out


def _bands(runs, strategies, grid, sign, n_boot, seed):
    import polars as pl

    frames = []
    for s in strategies:
        m = np.array([r["grid"] for r in runs if r["strategy"] == s])
        mean, lo, hi = stats.bootstrap_band(m, n_boot=n_boot, seed=seed)
        lo, hi = (lo, hi) if sign > 0 else (hi, lo)
        frames.append(pl.DataFrame({"strategy": [s] * len(grid), "x": grid,
                                    "n": (~np.isnan(m)).sum(axis=0),
                                    "mean": sign * mean, "lo": sign * lo, "hi": sign * hi},
                                   nan_to_null=True))
    return pl.concat(frames)


def _blocks(runs, strategies):
    """Rows of run indices, one per strategy, that are compared with each other:
    paired by seed when every strategy has the seeds, else by order."""
    by_s = {s: [i for i, r in enumerate(runs) if r["strategy"] == s] for s in strategies}
    seeds = [{runs[i]["seed"]: i for i in idx if runs[i]["seed"] is not None} for idx in by_s.values()]
    common = set.intersection(*(set(d) for d in seeds)) if seeds else set()
    if len(common) >= 2:
        return [[d[k] for d in seeds] for k in sorted(common)]
    n = min(len(v) for v in by_s.values())
    return [[by_s[s][j] for s in strategies] for j in range(n)]


def _ranks(runs, strategies, blocks, grid, in_budget):
    import polars as pl
    from scipy.stats import rankdata

    g = np.array([r["grid"] for r in runs])[:, in_budget]     # runs x points
    b = np.array(blocks)                                       # blocks x strategies
    vals = np.nan_to_num(g[b], nan=-np.inf)                    # blocks x strategies x points
    r = rankdata(-vals, axis=1)
    mean = r.mean(axis=0)                                      # strategies x points
    xs = grid[in_budget]
    ranks = pl.DataFrame({"strategy": np.repeat(strategies, len(xs)), "x": np.tile(xs, len(strategies)),
                          "mean_rank": mean.ravel()})
    final = rankdata(-np.nan_to_num(np.array([[runs[i]["at_horizon"] for i in row] for row in blocks]),
                                    nan=-np.inf), axis=1)
    return ranks, dict(zip(strategies, final.mean(axis=0)))


def _tests(runs, strategies, blocks, alpha):
    k, n = len(strategies), len(blocks)
    tests = {"alpha": alpha, "n_blocks": n, "strategies": strategies,
             "score": "best value reached within the common budget (the horizon)"}
    if k < 2 or n < 2:
        tests["skipped"] = (f"needs at least 2 strategies and 2 searches of each; have {k} "
                            f"strateg{'y' if k == 1 else 'ies'} and {n} block(s)")
        return tests
    m = np.array([[runs[i]["at_horizon"] for i in row] for row in blocks])
    m = np.nan_to_num(m, nan=np.nanmin(m) - 1.0)  # nothing found yet ranks last
    f = stats.friedman(m)
    tests["friedman"] = {"chi2": f.chi2, "p": f.chi2_pvalue, "iman_davenport_f": f.f,
                         "p_f": f.f_pvalue, "mean_ranks": dict(zip(strategies, f.mean_ranks.tolist()))}
    if k >= 3:
        cd = stats.nemenyi_cd(k, n, alpha)
        pairs = []
        for i in range(k):
            for j in range(i + 1, k):
                diff = float(f.mean_ranks[i] - f.mean_ranks[j])
                pairs.append({"a": strategies[i], "b": strategies[j], "rank_diff": diff,
                              "significant": bool(abs(diff) > cd and f.f_pvalue < alpha)})
        tests["nemenyi"] = {"cd": cd, "pairs": pairs}
    tests["wilcoxon_holm"] = stats.wilcoxon_holm(m, names=strategies, alpha=alpha)
    return tests


def _summary(per_search, strategies, block_ranks, target, reference, n_boot, seed):
    import polars as pl

    rows = []
    for s in strategies:
        sub = per_search.filter(pl.col("strategy") == s)
        fb = sub["final_best"].drop_nulls().to_numpy()
        lo, hi = stats.bootstrap_ci(fb, n_boot=n_boot, seed=seed) if len(fb) > 1 else (None, None)
        row = {"strategy": s, "n_searches": sub.height,
               "final_best_mean": float(fb.mean()) if len(fb) else None,
               "final_best_lo": lo, "final_best_hi": hi, "budget_mean": sub["budget"].mean(),
               "best_at_horizon_mean": sub["best_at_horizon"].mean(),
               "auc_mean": sub["auc"].mean(), "mean_rank": float(block_ranks.get(s, np.nan))}
        if target is not None:
            reached = sub["to_target"].drop_nulls()
            row["n_reached_target"] = reached.len()
            row["to_target_mean"] = reached.mean() if reached.len() else None
        if reference is not None:
            row["normalised_regret_mean"] = sub["normalised_regret"].mean()
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None).sort("mean_rank")
