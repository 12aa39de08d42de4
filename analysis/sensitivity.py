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
  rest is interactions (see ``interactions``). ped_anova: the Pearson
  divergence between the param's distribution among the top 10% of trials and
  among all (Watanabe et al. 2023, as Optuna's PedAnovaImportanceEvaluator;
  not a fraction, compare ``share``). permutation: mean drop of R^2 on
  held-out trials when the param is shuffled. impurity: mean decrease in
  impurity of a random forest.
- ``std``: spread of ``importance`` over the surrogate's members (bootstrap
  refits / sub-forests / permutation repeats / trees).
- ``variance_fraction``: same as ``importance`` for fanova, null otherwise.
- ``share``: ``importance`` normalised to sum to 1 over params (negative
  values count as 0). This is what Optuna's get_param_importances prints.
- ``ci_low``, ``ci_high``: a 95% bootstrap interval, over refits on trials
  resampled with replacement (seeded): fanova's members (20 by default),
  ped_anova's 20 recomputations, permutation's 20 refits, impurity's trees (each fitted on a bootstrap
  sample); for fanova's ``forest`` surrogate the members are sub-forests.
  It is the refits' 2.5-97.5% percentiles shifted by ``importance`` minus
  their mean (a bagged estimate is smoother than one refit), clipped to
  [0, 1] for fanova and impurity (shares; permutation's R^2 drop can be
  negative). One refit varies more than the bagged estimate, so the
  interval errs on the wide side.

``stability`` says how far the ranking can be trusted: the share of those
refits whose top param is the top param overall, and "ranking unstable"
when that share is under 80% or the analysis stands on fewer than 30 trials.

The variance V that fractions divide by is estimated on a Sobol point set,
the main effects V_j exactly; V is at least the sum of the V_j (the
decomposition is orthogonal), so an estimate below that sum (a function that
changes inside a sliver of the cube the points miss, or one param whose
V_1 = V) is raised to it: fractions stay in [0, 1] and sum to at most 1.

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
from typing import TYPE_CHECKING

import numpy as np

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf
from hptrack.analysis import fanova
from hptrack.analysis.notebook import Shown
from hptrack.analysis.source import category_label, design

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import polars as pl

METHODS = ("fanova", "ped_anova", "permutation", "impurity")
N_BOOT = 20           # bootstrap refits behind ci_low / ci_high and stability (permutation)
CI = 0.95
STABLE_SHARE = 0.8    # the top param must stay top in this share of refits ...
STABLE_TRIALS = 30    # ... and the fit stand on this many trials, or the ranking is "unstable"
MAX_TRIALS = 20_000   # usable trials analysed at most; a seeded sample past that (module docstring)


# --- progress: a transient rich bar on stderr, only past ~1 s and on a terminal ----
class _Progress:
    def __init__(self, total: int, label: str, delay: float = 1.0) -> None:
        self.total, self.label, self.delay = total, label, delay
        self.start, self.done = time.monotonic(), 0
        self.bar: Any = None  # a rich Progress once shown
        self.task: Any = None

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.bar is None and time.monotonic() - self.start > self.delay and _tty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=min(self.done, self.total))

    def close(self) -> None:
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
def importance(source: str | pl.DataFrame, method: str = "fanova", store: StoreLike = None,
               n_trees: int | None = None, seed: int = 0,
               top_quantile: float | None = None,
               budget: int | str | None = None, *, params: list[str] | None = None,
               include: Sequence[str] | None = ("complete",), direction: str | None = None,
               log: Sequence[str] | None = None,
               surrogate: str = "boosting", n_members: int | None = None, as_of: AsOf = None,
               max_trials: int = MAX_TRIALS,
               objective: int | None = None) -> pl.DataFrame:
    """Importance of each param for the objective of ``source``.

    Args:
        source: a search name or id (read from ``store``), or a polars/pandas
            table with one column per param and a ``value`` column.
        method: ``fanova`` (variance decomposition over the whole param
            space), ``ped_anova`` (how differently the top 10% of trials chose
            each param: Optuna 5's default, analysis/ped_anova.py; needs the
            direction), ``permutation`` or ``impurity``.
        n_trees: trees per surrogate member (fanova: boosting rounds, default
            100; forest trees, default 64) or forest size (100) for the others.
        n_members: fanova's bootstrap refits (boosting, default 20) or sub-forests
            (forest, default 8); they give ``ci_low``/``ci_high`` and the stability.
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
    share, ci_low, ci_high), most important first; see the module docstring
    for the columns. ``stability`` takes the same arguments and also says
    whether the ranking can be trusted.
    """
    return stability(source, method, store, n_trees, seed, top_quantile, budget, params=params,
                     include=include, direction=direction, log=log, surrogate=surrogate,
                     n_members=n_members, as_of=as_of, max_trials=max_trials, objective=objective).importance


