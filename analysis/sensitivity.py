"""Which hyperparameters matter: fANOVA, permutation and impurity importance,
pairwise interactions and main-effect curves.

>>> from hptrack import analysis
>>> analysis.importance("rf-random")                      # fANOVA, polars DataFrame
>>> analysis.importance(df, method="permutation")          # any table with a 'value' column
>>> analysis.interactions("rf-random").head(3)             # strongest pairs first
>>> analysis.marginals("rf-random", "max_depth")           # main-effect curve for a plot

Columns of ``importance``:

- ``importance``: the method's own number. fanova: the param's first-order
  *raw variance fraction* V_j / V (the part of the objective's variance over
  the whole space that the param explains alone); these sum to at most 1, the
  rest is interactions (see ``interactions``). permutation: mean drop of R^2 on
  held-out trials when the param is shuffled. impurity: mean decrease in
  impurity of a random forest.
- ``std``: spread of ``importance`` over the surrogate's members (bootstrap
  refits / sub-forests / permutation repeats / trees).
- ``variance_fraction``: same as ``importance`` for fanova, null otherwise.
- ``share``: ``importance`` normalised to sum to 1 over params (negative
  values count as 0). This is what Optuna's get_param_importances prints.

Failed, pruned and running trials are left out unless ``include=`` names
their states; ``budget=`` analyses every trial's reported value at one step.

A search with more than ``max_trials`` usable trials (default 20,000) is
analysed on a seeded random sample of that many (``max_trials=None``: all).
Why 20,000: fitting costs O(trials) per boosting round, while each round of
the default surrogate already sees at most a few thousand trials; on
Ishigami (5 params, noisy) the fractions from 20,000 of 100,000 trials are
as close to the truth as from all 100,000 (max error 0.025-0.030 vs
0.027-0.028 over seeds) at a fifth of the time, and on the 85,000 complete
trials of benchmarks/bench_query.py's big search they differ from the
all-trials fit by at most 0.0013. ``analyse`` says how many trials the
result stands on.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import fanova
from .source import design

METHODS = ("fanova", "permutation", "impurity")
MAX_TRIALS = 20_000   # usable trials analysed at most; a seeded sample past that (module docstring)


# --- progress: a transient rich bar on stderr, only past ~1 s and on a terminal ----
class _Progress:
    def __init__(self, total: int, label: str, delay: float = 1.0):
        self.total, self.label, self.delay = total, label, delay
        self.start, self.done, self.bar, self.task = time.monotonic(), 0, None, None

    def __call__(self, n: int = 1):
        self.done += n
        if self.bar is None and time.monotonic() - self.start > self.delay and _tty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=min(self.done, self.total))

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def _tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def _progress(total, label):
    p = _Progress(total, label)
    try:
        yield p
    finally:
        p.close()


# --- public API ------------------------------------------------------------------
def importance(source, method="fanova", store=None, n_trees=None, seed=0, top_quantile=None,
               budget=None, *, params=None, include=("complete",), direction=None, log=None,
               surrogate="boosting", n_members=None, as_of=None, max_trials=MAX_TRIALS, objective=None):
    """Importance of each param for the objective of ``source``.

    Args:
        source: a search name or id (read from ``store``), or a polars/pandas
            table with one column per param and a ``value`` column.
        method: ``fanova`` (variance decomposition over the whole param
            space), ``permutation`` or ``impurity``.
        n_trees: trees per surrogate member (fanova: boosting rounds, default
            300; forest trees, default 64) or forest size (100) for the others.
        seed: makes the result reproducible.
        top_quantile: analyse only the best q of trials (needs the search's
            direction, or ``direction=`` for a table).
        budget: analyse each trial's reported value at this step ("common":
            the last step every trial reached), pruned trials included.
        params: the param columns of a table (default: all but the trial columns).
        include: trial states analysed (default only ``complete``).
        log: param names to analyse on the log scale, besides those the
            recorded space marks as log.
        surrogate: fanova's model, ``boosting`` (default, accurate) or
            ``forest`` (the random forest of Hutter et al. 2014).
        max_trials: analyse a seeded random sample of this many usable trials
            when there are more (None: all); ``analyse`` reports the count.
        objective: which objective of a multi-objective search (0, 1, ...);
            such a search must name one (a ValueError lists them).

    Returns a polars DataFrame (param, importance, std, variance_fraction,
    share), most important first; see the module docstring for the columns.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective)
    if method == "fanova":
        return _analyse(d, 0, n_trees, seed, surrogate, n_members, grid=None).importance
    imp, std = (_permutation if method == "permutation" else _impurity)(d, n_trees, seed)
    return _importance_frame(d, imp, std, None)


