"""A narrower search space from a search's history: ``refine(search) -> Refinement``.

Per param, from the complete trials (the best ``top`` share of them, at least 2,
are "the top trials"):

- numeric: the span of the top trials, padded by ``PAD`` of that span on each
  side (on the log scale when the recorded space is log, or, with no recorded
  scale, when the positive values span ``SPREAD_LOG`` or more), rounded outward to 3 significant digits and
  clipped to the recorded range; an integer param stays an integer;
- categorical: the categories that never appear among the top trials are
  dropped (their counts are the evidence); one left means fixed;
- a param whose fANOVA *total effect* (the share of the objective's variance it
  carries alone and in all its interactions; ``analyse(totals=True)``) is below
  ``fix_below`` and whose 95% interval reaches down to about zero (below
  ``fix_below / 5``) is fixed at the best trial's value: it cannot be told from a
  param that does nothing, so the budget goes to the params that do. The total
  effect, not the first-order importance, is the test for fixing a param (Sobol's
  "factor fixing"): a param can matter only through another (Ishigami's x3 has no
  main effect and a quarter of the variance). No param is fixed on fewer than
  ``sensitivity.STABLE_TRIALS`` (30) complete trials, where ``analyse`` itself calls
  the ranking unstable: on 20-trial searches of KernelRidge (friedman1-krr in
  benchmarks/bench_refine.py) the estimates of alpha's share ranged from 2% to 90%
  between seeds, and fixing it or the kernel lost the good region. (The interval's
  top is no guide on a few dozen trials: it reaches 20-30% for a param
  scikit-learn ignores, such as SVC's ``cache_size``.)

``Refinement.sklearn_code()`` / ``.optuna_code()`` print the result as code to
paste (scipy.stats distributions for ``RandomizedSearchCV``; a function of an
Optuna trial), each entry under a comment saying why; ``.param_distributions()``
is the dict the sklearn code builds. Numeric grid values (a list of numbers)
are refined as a range.

The module is not named ``refine``: ``hptrack.analysis.refine`` is the function,
and a submodule of that name would replace it on the package once imported.

>>> r = hptrack.analysis.refine("svc-coarse", top=0.25)
>>> print(r.sklearn_code())
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike
from hptrack._read.read import is_trial_column
from hptrack._read.views import AsOf
from hptrack.analysis.notebook import Shown
from hptrack.analysis.source import category_key, category_label, read

if TYPE_CHECKING:
    from typing import Any

    import polars as pl

__all__ = ["ParamChoice", "Refinement", "refine"]

TOP = 0.25            # share of complete trials that are "the top trials"
FIX_BELOW = 0.05      # a fANOVA importance below this, its interval reaching ~0: the param is fixed
MIN_TRIALS = 8        # complete trials needed to refine at all
PAD = 0.1             # the range reaches this share of the top trials' span beyond them, each side
SPREAD_LOG = 100.0    # positive values of an unrecorded scale spanning this ratio are log-scaled
DIGITS = 3            # significant digits of a refined bound (rounded outward)


@dataclass
class ParamChoice:
    """What ``refine`` decided for one param, and why."""

    name: str
    kind: str                      # float, int, categorical, bool
    decision: str                  # range, choices, fixed
    why: str
    log: bool = False
    low: Any = None                # the refined range (range)
    high: Any = None
    was_low: Any = None            # the range before (numeric)
    was_high: Any = None
    categories: list = field(default_factory=list)   # kept (choices)
    dropped: list = field(default_factory=list)      # [{"category", "n_top", "n_trials"}]
    value: Any = None              # the fixed value (fixed)
    importance: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    total: float | None = None     # its total effect (alone and in interactions), and its 95% interval
    total_low: float | None = None
    total_high: float | None = None

    def distribution(self) -> Any:
        """The entry of scikit-learn's ``param_distributions``: a scipy.stats distribution or a list."""
        from scipy.stats import loguniform, randint, uniform

        if self.decision == "fixed":
            return [self.value]
        if self.decision == "choices":
            return list(self.categories)
        if self.kind == "int":
            return randint(self.low, self.high + 1)
        if self.log:
            return loguniform(self.low, self.high)
        return uniform(self.low, _scale(self.low, self.high))

    def sklearn(self) -> str:
        """``distribution()`` as Python source."""
        if self.decision == "fixed":
            return f"[{self.value!r}]"
        if self.decision == "choices":
            return repr(list(self.categories))
        if self.kind == "int":
            return f"randint({self.low!r}, {self.high + 1!r})"
        if self.log:
            return f"loguniform({self.low!r}, {self.high!r})"
        return f"uniform({self.low!r}, {_scale(self.low, self.high)!r})"

    def optuna(self) -> str:
        """The Optuna suggestion of this param as Python source (a fixed param is a constant)."""
        if self.decision == "fixed":
            return repr(self.value)
        if self.decision == "choices":
            return f"trial.suggest_categorical({self.name!r}, {list(self.categories)!r})"
        log = ", log=True" if self.log else ""
        suggest = "suggest_int" if self.kind == "int" else "suggest_float"
        return f"trial.{suggest}({self.name!r}, {self.low!r}, {self.high!r}{log})"