@dataclass(repr=False)
class Stability(Shown):
    """How far an importance ranking can be trusted (see the module docstring)."""

    importance: pl.DataFrame      # polars, as importance() returns
    top: str                # the top param
    top_share: float        # share of bootstrap refits in which it is also top
    n_boot: int             # refits
    n_trials: int           # trials the analysis stands on
    disagreement: str | None = None   # fanova: where PED-ANOVA names another top param

    def _facts(self):
        return f"top {self.top!r}", [("stability", self.note)], [("importance", self.importance)]

    @property
    def unstable(self) -> bool:
        return self.top_share < STABLE_SHARE or self.n_trials < STABLE_TRIALS

    @property
    def note(self) -> str:
        kept = (f"top param {self.top!r} stays top in {round(self.top_share * self.n_boot)} of "
                f"{self.n_boot} bootstrap refits ({self.top_share:.0%}) on {self.n_trials} trials")
        if not self.unstable:
            note = f"{kept}: ranking stable"
        else:
            why = (f"fewer than {STABLE_TRIALS} trials" if self.n_trials < STABLE_TRIALS
                   else f"under {STABLE_SHARE:.0%} of refits")
            note = f"{kept}: ranking unstable ({why}); read the intervals, not the order"
        return note if self.disagreement is None else f"{note}. {self.disagreement}"