def _importance_frame(d, imp, std, frac):
    import polars as pl

    pos = np.clip(imp, 0, None)
    share = pos / pos.sum() if pos.sum() > 0 else np.zeros_like(pos)
    df = pl.DataFrame({
        "param": d.names,
        "importance": imp.astype(float),
        "std": std.astype(float),
        "variance_fraction": pl.Series(frac, dtype=pl.Float64) if frac is not None
        else pl.Series([None] * len(imp), dtype=pl.Float64),
        "share": share.astype(float),
    })
    return df.sort(["importance", "param"], descending=[True, False])


def interactions(source, store=None, n_trees=None, seed=0, top_quantile=None, budget=None, *,
                 params=None, include=("complete",), direction=None, log=None,
                 surrogate="boosting", n_members=None, as_of=None, max_trials=MAX_TRIALS, objective=None):
    """Pairwise interaction variance fractions (fANOVA second order): polars
    DataFrame (param_a, param_b, importance, std), strongest pairs first.

    ``importance`` is V_ab / V, the variance the pair explains beyond both
    main effects; main effects plus pairs sum to at most 1.
    """
    import polars as pl

    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective)
    k = len(d.params)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    with _progress(_fit_steps(surrogate, n_members) + len(pairs) + 1, "interactions") as bar:
        ens, (V, _, Vm, _) = _fit(d, n_trees, seed, surrogate, n_members, bar)
        rows = []
        for a, b in pairs:
            v, vm = fanova.pair_variances(ens, a, b)
            rows.append((d.names[a], d.names[b], float(_frac(v, V)), float(np.std(_frac(vm, Vm)))))
            bar(1)
    df = pl.DataFrame(rows, schema={"param_a": pl.String, "param_b": pl.String,
                                    "importance": pl.Float64, "std": pl.Float64}, orient="row")
    return df.sort(["importance", "param_a", "param_b"], descending=[True, False, False])


def marginals(source, param, store=None, n_trees=None, seed=0, top_quantile=None, budget=None, *,
              grid=50, params=None, include=("complete",), direction=None, log=None,
              surrogate="boosting", n_members=None, as_of=None, max_trials=MAX_TRIALS, objective=None):
    """The main-effect curve of ``param``: the objective averaged over every
    other param, on a grid over the param's range (its categories for a
    categorical). Polars DataFrame (value, mean, std), std over members.
    """
    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective)
    if param not in d.names:
        raise ValueError(f"no param {param!r}; params are {d.names}")
    with _progress(_fit_steps(surrogate, n_members) + 1, "marginals") as bar:
        ens, total = _fit(d, n_trees, seed, surrogate, n_members, bar)
    return _marginal(d, d.names.index(param), ens, total, grid)


@dataclass
class Sensitivity:
    """fANOVA importance and the main-effect curves of the top params, from one
    surrogate fit, and how many trials it stands on."""

    importance: object                 # polars, as importance() returns
    marginals: dict = field(default_factory=dict)   # param -> polars, as marginals() returns
    n_fitted: int = 0                  # trials the surrogate was fitted on
    n_usable: int = 0                  # usable trials of the source (>= n_fitted)

    @property
    def sampled(self) -> bool:
        return self.n_fitted < self.n_usable

    @property
    def note(self) -> str:
        if not self.sampled:
            return f"fitted on all {self.n_usable:,} usable trials"
        return f"fitted on a seeded random sample of {self.n_fitted:,} of {self.n_usable:,} usable trials"


def analyse(source, store=None, *, top=2, n_trees=None, seed=0, grid=50, params=None,
            include=("complete",), budget=None, top_quantile=None, direction=None, log=None,
            surrogate="boosting", n_members=None, as_of=None, max_trials=MAX_TRIALS, objective=None,
            space=None) -> Sensitivity:
    """fANOVA ``importance`` plus ``marginals`` of the ``top`` most important
    params, reading the source and fitting the surrogate once (what
    ``hptrack report`` shows). Same arguments and results as those two; the
    returned Sensitivity also says how many trials were fitted (``note``).
    ``space``: the recorded search space, for a table source already read
    from the store (see ``source.design``).

    >>> s = analysis.analyse("rf-random", top=2)
    >>> s.importance, s.marginals["max_depth"], s.note
    """
    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective, space=space)
    return _analyse(d, top, n_trees, seed, surrogate, n_members, grid)