def _scale(low: float, high: float) -> float:
    """uniform's scale for [low, high], without the float noise of a plain difference."""
    return float(f"{high - low:.12g}")


@dataclass(repr=False)
class Refinement(Shown):
    """A narrower search space for ``search`` (see the module docstring)."""

    search: str
    direction: str
    top: float                  # the share asked for
    n_complete: int             # complete trials refined from
    n_top: int                  # of them, the top trials
    best_value: float
    params: list                # ParamChoice, in the search's column order
    stability: str = ""         # how far the importance ranking can be trusted
    fix_below: float = FIX_BELOW

    def _facts(self):
        by = {d: [p.name for p in self.params if p.decision == d] for d in ("range", "choices", "fixed")}
        dropped = [f"{p.name}: {', '.join(category_label(d['category']) for d in p.dropped)}"
                   for p in self.params if p.dropped]
        facts = [("from", f"top {self.n_top} of {self.n_complete} complete trials ({self.direction}, "
                          f"best {self.best_value:.4g})"),
                 ("ranges", ", ".join(by["range"]) or None), ("choices", ", ".join(by["choices"]) or None),
                 ("fixed", ", ".join(by["fixed"]) or None), ("dropped", "; ".join(dropped) or None)]
        return repr(self.search), facts, [("per param", self.frame())]

    def __getitem__(self, name: str) -> ParamChoice:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no param {name!r}; params are {[p.name for p in self.params]}")

    def frame(self) -> pl.DataFrame:
        """One row per param: decision, refined space (as sklearn code), importance, evidence."""
        import polars as pl

        return pl.DataFrame([{"param": p.name, "kind": p.kind, "decision": p.decision, "space": p.sklearn(),
                              "importance": p.importance, "ci_high": p.ci_high, "total": p.total,
                              "why": p.why}
                             for p in self.params],
                            schema={"param": pl.String, "kind": pl.String, "decision": pl.String,
                                    "space": pl.String, "importance": pl.Float64, "ci_high": pl.Float64,
                                    "total": pl.Float64,
                                    "why": pl.String})

    def param_distributions(self) -> dict:
        """The refined space for ``RandomizedSearchCV``: what ``sklearn_code()`` builds."""
        return {p.name: p.distribution() for p in self.params}

    def _header(self) -> str:
        return (f"refined from {self.search!r} by hptrack refine: top {self.n_top} of {self.n_complete} "
                f"complete trials ({self.direction}, best {self.best_value:.6g})")

    def sklearn_code(self) -> str:
        """``param_distributions = {...}`` for scikit-learn, each entry under its evidence."""
        kinds = {("randint" if p.kind == "int" else "loguniform" if p.log else "uniform")
                 for p in self.params if p.decision == "range"}
        lines = [f"from scipy.stats import {', '.join(sorted(kinds))}", ""] if kinds else []
        lines += [f"# {self._header()}", "param_distributions = {"]
        for p in self.params:
            lines += [f"    # {p.why}", f"    {p.name!r}: {p.sklearn()},"]
        return "\n".join(lines + ["}"])

    def optuna_code(self) -> str:
        """``def suggest_params(trial): ...`` for Optuna, each suggestion under its evidence."""
        lines = ["def suggest_params(trial):", f"    # {self._header()}", "    return {"]
        for p in self.params:
            lines += [f"        # {p.why}", f"        {p.name!r}: {p.optuna()},"]
        return "\n".join(lines + ["    }"])

    def to_dict(self) -> dict:
        return {"search": self.search, "direction": self.direction, "top": self.top,
                "n_complete": self.n_complete, "n_top": self.n_top, "best_value": self.best_value,
                "fix_below": self.fix_below, "stability": self.stability,
                "params": [asdict(p) for p in self.params],
                "sklearn_code": self.sklearn_code(), "optuna_code": self.optuna_code()}