def stability(source: str | pl.DataFrame, method: str = "fanova", store: StoreLike = None, n_trees: int | None = None,
              seed: int = 0,
              top_quantile: float | None = None,
              budget: int | str | None = None, *, params: list[str] | None = None,
              include: Sequence[str] | None = ("complete",), direction: str | None = None,
              log: Sequence[str] | None = None,
              surrogate: str = "boosting", n_members: int | None = None, as_of: AsOf = None,
              max_trials: int = MAX_TRIALS,
              objective: int | None = None) -> Stability:
    """``importance`` (same arguments) with how stable its ranking is over
    bootstrap refits: ``.importance`` is the table, ``.note`` the statement."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective)
    if method == "fanova":
        st = _analyse(d, 0, n_trees, seed, surrogate, n_members, grid=None).stability
        assert st is not None  # _analyse always measures it
        return st
    if method == "ped_anova":
        return _stability(d, *_ped_anova(d, seed), frac=None, unit=False)
    if method == "permutation":
        return _stability(d, *_permutation(d, n_trees, seed), frac=None, unit=False)
    return _stability(d, *_impurity(d, n_trees, seed), frac=None, unit=True)


def _stability(d, imp, std, reps, *, frac, unit: bool) -> Stability:
    """The importance frame and its Stability, from the estimate and its bootstrap replicates
    ``reps`` (one row per refit); ``unit``: the importance is a share, its interval in [0, 1]."""
    frame = _importance_frame(d, imp, std, frac, reps, unit)
    top = frame["param"][0]
    tops = _top_of(d, reps)   # each refit's top
    share = float(np.mean(tops == d.names.index(top)))
    return Stability(frame, top, share, len(reps), len(d.y))


def _top_of(d, values):
    """The index of the top param of ``values`` (the last axis is the params): its largest
    value, ties to the first name, as the importance frame sorts."""
    order = np.argsort(d.names)
    return order[np.argmax(values[..., order], axis=-1)]


def _importance_frame(d, imp, std, frac, reps, unit):
    import polars as pl

    pos = np.clip(imp, 0, None)
    share = pos / pos.sum() if pos.sum() > 0 else np.zeros_like(pos)
    tail = (1 - CI) / 2 * 100
    # the refits' percentiles, moved by as much as the estimate differs from the refits' mean:
    # a bagged estimate is smoother than any one refit (lower for a param that does nothing),
    # and an interval should be about the number printed beside it
    low, high = np.percentile(reps, [tail, 100 - tail], axis=0) + (imp - reps.mean(axis=0))
    if unit:
        low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    df = pl.DataFrame({
        "param": d.names,
        "importance": imp.astype(float),
        "std": std.astype(float),
        "variance_fraction": pl.Series(frac, dtype=pl.Float64) if frac is not None
        else pl.Series([None] * len(imp), dtype=pl.Float64),
        "share": share.astype(float),
        "ci_low": low.astype(float),
        "ci_high": high.astype(float),
    })
    return df.sort(["importance", "param"], descending=[True, False])


def interactions(source: str | pl.DataFrame, store: StoreLike = None, n_trees: int | None = None, seed: int = 0,
                 top_quantile: float | None = None, budget: int | str | None = None, *,
                 params: list[str] | None = None, include: Sequence[str] | None = ("complete",),
                 direction: str | None = None, log: Sequence[str] | None = None,
                 surrogate: str = "boosting", n_members: int | None = None, as_of: AsOf = None,
                 max_trials: int = MAX_TRIALS,
                 objective: int | None = None) -> pl.DataFrame:
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
        pair_vars = []
        for a, b in pairs:
            pair_vars.append(fanova.pair_variances(ens, a, b))
            bar(1)
        # V is at least main effects plus pairs (orthogonal parts): see the module docstring
        v_main, vm_main = fanova.main_variances(ens)
        V = max(V, v_main.sum() + sum(np.clip(v, 0, None) for v, _ in pair_vars))
        Vm = np.maximum(Vm, vm_main.sum(axis=1) + sum(np.clip(vm, 0, None) for _, vm in pair_vars))
        rows = [(d.names[a], d.names[b], float(_frac(v, V)), float(np.std(_frac(vm, Vm))))
                for (a, b), (v, vm) in zip(pairs, pair_vars)]
    df = pl.DataFrame(rows, schema={"param_a": pl.String, "param_b": pl.String,
                                    "importance": pl.Float64, "std": pl.Float64}, orient="row")
    return df.sort(["importance", "param_a", "param_b"], descending=[True, False, False])


def marginals(source: str | pl.DataFrame, param: str, store: StoreLike = None, n_trees: int | None = None,
              seed: int = 0,
              top_quantile: float | None = None, budget: int | str | None = None, *,
              grid: int = 50, params: list[str] | None = None, include: Sequence[str] | None = ("complete",),
              direction: str | None = None, log: Sequence[str] | None = None,
              surrogate: str = "boosting", n_members: int | None = None, as_of: AsOf = None,
              max_trials: int = MAX_TRIALS,
              objective: int | None = None) -> pl.DataFrame:
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


@dataclass(repr=False)
class Sensitivity(Shown):
    """fANOVA importance and the main-effect curves of the top params, from one
    surrogate fit, and how many trials it stands on."""

    importance: pl.DataFrame                 # polars, as importance() returns
    marginals: dict = field(default_factory=dict)   # param -> polars, as marginals() returns
    n_fitted: int = 0                  # trials the surrogate was fitted on
    n_usable: int = 0                  # usable trials of the source (>= n_fitted)
    stability: Stability | None = None  # how far the ranking can be trusted
    totals: pl.DataFrame | None = None  # analyse(totals=True): total effects, see total_effects_frame

    def _facts(self):
        top = self.importance["param"][0] if self.importance.height else None
        facts = [("top param", top), ("fit", self.note),
                 ("stability", self.stability.note if self.stability else None)]
        frames = [("importance", self.importance)] + [(f"main effect of {p}", m) for p, m in self.marginals.items()]
        return f"{self.importance.height} params", facts, frames

    @property
    def sampled(self) -> bool:
        return self.n_fitted < self.n_usable

    @property
    def note(self) -> str:
        if not self.sampled:
            return f"fitted on all {self.n_usable:,} usable trials"
        return f"fitted on a seeded random sample of {self.n_fitted:,} of {self.n_usable:,} usable trials"


def analyse(source: str | pl.DataFrame, store: StoreLike = None, *, top: int = 2, n_trees: int | None = None,
            seed: int = 0,
            grid: int = 50, params: list[str] | None = None,
            include: Sequence[str] | None = ("complete",), budget: int | str | None = None,
            top_quantile: float | None = None, direction: str | None = None,
            log: Sequence[str] | None = None,
            surrogate: str = "boosting", n_members: int | None = None, as_of: AsOf = None, max_trials: int = MAX_TRIALS,
            objective: int | None = None,
            space: dict | None = None, totals: bool = False) -> Sensitivity:
    """fANOVA ``importance`` plus ``marginals`` of the ``top`` most important
    params, reading the source and fitting the surrogate once (what
    ``hptrack report`` shows). Same arguments and results as those two; the
    returned Sensitivity also says how many trials were fitted (``note``).
    ``space``: the recorded search space, for a table source already read
    from the store (see ``source.design``). ``totals``: also each param's total
    effect (``Sensitivity.totals``: the share of the variance it carries alone and
    in all its interactions, with its 95% interval over the members).

    >>> s = analysis.analyse("rf-random", top=2)
    >>> s.importance, s.marginals["max_depth"], s.note
    """
    d = _design(source, store, max_trials, seed, params=params, include=include, budget=budget,
                top_quantile=top_quantile, direction=direction, log=log, as_of=as_of, objective=objective, space=space)
    return _analyse(d, top, n_trees, seed, surrogate, n_members, grid, totals)


def _design(source, store, max_trials, seed, **filters):
    """The source's design, sampled down to ``max_trials`` rows (seeded) when it holds more."""
    return design(source, store, **filters).sample(max_trials, seed)


