"""Trials -> a numeric design on the unit cube, for the sensitivity estimators.

A source is a search (name or id, read from a store) or a table (polars or
pandas) with one column per param and a ``value`` column. Each param becomes
one column in [0, 1] whose uniform measure stands for the param's range:

- float: linear in [low, high], or in [log low, log high] when the search
  space says the param is log-scaled (or ``log=`` names it);
- int: one equal cell per integer of [low, high] (on the log scale when log);
- categorical / bool: one equal cell per category (dict / list values, such
  as estimators in a grid, are told apart by their canonical JSON);
- a param missing in some trials (conditional): missing is one more cell,
  as wide as the share of trials that miss it.

Bounds come from the recorded space when it has them, else from the trials.
The space of a search is its search-level ``space`` plus, for params it
lacks, the distributions each trial recorded with its params (Optuna's
live paths write only those; ``search_space``).

Rows are put in a canonical order (by their coordinates and value), so that
the same trials give the same answer whatever order a table or a SQL
aggregate delivered them in.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hptrack._files.store import StoreLike
from hptrack._read.read import is_trial_column
from hptrack._read.views import AsOf

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import polars as pl

    from hptrack._read.views import Connection


@dataclass
class Param:
    name: str
    kind: str                   # float, int, categorical, bool
    log: bool = False
    low: float | None = None    # on the analysed (log10 when log) scale
    high: float | None = None
    categories: list = field(default_factory=list)
    missing: float = 0.0        # share of the unit interval that stands for "missing"
    # categories the recorded space offers, observed or not (``categories`` holds the
    # observed ones, all the surrogate can fit): PED-ANOVA's grid has a cell for each
    choices: int = 0

    def to_unit(self, values: Any) -> np.ndarray:
        """Unit-cube coordinates of raw values (a list or polars Series; None = missing)."""
        present_width = 1.0 - self.missing
        if self.kind in ("categorical", "bool"):
            out = np.full(len(values), 1.0 - self.missing / 2)
            k = len(self.categories)
            index = {category_key(c): i for i, c in enumerate(self.categories)}
            for r, v in enumerate(values if isinstance(values, list) else values.to_list()):
                if v is not None:
                    out[r] = (index[category_key(v)] + 0.5) / k * present_width
            return out
        # numeric: whole columns at once (a 100,000-trial search has 100,000 values per param)
        x = np.array([np.nan if v is None else float(v) for v in values], float) \
            if isinstance(values, list) else values.cast(float).to_numpy().astype(float)
        missing = np.isnan(x)
        if self.log:
            bad = ~missing & (x <= 0)
            if bad.any():
                raise ValueError(f"param {self.name!r} is log-scaled but has value {x[bad][0]}")
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log10(x)
        assert self.low is not None and self.high is not None  # a numeric param has its range
        if self.kind == "int" and not self.log:
            u = (np.clip(x, self.low, self.high) - self.low + 0.5) / (self.high - self.low + 1)
        elif self.high == self.low:
            u = np.full(len(x), 0.5)
        else:
            u = (x - self.low) / (self.high - self.low)
        return np.where(missing, 1.0 - self.missing / 2, np.clip(u, 0.0, 1.0) * present_width)

    def from_unit(self, u: float) -> Any:
        """The raw value at unit coordinate u (None in the missing cell)."""
        if u >= 1.0 - self.missing:
            return None
        u = u / (1.0 - self.missing)
        if self.kind in ("categorical", "bool"):
            return self.categories[min(int(u * len(self.categories)), len(self.categories) - 1)]
        assert self.low is not None and self.high is not None  # a numeric param has its range
        if self.kind == "int" and not self.log:
            return int(self.low + min(int(u * (self.high - self.low + 1)), self.high - self.low))
        x = self.low + u * (self.high - self.low)
        x = 10 ** x if self.log else x
        return round(x) if self.kind == "int" else x

    def _scale(self, v):
        v = float(v)
        if self.log:
            if v <= 0:
                raise ValueError(f"param {self.name!r} is log-scaled but has value {v}")
            return math.log10(v)
        return v


def category_key(v: Any) -> Any:
    """A hashable stand-in for a category: dicts and lists (estimators in a grid,
    layer sizes) by their canonical JSON, anything else itself."""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def category_label(v: Any) -> str:
    """How a category reads in output: an estimator description as ``Name(k=v, ...)``,
    other dicts and lists as compact JSON, anything else as str()."""
    if isinstance(v, dict) and isinstance(v.get("estimator"), str):
        args = ", ".join(f"{k}={a!r}" for k, a in sorted((v.get("params") or {}).items()))
        return f"{v['estimator'].rsplit('.', 1)[-1]}({args})"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return str(v)


@dataclass
class Design:
    X: np.ndarray
    y: np.ndarray
    params: list
    direction: str | None
    n_excluded: int            # trials left out (state, missing value, budget)
    n_sampled_from: int | None = None   # usable trials before sample(); None when not sampled

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def n_usable(self) -> int:
        """Usable trials (after state, value, budget and top_quantile filters), sampled or not."""
        return self.n_sampled_from if self.n_sampled_from is not None else len(self.y)

    def sample(self, max_trials: int | None, seed: int = 0) -> Design:
        """This design, or a seeded random subset of ``max_trials`` of its rows
        (in their original order) when it holds more. The params' ranges stay
        those of every trial; ``n_sampled_from`` records how many there were."""
        n = len(self.y)
        if max_trials is None or n <= max_trials:
            return self
        if max_trials < 4:
            raise ValueError(f"max_trials must be at least 4 (or None for every trial), got {max_trials}")
        # a stream of its own, so the sample does not correlate with the surrogate's seeds
        rows = np.sort(np.random.default_rng([seed, 0x5A3]).choice(n, max_trials, replace=False))
        return Design(self.X[rows], self.y[rows], self.params, self.direction, self.n_excluded, n)


# --- the recorded space ---------------------------------------------------------
def space_hint(spec: Any) -> dict:
    """What a space entry says about a param: log, low, high, categories.

    Understands lists (grid values / choices), ``{"low", "high", "log"}``
    (hptrack style), Optuna's distribution JSON, skopt dimensions (``prior: "log-uniform"``) and
    scipy distributions as hptrack.sklearn records them (loguniform /
    reciprocal with args [a, b]; uniform with args [loc, scale])."""
    out: dict = {}
    if isinstance(spec, list):
        if spec and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
            out.update(low=min(spec), high=max(spec))
        else:
            out["categories"] = spec
        return out
    if not isinstance(spec, dict):
        return out
    if isinstance(spec.get("attributes"), dict):
        # an Optuna distribution as distribution_to_json writes it (hptrack.optuna)
        return space_hint(spec["attributes"])
    if "categories" in spec or "choices" in spec:
        out["categories"] = list(spec.get("categories") or spec.get("choices"))  # type: ignore[arg-type]  # None raises
    if "low" in spec and "high" in spec:
        out.update(low=spec["low"], high=spec["high"])
    if spec.get("log") is True or str(spec.get("prior", "")).startswith("log") \
            or spec.get("scale") == "log":
        out["log"] = True
    dist = spec.get("distribution")
    args = list(spec.get("args") or [])
    kwds = spec.get("kwds") or {}
    if dist in ("loguniform", "reciprocal"):
        out["log"] = True
        a, b = (args + [kwds.get("a"), kwds.get("b")])[:2] if len(args) < 2 else args[:2]
        if a is not None and b is not None:
            out.update(low=a, high=b)
    elif dist == "uniform":
        loc = args[0] if args else kwds.get("loc", 0.0)
        scale = args[1] if len(args) > 1 else kwds.get("scale", 1.0)
        out.update(low=loc, high=loc + scale)
    elif dist == "randint" and len(args) >= 2:
        out.update(low=args[0], high=args[1] - 1)
    return out


def _space_map(space) -> dict:
    if isinstance(space, str):
        from hptrack._files.checks import load_json

        space = load_json(space, {})
    if isinstance(space, list):  # a list of grids: merge their hints
        merged: dict = {}
        for s in space:
            for k, v in _space_map(s).items():
                merged.setdefault(k, v)
        return merged
    if not isinstance(space, dict):
        return {}
    return {name: space_hint(spec) for name, spec in space.items()}


# --- reading ----------------------------------------------------------------------
def read(source: str | pl.DataFrame, store: StoreLike = None, *, as_of: AsOf = None, budget: int | str | None = None,
         include: Sequence[str] | None = None,
         objective: int | None = None) -> tuple[pl.DataFrame, dict, str | None]:
    """(table, space dict, direction) for a search name/id or a table.

    ``value`` is objective ``objective`` of a multi-objective search, which
    must say which (see _read/read.py: pick_objective); direction is that
    objective's."""
    import polars as pl

    if isinstance(source, str):
        from hptrack._read.read import connect, objectives, pick_objective, resolve_search, trials

        con = connect(store, as_of)
        try:
            search_id, name = resolve_search(con, source)
            directions = objectives(con, search_id)
            objective = pick_objective(directions, objective, name)
            table = trials(search_id, con=con, objective=objective)
            direction = directions[objective]
            space = search_space(con, search_id)
            if budget is not None:
                table = _at_budget(con, search_id, table, budget)
        finally:
            con.close()
        return canonical_order(table), space, direction
    if budget is not None:
        raise ValueError("budget= needs a search (its intermediate reports), not a table")
    if not isinstance(source, pl.DataFrame):
        if type(source).__module__.startswith("pandas"):
            source = pl.from_pandas(source)
        else:
            raise TypeError(f"source must be a search name/id or a polars/pandas DataFrame, "
                            f"got {type(source).__name__}")
    return _table_objective(source, objective), {}, None