def refine(search: str | pl.DataFrame, store: StoreLike = None, *, top: float = TOP, fix_below: float = FIX_BELOW,
           objective: int | None = None, direction: str | None = None, seed: int = 0,
           as_of: AsOf = None) -> Refinement:
    """A narrower search space from the complete trials of ``search`` (name or id, or a
    table with a ``value`` column and ``direction=``); see the module docstring.

    Args:
        top: the share of complete trials whose params set the ranges and categories.
        fix_below: a param whose fANOVA total effect is below this (its 95% interval
            reaching below a fifth of it) is fixed at the best trial's value (0: fix none).
        objective: which objective of a multi-objective search (such a search must name one).
        seed: the importance fit's seed.
    """
    import polars as pl

    from hptrack.analysis.sensitivity import STABLE_TRIALS, analyse

    if not 0 < top <= 1:
        raise ValueError(f"top must be a share of the trials in (0, 1], e.g. 0.25; got {top!r}")
    if not 0 <= fix_below < 1:
        raise ValueError(f"fix_below must be in [0, 1) (a share of the objective's variance), got {fix_below!r}")
    table, space, recorded = read(search, store, as_of=as_of, objective=objective)
    label = search if isinstance(search, str) else "table"
    direction = direction or recorded
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"{label!r}: refine needs direction='maximize' or 'minimize' (the search recorded "
                         f"{recorded!r})")
    if "state" in table.columns:
        table = table.filter(pl.col("state") == "complete")
    done = table.filter(pl.col("value").cast(pl.Float64).is_finite())
    names = [c for c in done.columns if not is_trial_column(c)]
    if done.height < MIN_TRIALS:
        raise ValueError(f"{label!r} has {done.height} complete trial(s) with a value; refine needs at least "
                         f"{MIN_TRIALS} to tell its top trials from the rest: run more trials first")
    if not names:
        raise ValueError(f"{label!r} has no params to refine")
    ranked = done.sort("value", descending=direction == "maximize", maintain_order=True)
    n_top = max(2, math.ceil(top * done.height))
    best, tops = ranked.row(0, named=True), ranked.head(n_top)
    logged = [n for n in names if _log_by_spread(done[n], space.get(n, {}))]
    sens = analyse(done, direction=direction, log=logged, top=len(names), seed=seed, space=space,
                   params=names, objective=objective, totals=True)
    imp = {r["param"]: r for r in sens.importance.to_dicts()}
    assert sens.totals is not None
    for r in sens.totals.to_dicts():
        imp[r["param"]] |= {"total": r["total"], "total_low": r["ci_low"], "total_high": r["ci_high"]}
    choices = []
    for n in names:
        facts = _Facts(n, done[n], tops[n], best[n], space.get(n, {}), n in logged, imp[n],
                      _marginal_best(sens.marginals.get(n), direction), fix_below,
                      fix_from=STABLE_TRIALS)
        choices.append(facts.choice())
    return Refinement(label, direction, top, done.height, n_top, float(best["value"]), choices,
                      stability=sens.stability.note if sens.stability else "", fix_below=fix_below)