def _fit(d, n_trees, seed, surrogate, n_members, bar):
    """(fitted ensemble, fanova.total_variance of it); advances ``bar`` per member and once more."""
    ens = fanova.fit(d.X, d.y, surrogate=surrogate, n_trees=n_trees, n_members=n_members,
                     seed=seed, progress=bar)
    total = fanova.total_variance(ens, fanova.variance_points(len(d.params), seed, len(d.y)))
    bar(1)
    return ens, total


def _analyse(d, top, n_trees, seed, surrogate, n_members, grid, totals=False) -> Sensitivity:
    with _progress(_fit_steps(surrogate, n_members) + 2 + totals, "fanova") as bar:
        ens, total = _fit(d, n_trees, seed, surrogate, n_members, bar)
        imp, std, reps = _fanova_main(ens, total)
        bar(1)
        if totals:
            totals_frame = _totals_frame(d, ens, seed)
            bar(1)
    st = _stability(d, imp, std, reps, frac=imp, unit=True)
    st.disagreement = _disagreement(d, st.top)
    out = Sensitivity(st.importance, n_fitted=len(d.y), n_usable=d.n_usable, stability=st,
                      totals=totals_frame if totals else None)
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
    value_col = pl.Series("value", [None if v is None else category_label(v) for v in values],
                          dtype=pl.String) \
        if p.kind in ("categorical", "bool") or p.missing else pl.Series("value", values)
    return pl.DataFrame([value_col, pl.Series("mean", mean), pl.Series("std", std)])


# --- estimators --------------------------------------------------------------------
def _fit_steps(surrogate, n_members):
    return n_members or (fanova.BOOSTING_MEMBERS if surrogate == "boosting" else fanova.FOREST_MEMBERS)


def _frac(v, V):
    V = np.asarray(V, float)
    return np.where(V > 0, np.clip(v, 0, None) / np.where(V > 0, V, 1), 0.0)