def _table_objective(table, objective):
    """A table as read by hptrack.trials: ``value`` is objective ``objective``
    when it has objective columns (value_0, ...), which it then must name."""
    import polars as pl

    from hptrack._read.read import objective_column

    n = 0
    while objective_column(n) in table.columns:
        n += 1
    if n == 0 and objective in (None, 0):
        return table
    if objective is None:
        raise ValueError(f"the table has {n} objective columns ({', '.join(map(objective_column, range(n)))}); "
                         "pick one with objective=k (hptrack importance SEARCH --objective K)")
    if isinstance(objective, bool) or not isinstance(objective, numbers.Integral) \
            or not 0 <= int(objective) < max(n, 1):
        raise ValueError(f"objective={objective!r} is not an objective of the table: it has "
                         f"{max(n, 1)} (columns {', '.join(map(objective_column, range(n))) or 'value'})")
    return table.with_columns(pl.col(objective_column(int(objective))).alias("value"))


def search_space(con: Connection, search_id: str, space: dict | None = None) -> dict:
    """What is known of each param's space (``space_hint`` per name): the
    search-level ``space`` (read from ``con`` unless given), and for the params
    it lacks, the ``distributions`` the trials recorded with their params (the
    only record Optuna's ``@hptrack.track`` and ``Callback`` paths write).
    Without them a ``log=True`` param would be analysed on the linear scale."""
    return search_spaces(con, [search_id], None if space is None else {search_id: space})[search_id]