def _log_by_spread(col: pl.Series, hint: dict) -> bool:
    """A numeric param the recorded space says nothing of the scale of, whose values are
    positive and span two decades or more."""
    if hint.get("categories") or "log" in hint or hint.get("low") is not None or not col.dtype.is_numeric():
        return False
    present = col.drop_nulls()
    if len(present) < 2:
        return False
    lo, hi = _float(present.min()), _float(present.max())
    return lo > 0 and hi / lo >= SPREAD_LOG


def _marginal_best(curve: pl.DataFrame | None, direction: str) -> Any:
    """The param value where the main-effect curve is best (None: no numeric curve)."""
    if curve is None or curve.height == 0 or not curve["value"].dtype.is_numeric():
        return None
    means = curve["mean"].to_list()
    pick = max if direction == "maximize" else min
    return curve["value"][means.index(pick(means))]


@dataclass
class _Facts:
    """What is known of one param, and the rules that turn it into a ParamChoice."""

    name: str
    col: pl.Series        # every complete trial
    top: pl.Series        # the top trials
    best: Any             # the best trial's value
    hint: dict            # the recorded space (source.space_hint)
    log_by_spread: bool
    importance: dict      # its row of importance()
    marginal_best: Any
    fix_below: float
    fix_from: int = 0     # complete trials needed to fix a param on its importance

    def choice(self) -> ParamChoice:
        import polars as pl

        boolean = self.col.dtype == pl.Boolean
        categorical = boolean or bool(self.hint.get("categories")) or not self.col.dtype.is_numeric()
        kind = ("bool" if boolean else "categorical") if categorical \
            else "int" if self.col.dtype.is_integer() else "float"
        get = self.importance.get
        p = ParamChoice(self.name, kind, "fixed", "", importance=get("importance"), ci_low=get("ci_low"),
                        ci_high=get("ci_high"), total=get("total"), total_low=get("total_low"),
                        total_high=get("total_high"))
        unimportant = p.total is not None and p.total_low is not None \
            and p.total < self.fix_below and p.total_low < self.fix_below / 5
        fanova = (f"fANOVA {_pct(p.importance)} alone, {_pct(p.total)} with its interactions "
                  f"(95% CI {_pct(p.total_low)}-{_pct(p.total_high)})")
        if categorical:
            self._categories(p)
        else:
            self._range(p)
        if unimportant and p.decision != "fixed" and len(self.col) < self.fix_from:
            p.why = (f"{p.why}; {fanova}: not fixed, {len(self.col)} complete trials are too few to tell "
                     f"a param that does nothing (fixing needs {self.fix_from})")
        elif unimportant and p.decision != "fixed":
            value = self._best_present()
            # it does not matter: a readable value near the best one serves as well
            p.decision, p.value = "fixed", float(f"{value:.{DIGITS}g}") if isinstance(value, float) else value
            p.why = (f"fixed at the best trial's value: {fanova}, below {_pct(self.fix_below)} and "
                     f"not told from 0; {p.why}")
        else:
            p.why = f"{p.why}; {fanova}"
        return p

    def _best_present(self) -> Any:
        """The best trial's value, or the top trials' most common one when the best lacks it."""
        if self.best is not None:
            return self.best
        present = self.top.drop_nulls()
        return present.mode().sort()[0] if len(present) else None

    def _categories(self, p: ParamChoice) -> None:
        def counts(s):
            out: dict = {}
            for v in s.to_list():
                out[category_key(v)] = out.get(category_key(v), 0) + 1
            return out

        n_all, n_top = counts(self.col), counts(self.top)
        offered = {category_key(c): c for c in self.hint.get("categories") or []}
        for v in self.col.to_list():
            offered.setdefault(category_key(v), v)
        kept = [c for k, c in offered.items() if n_top.get(k)]
        p.categories = kept
        p.dropped = [{"category": c, "n_top": 0, "n_trials": n_all.get(k, 0)}
                     for k, c in offered.items() if not n_top.get(k)]
        where = ", ".join(f"{category_label(c)} {n_top[category_key(c)]}" for c in kept)
        p.why = f"in the top {len(self.top)}: {where}"
        if p.dropped:
            p.why += "; dropped, never in the top: " + ", ".join(
                f"{category_label(d['category'])} ({d['n_trials']} of {len(self.col)} trials)" for d in p.dropped)
        if len(kept) == 1:
            p.decision, p.value = "fixed", kept[0]
            p.why = f"fixed: the only category in the top trials; {p.why}"
        else:
            p.decision = "choices"

    def _range(self, p: ParamChoice) -> None:
        p.log = bool(self.hint.get("log")) or self.log_by_spread
        present, top = self.col.drop_nulls(), self.top.drop_nulls()
        if not len(present):
            p.why = "fixed: no complete trial has it"
            return
        lo, hi = _float(present.min()), _float(present.max())
        if self.hint.get("low") is not None and self.hint.get("high") is not None:
            lo, hi = min(lo, float(self.hint["low"])), max(hi, float(self.hint["high"]))
        p.was_low, p.was_high = (int(lo), int(hi)) if p.kind == "int" else (lo, hi)
        if not len(top):
            p.decision, p.value = "fixed", self._best_present()
            p.why = "fixed: no top trial has it (conditional param)"
            return
        t_lo, t_hi = _float(top.min()), _float(top.max())
        # the top trials' span: the main effect's best point is evidence, not a bound (it
        # averages over the other params, so for a param that matters little it may sit
        # anywhere, far from every good trial)
        f, inv = (math.log10, lambda v: 10 ** v) if p.log else (float, float)
        a, b = f(t_lo), f(t_hi)
        pad = PAD * (b - a if b > a else f(hi) - f(lo))
        # the optimum may lie anywhere between the top trials and the nearest worse trial beyond them
        below, above = present.filter(present < t_lo), present.filter(present > t_hi)
        near_lo = _outward(_float(below.max()), -1) if len(below) else lo
        near_hi = _outward(_float(above.min()), 1) if len(above) else hi
        new_lo = max(lo, min(t_lo, near_lo, _outward(inv(a - pad), -1)))
        new_hi = min(hi, max(t_hi, near_hi, _outward(inv(b + pad), 1)))
        if p.kind == "int":
            new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
        scale = " (log)" if p.log else ""
        marginal = f", main effect best at {_num(self.marginal_best)}" if self.marginal_best is not None else ""
        p.why = (f"top {len(top)} of {len(present)} trials span {_num(t_lo)}..{_num(t_hi)}{marginal}; "
                 f"was {_num(p.was_low)}..{_num(p.was_high)}{scale}")
        if new_lo == new_hi:
            p.decision, p.value = "fixed", new_lo
            p.why = f"fixed: the top trials agree; {p.why}"
            return
        p.decision, p.low, p.high = "range", new_lo, new_hi


def _outward(x: float, sign: int) -> float:
    """x rounded to DIGITS significant digits, down (sign -1) or up (+1)."""
    if x == 0 or not math.isfinite(x):
        return x
    q = 10.0 ** (math.floor(math.log10(abs(x))) - DIGITS + 1)
    k = math.floor(x / q) if sign < 0 else math.ceil(x / q)
    return float(f"{k * q:.{DIGITS}g}")


def _float(v: Any) -> float:
    """A numeric column's min or max as a float (polars types it as any scalar)."""
    return float(v)


def _num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.1%}" if v < 0.1 else f"{v:.0%}"