def _design(source, store, max_trials, seed, **filters):
    """The source's design, sampled down to ``max_trials`` rows (seeded) when it holds more."""
    return design(source, store, **filters).sample(max_trials, seed)


def _fit(d, n_trees, seed, surrogate, n_members, bar):
    """(fitted ensemble, fanova.total_variance of it); advances ``bar`` per member and once more."""
    ens = fanova.fit(d.X, d.y, surrogate=surrogate, n_trees=n_trees, n_members=n_members,
                     seed=seed, progress=bar)
    total = fanova.total_variance(ens, fanova.qmc_points(len(d.params), seed))
    bar(1)
    return ens, total


def _analyse(d, top, n_trees, seed, surrogate, n_members, grid) -> Sensitivity:
    with _progress(_fit_steps(surrogate, n_members) + 2, "fanova") as bar:
        ens, total = _fit(d, n_trees, seed, surrogate, n_members, bar)
        imp, std = _fanova_main(ens, total)
        bar(1)
    out = Sensitivity(_importance_frame(d, imp, std, imp), n_fitted=len(d.y), n_usable=d.n_usable)
    for p in out.importance["param"].head(top).to_list():
        out.marginals[p] = _marginal(d, d.names.index(p), ens, total, grid)
    return out


def _marginal(d, j, ens, total, grid):
    """The main-effect curve of param j (see ``marginals``) from a fitted ensemble."""
    import polars as pl

    p = d.params[j]
    member_means = total[3]
    cuts, f = fanova.main_effect(ens, j)
    w = np.diff(cuts)
    # level each member's curve to its own mean over the space (the box sums omit constants)
    f = f - (f * w).sum(axis=1, keepdims=True) + member_means[:, None]
    if p.kind in ("categorical", "bool"):
        k = len(p.categories)
        width = 1.0 - p.missing
        us = [(i + 0.5) / k * width for i in range(k)]
    elif p.kind == "int" and not p.log:
        n_values = int(p.high - p.low + 1)
        step = max(1, n_values // grid) if n_values > grid else 1
        us = [((i - p.low) + 0.5) / n_values * (1 - p.missing)
              for i in range(int(p.low), int(p.high) + 1, step)]
    else:
        us = list(np.linspace(0, 1, grid) * (1 - p.missing))
    if p.missing:
        us.append(1.0 - p.missing / 2)
    cell = np.clip(np.searchsorted(cuts, us, side="right") - 1, 0, len(w) - 1)
    values = [p.from_unit(min(u, np.nextafter(1.0, 0))) for u in us]
    mean, std = f[:, cell].mean(axis=0), f[:, cell].std(axis=0)
    value_col = pl.Series("value", [None if v is None else str(v) for v in values], dtype=pl.String) \
        if p.kind in ("categorical", "bool") or p.missing else pl.Series("value", values)
    return pl.DataFrame([value_col, pl.Series("mean", mean), pl.Series("std", std)])


# --- estimators --------------------------------------------------------------------
def _fit_steps(surrogate, n_members):
    return n_members or (5 if surrogate == "boosting" else 8)


def _frac(v, V):
    V = np.asarray(V, float)
    return np.where(V > 0, np.clip(v, 0, None) / np.where(V > 0, V, 1), 0.0)


def _fanova_main(ens, total):
    """(first-order variance fractions, their spread over members) of a fitted ensemble."""
    V, _, Vm, _ = total
    v, vm = fanova.main_variances(ens)
    return _frac(v, V), _frac(vm, Vm[:, None]).std(axis=0)


def _forest(d, n_trees, seed):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=n_trees or 100, min_samples_leaf=2, random_state=seed)


def _permutation(d, n_trees, seed):
    """Permutation importance (drop in R^2) of a forest on a held-out quarter of the trials."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.y))
    n_test = max(2, len(d.y) // 4)
    test, train = order[:n_test], order[n_test:]
    with _progress(2, "permutation") as bar:
        model = _forest(d, n_trees, seed).fit(d.X[train], d.y[train])
        bar(1)
        r = permutation_importance(model, d.X[test], d.y[test], n_repeats=10, random_state=seed)
        bar(1)
    return r.importances_mean, r.importances_std


def _impurity(d, n_trees, seed):
    """Mean decrease in impurity of a forest fitted on all trials (the seed's method)."""
    with _progress(1, "impurity") as bar:
        model = _forest(d, n_trees, seed).fit(d.X, d.y)
        bar(1)
    per_tree = np.array([t.feature_importances_ for t in model.estimators_])
    return model.feature_importances_, per_tree.std(axis=0)