def search_spaces(con: Connection, search_ids: list[str], spaces: dict | None = None) -> dict[str, dict]:
    """``{search_id: search_space(con, search_id, spaces[search_id])}`` in one or two
    queries over all the searches; ``spaces`` (search_id -> recorded space) is read
    from ``con`` when not given."""
    if spaces is None:
        spaces = dict(con.sql("SELECT search_id, CAST(space AS VARCHAR) FROM searches "
                              "WHERE search_id IN (SELECT unnest(?::VARCHAR[]))", params=[search_ids]).fetchall())
    # one row per distinct distributions object (a handful per search, whatever its size)
    rows = con.sql(
        "SELECT search_id, CAST(json_extract(payload, '$.distributions') AS VARCHAR) AS d, min(ts) AS first "
        "FROM events WHERE search_id IN (SELECT unnest(?::VARCHAR[])) AND type = 'annotation' "
        "AND payload LIKE '%\"distributions\"%' AND coalesce(json_valid(payload), false) "
        "GROUP BY search_id, d ORDER BY search_id, first, d",
        params=[search_ids]).fetchall()
    recorded: dict = {}
    for sid, text, _ in rows:
        dists = json.loads(text) if text else None
        for name, spec in (dists.items() if isinstance(dists, dict) else ()):
            recorded.setdefault(sid, {}).setdefault(name, []).append(space_hint(spec))
    out = {}
    for sid in search_ids:
        merged = {name: _merge_hints(hints) for name, hints in recorded.get(sid, {}).items()}
        out[sid] = {**merged, **_space_map(spaces.get(sid))}
    return out


def _merge_hints(hints: list) -> dict:
    """One hint from the distributions of several trials (Optuna allows a range that
    changes between trials): the widest range, log only if every trial said so."""
    out: dict = {}
    lows = [h["low"] for h in hints if isinstance(h.get("low"), (int, float))]
    highs = [h["high"] for h in hints if isinstance(h.get("high"), (int, float))]
    if lows and highs:
        out.update(low=min(lows), high=max(highs))
    if all(h.get("log") for h in hints):
        out["log"] = True
    cats = {category_key(c): c for h in hints for c in h.get("categories") or []}
    if cats:
        out["categories"] = list(cats.values())
    return out


def canonical_order(table: Any) -> Any:
    """The table sorted by (trial_number, trial_id) when it has them: the order a
    store's rows come in must not depend on how a query happened to run."""
    keys = [c for c in ("trial_number", "trial_id") if c in table.columns]
    return table.sort(keys, nulls_last=True, maintain_order=True) if keys else table