def _fanova_main(ens, total):
    """(first-order variance fractions, their spread over members, per-member fractions)."""
    V, _, Vm, _ = total
    v, vm = fanova.main_variances(ens)
    if len(v) == 1:
        # one param: its main effect is the whole function, so V is V_1, exactly
        V, Vm = v[0], vm[:, 0]
    # the exact main effects bound the sampled total from below (module docstring)
    V = max(V, np.clip(v, 0, None).sum())
    Vm = np.maximum(Vm, np.clip(vm, 0, None).sum(axis=1))
    per_member = _frac(vm, Vm[:, None])
    return _frac(v, V), per_member.std(axis=0), per_member


def _totals_frame(d, ens, seed):
    """polars (param, total, ci_low, ci_high): total-effect fractions E_j / V
    (fanova.total_effects) of the ensemble mean, the interval from the members' own
    fractions as ``ci_low``/``ci_high`` of importance are, clipped to [0, 1]."""
    import polars as pl

    e, em, V, Vm = fanova.total_effects(ens, seed)
    frac, reps = np.clip(_frac(e, V), 0, 1), np.clip(_frac(em, Vm[:, None]), 0, 1)
    tail = (1 - CI) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail], axis=0) + (frac - reps.mean(axis=0))
    return pl.DataFrame({"param": d.names, "total": frac.astype(float),
                         "ci_low": np.clip(low, 0, 1).astype(float), "ci_high": np.clip(high, 0, 1).astype(float)})


def _forest(d, n_trees, seed):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=n_trees or 100, min_samples_leaf=2, random_state=seed)


def _permutation(d, n_trees, seed):
    """Permutation importance (drop in R^2) of a forest on a held-out quarter of the
    trials, and N_BOOT replicates: forests refitted on bootstrap samples of the
    training trials, scored on the same held-out quarter."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.y))
    n_test = max(2, len(d.y) // 4)
    test, train = order[:n_test], order[n_test:]
    with _progress(2 + N_BOOT, "permutation") as bar:
        model = _forest(d, n_trees, seed).fit(d.X[train], d.y[train])
        bar(1)
        r = permutation_importance(model, d.X[test], d.y[test], n_repeats=10, random_state=seed)
        bar(1)
        reps = []
        for b in range(N_BOOT):
            rows = train[rng.integers(0, len(train), len(train))]
            m = _forest(d, max(10, (n_trees or 100) // 4), seed + 1 + b).fit(d.X[rows], d.y[rows])
            reps.append(permutation_importance(m, d.X[test], d.y[test], n_repeats=3,
                                               random_state=seed + 1 + b).importances_mean)
            bar(1)
    return r.importances_mean, r.importances_std, np.array(reps)


def _disagreement(d, fanova_top):
    """Where PED-ANOVA's top param is not fANOVA's: the two answer different questions
    (reaching the best trials / the objective's variance over the whole space), and a
    user deciding what to tune next needs both."""
    from hptrack.analysis.ped_anova import ped_anova

    if d.direction not in ("maximize", "minimize") or len(d.params) < 2:
        return None
    ped = ped_anova(d)
    top = d.names[_top_of(d, ped)]
    if ped.max() <= 0 or top == fanova_top:
        return None
    return (f"PED-ANOVA ranks {top!r} first: it matters most for reaching the top 10% of trials, "
            f"while {fanova_top!r} explains the most variance over the whole space")


def _ped_anova(d, seed):
    """PED-ANOVA on every trial (analysis/ped_anova.py), and N_BOOT replicates on
    bootstrap samples of the trials."""
    from hptrack.analysis.ped_anova import ped_anova

    rng = np.random.default_rng([seed, 0xAD0])
    n = len(d.y)
    reps = np.array([ped_anova(d, rows=rng.integers(0, n, n)) for _ in range(N_BOOT)])
    return ped_anova(d), reps.std(axis=0), reps


def _impurity(d, n_trees, seed):
    """Mean decrease in impurity of a forest fitted on all trials (the seed's method);
    its trees, each fitted on a bootstrap sample, are the replicates."""
    with _progress(1, "impurity") as bar:
        model = _forest(d, n_trees, seed).fit(d.X, d.y)
        bar(1)
    per_tree = np.array([t.feature_importances_ for t in model.estimators_])
    return model.feature_importances_, per_tree.std(axis=0), per_tree
