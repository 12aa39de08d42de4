"""Which strategy buys the best model for a budget?

``compare(searches, by="trials"|"time"|"resource")`` puts searches of the same
task and metric (grid vs random vs TPE vs halving, each maybe repeated over
seeds) on a common axis and returns:

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

Searches are grouped by the strategy recorded when they were opened.

>>> r = hptrack.analysis.compare(["grid-s0", "grid-s1", "random-s0", "random-s1"])
>>> r.summary
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import stats

__all__ = ["Comparison", "compare"]

AXES = ("trials", "time", "resource")
_GRID_POINTS = 101


@dataclass
class Comparison:
    by: str
    direction: str
    metric: str
    horizon: float            # the common budget: the smallest final x over the searches
    curves: object            # polars
    per_search: object
    bands: object
    ranks: object
    summary: object
    tests: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"by": self.by, "direction": self.direction, "metric": self.metric,
                "horizon": self.horizon, "summary": self.summary.to_dicts(),
                "per_search": self.per_search.to_dicts(), "tests": self.tests}


def compare(searches, by="trials", store=None, target=None, reference=None, alpha=0.05,
            n_boot=1000, seed=0, con=None, as_of=None) -> Comparison:
    """Compare searches (names or ids) of the same task and metric.

    ``by`` is the budget axis: trials finished, wall-clock seconds since the
    search's first trial started, or summed resource (each trial's largest
    reported ``resource``). ``target`` is a value to reach; ``reference`` the
    known optimum, for normalised regret.
    """
    import polars as pl
    from hptrack.read import connect

    if by not in AXES:
        raise ValueError(f"by must be one of {', '.join(AXES)}, got {by!r}")
    if isinstance(searches, str):
        searches = [searches]
    searches = list(dict.fromkeys(searches))
    if not searches:
        raise ValueError("compare() needs at least one search")
    con = con or connect(store, as_of)
    meta = _resolve(con, searches)
    directions = {m["direction"] for m in meta}
    if len(directions) > 1:
        raise ValueError("the searches do not share a direction (some maximize, some minimize); "
                         "compare searches of the same task and metric")
    direction = directions.pop() or "maximize"
    metrics = {m["metric"] for m in meta}
    if len(metrics) > 1:
        warnings.warn(f"hptrack: the searches record different metrics ({', '.join(sorted(map(str, metrics)))}); "
                      "comparing their values as if they were the same", RuntimeWarning, stacklevel=2)
    sign = 1.0 if direction == "maximize" else -1.0
    runs = _load(con, meta, by, sign)

    horizon = min(r["x"][-1] for r in runs)
    xmax = max(r["x"][-1] for r in runs)
    grid = (np.arange(1, int(xmax) + 1, dtype=float) if by == "trials"
            else np.linspace(0.0, xmax, _GRID_POINTS))
    observed = np.concatenate([r["v"][~np.isnan(r["v"])] for r in runs])
    lo = float(observed.min())
    hi = sign * reference if reference is not None else float(observed.max())
    for r in runs:
        r["grid"] = _on_grid(r, grid)
        r["at_horizon"] = _on_grid(r, np.array([horizon]))[0]
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
    return Comparison(by, direction, next(iter(metrics)) or "value", float(horizon), curves,
                      per_search, bands, ranks, summary, tests)


def _resolve(con, searches):
    from hptrack.errors import SearchNotFound

    rows = con.sql(
        "SELECT search_id, name, strategy, direction, metric, seed, started_at FROM searches "
        "WHERE search_id IN (SELECT unnest(?::VARCHAR[])) OR name IN (SELECT unnest(?::VARCHAR[]))",
        params=[searches, searches]).fetchall()
    by_key = {}
    for row in sorted(rows, key=lambda r: r[6]):
        for key in row[:2]:
            by_key.setdefault(key, row)
    missing = [s for s in searches if s not in by_key]
    if missing:
        raise SearchNotFound(f"no search named {', '.join(map(repr, missing[:10]))} in the store")
    seen, out = set(), []
    for s in searches:
        sid, name, strategy, direction, metric, seed_, _ = by_key[s]
        if sid not in seen:
            seen.add(sid)
            out.append({"search_id": sid, "name": name, "strategy": strategy or "custom",
                        "direction": direction, "metric": metric, "seed": seed_})
    return out


def _load(con, meta, by, sign):
    ids = [m["search_id"] for m in meta]
    trials = con.sql(
        "SELECT t.search_id, t.trial_id, t.state, t.value, epoch(t.finished_at) AS fin, "
        "epoch(min(t.started_at) OVER (PARTITION BY t.search_id)) AS first_start, r.res "
        "FROM trials t LEFT JOIN (SELECT search_id, trial_id, max(resource) AS res FROM reports "
        "  WHERE search_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL) r USING (search_id, trial_id) "
        "WHERE t.search_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY t.search_id, t.finished_at, t.trial_number", params=[ids, ids]).fetchall()
    per: dict[str, list] = {}
    for row in trials:
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
        else:
            res = [r[6] for r in rows]
            if all(x is None for x in res):
                raise ValueError(f"search {m['name']!r} reports no resource; record it with "
                                 "trial.report(step, value, resource=...) or compare by trials or time")
            x = np.cumsum([0.0 if x is None else float(x) for x in res])
        with np.errstate(invalid="ignore"):
            best = np.fmax.accumulate(v)
        runs.append({**m, "x": x, "v": v, "best": best, "n_trials": len(rows)})
    return runs


def _on_grid(run, grid):
    """Best-so-far at each grid point (NaN before the first finished trial, and
    after the search's own end: it spent no budget there)."""
    pos = np.searchsorted(run["x"], grid, side="right") - 1
    out = np.where(pos >= 0, run["best"][np.clip(pos, 0, None)], np.nan)
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
               "final_best_lo": lo, "final_best_hi": hi,
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