def _at_budget(con, search_id: str, table, budget):
    """Each trial's reported value at step ``budget`` (or at the last step all
    trials reached, for ``budget="common"``); trials without it are dropped."""
    import polars as pl

    reports = con.sql(
        "SELECT trial_id, step, arg_max(value, ts) AS value FROM reports "
        "WHERE search_id = ? AND step IS NOT NULL AND value IS NOT NULL GROUP BY trial_id, step",
        params=[search_id]).pl()
    if budget == "common":
        if reports.is_empty():
            raise ValueError("budget='common': the search has no intermediate reports")
        budget = reports.group_by("trial_id").agg(pl.col("step").max())["step"].min()
    elif isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ValueError(f"budget must be a step (int) or 'common', got {budget!r}")
    at = reports.filter(pl.col("step") == budget).select("trial_id", pl.col("value").alias("_v"))
    # a budget level counts every trial that got there, pruned or not
    out = table.join(at, on="trial_id", how="inner").with_columns(pl.col("_v").alias("value"))
    return out.drop("_v").with_columns(pl.lit("complete").alias("state"))


def design(source: str | pl.DataFrame, store: StoreLike = None, *, params: list[str] | None = None,
           include: Sequence[str] | None = ("complete",), budget: int | str | None = None,
           top_quantile: float | None = None, direction: str | None = None, log: Sequence[str] | None = None,
           as_of: AsOf = None, space: dict | None = None,
           objective: int | None = None) -> Design:
    """The unit-cube design of a source. See the module docstring.

    ``space``: a search space as recorded (the ``space`` column of the
    searches view: dict, JSON text or list of grids) to take bounds and log
    scales from instead of the source's own, e.g. for a trials table already
    read from the store."""
    import polars as pl

    table, recorded_space, recorded_direction = read(source, store, as_of=as_of, budget=budget,
                                                     objective=objective)
    space = recorded_space if space is None else _space_map(space)
    direction = direction or recorded_direction
    n0 = table.height
    if "value" not in table.columns:
        raise ValueError("the table needs a 'value' column (the objective)")
    if "state" in table.columns and include is not None:
        table = table.filter(pl.col("state").is_in(list(include)))
    table = table.filter(pl.col("value").cast(pl.Float64).is_finite())
    if top_quantile is not None:
        if not 0 < top_quantile <= 1:
            raise ValueError(f"top_quantile must be in (0, 1], got {top_quantile}")
        if direction not in ("maximize", "minimize"):
            raise ValueError("top_quantile needs direction='maximize' or 'minimize' for a table")
        k = max(2, math.ceil(top_quantile * table.height))
        table = table.sort("value", descending=direction == "maximize").head(k)
    names = list(params) if params is not None else [c for c in table.columns if not is_trial_column(c)]
    missing_cols = [n for n in names if n not in table.columns]
    if missing_cols:
        raise ValueError(f"no column for param(s) {missing_cols}; columns are {table.columns}")
    if not names:
        raise ValueError("no param columns to analyse")
    if table.height < 4:
        raise ValueError(f"too few usable trials to analyse ({table.height}; failed, pruned "
                         "and running trials are left out unless include= asks for them)")
    logged = set(log or ())
    plist = [_param(n, table[n], space.get(n, {}), n in logged) for n in names]
    X = np.column_stack([p.to_unit(table[p.name]) for p in plist])
    y = table["value"].cast(pl.Float64).to_numpy()
    # canonical rows: the fits draw bootstrap and subsample rows by index, so the
    # same trials must come in the same order whatever order the table had
    rows = np.lexsort(np.column_stack([X, y]).T[::-1])
    return Design(X[rows], y[rows], plist, direction, n0 - table.height)


def _param(name: str, col, hint: dict, force_log: bool) -> Param:
    import polars as pl

    missing = col.null_count() / len(col) if len(col) else 0.0
    dtype = col.dtype
    if dtype == pl.Boolean:
        return Param(name, "bool", categories=[False, True], missing=missing)
    if dtype.is_numeric() and not hint.get("categories"):
        kind = "int" if dtype.is_integer() else "float"
        log = force_log or bool(hint.get("log"))
        p = Param(name, kind, log=log, missing=missing)
        present = col.drop_nulls()
        # the scale is monotone, so the scaled range is the scaled ends of the raw range
        lo, hi = (p._scale(present.min()), p._scale(present.max())) if len(present) else (0.0, 0.0)
        if hint.get("low") is not None and hint.get("high") is not None:
            try:
                lo = min(lo, p._scale(hint["low"]))
                hi = max(hi, p._scale(hint["high"]))
            except (TypeError, ValueError):
                pass  # a space bound we cannot read: the trials' range it is
        p.low, p.high = lo, hi
        if kind == "int" and not log:
            p.low, p.high = math.floor(lo), math.ceil(hi)
        return p
    # by canonical key: a category may be a dict or a list (an estimator in a grid)
    present = {category_key(v): v for v in col.to_list() if v is not None}
    hinted = [category_key(c) for c in hint.get("categories") or []]
    keys = [k for k in dict.fromkeys(hinted) if k in present]
    keys += sorted((k for k in present if k not in set(keys)), key=str)
    return Param(name, "categorical", categories=[present[k] for k in keys], missing=missing,
                 choices=len(set(hinted) | set(present)))
