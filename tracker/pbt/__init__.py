"""Population based training (Jaderberg et al. 2017) with its lineage recorded as events.

A population of members trains in parallel worker processes. Every ``ready``
steps the members are ranked; each member in the bottom ``quantile`` copies
the model state of a random member of the top ``quantile`` (exploit) and
perturbs its hyperparameters by x0.8 / x1.2 or resamples them (explore).

Events: each member starts as a trial (``trial_started`` with its params).
Every round writes a ``trial_reported`` per member (the params ride along in
``payload.metrics``, so the schedule is in the reports too). An exploit ends
the replaced member's trial as ``trial_pruned`` at that step and starts a new
trial (``trial_started`` + ``trial_forked``) whose payload holds
``parent_trial_id``, ``parent_score``, ``replaced_trial_id``,
``replaced_score``, ``params_before`` (the parent's), ``params_after``,
``explore`` and ``copied_score`` (the child's score evaluated right after the
copy, before any training: equal to ``parent_score`` when the copy is exact).
Members alive at the end complete with their last score.

:func:`lineage` rebuilds the forks with SQL; :func:`schedule` walks them back
from a member to give its hyperparameter schedule.

Models follow a small protocol, the *adapter* (picklable, it is sent to the
workers once): ``create(params, seed) -> model``, ``train(model, params, steps)
-> model``, ``evaluate(model) -> float``, ``get_state(model) -> state`` and
``set_state(model, state) -> model``. :class:`SklearnPartialFit` is the adapter
for scikit-learn estimators with ``partial_fit`` (MLPClassifier, SGDClassifier).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import math
import multiprocessing
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hptrack.api import search as open_search

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from hptrack.api import StoreLike

# --- the scikit-learn adapter ------------------------------------------------------------


class SklearnPartialFit:
    """Train a scikit-learn estimator with ``partial_fit``, one epoch per step, and
    score it on validation data (``estimator.score`` unless ``scoring`` is given)."""

    def __init__(self, estimator: BaseEstimator, X: Any, y: Any, X_val: Any, y_val: Any, *, classes: Any = None,
                 scoring: Callable[[BaseEstimator, Any, Any], float] | None = None) -> None:
        self.estimator, self.X, self.y, self.X_val, self.y_val = estimator, X, y, X_val, y_val
        self.classes, self.scoring = classes, scoring

    def create(self, params: dict[str, Any], seed: int) -> BaseEstimator:
        from sklearn.base import clone
        model = clone(self.estimator)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed)
        return self._apply(model, params)

    def _apply(self, model, params):
        model.set_params(**params)
        # MLP's optimizer keeps the learning rate it was built with: change it there too
        opt = getattr(model, "_optimizer", None)
        if opt is not None and "learning_rate_init" in params:
            opt.learning_rate_init = params["learning_rate_init"]
            opt.learning_rate = float(params["learning_rate_init"])
        return model

    def train(self, model: BaseEstimator, params: dict[str, Any], steps: int) -> BaseEstimator:
        model = self._apply(model, params)
        kw = {} if self.classes is None else {"classes": self.classes}
        for _ in range(steps):
            model.partial_fit(self.X, self.y, **kw)
        return model

    def evaluate(self, model: BaseEstimator) -> float:
        if self.scoring is not None:
            return float(self.scoring(model, self.X_val, self.y_val))
        return float(model.score(self.X_val, self.y_val))

    def get_state(self, model: BaseEstimator) -> dict[str, Any]:
        return copy.deepcopy(model.__dict__)

    def set_state(self, model: BaseEstimator, state: dict[str, Any]) -> BaseEstimator:
        model.__dict__.clear()
        model.__dict__.update(copy.deepcopy(state))
        return model


# --- the search space ---------------------------------------------------------------------

def _sample(spec, rng):
    """A value of one space entry: ("log", lo, hi), ("float", lo, hi), ("int", lo, hi) or a list."""
    if isinstance(spec, list):
        return rng.choice(spec)
    kind, lo, hi = spec
    if kind == "log":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if kind == "int":
        return rng.randint(lo, hi)
    return rng.uniform(lo, hi)


def _explore(params, space, rng, perturb, resample_p):
    new, how = {}, {}
    for name, spec in space.items():
        if isinstance(spec, list) or rng.random() < resample_p:
            if isinstance(spec, list) and rng.random() >= resample_p:
                new[name], how[name] = params[name], "kept"
            else:
                new[name], how[name] = _sample(spec, rng), "resampled"
            continue
        kind, lo, hi = spec
        factor = rng.choice(perturb)
        value = min(max(params[name] * factor, lo), hi)
        new[name] = round(value) if kind == "int" else value
        how[name] = f"x{factor}"
    return new, how


# --- workers ----------------------------------------------------------------------------

_ADAPTER = None


def _init_worker(adapter):
    global _ADAPTER
    _ADAPTER = adapter


def _train(model, params, steps):
    model = _ADAPTER.train(model, params, steps)
    return model, _ADAPTER.evaluate(model), os.getpid()


# --- the runner -------------------------------------------------------------------------

@dataclass
class Member:
    trial: object
    params: dict
    model: object
    score: float = float("nan")
    pid: int | None = None


@dataclass
class PBTResult:
    search_id: str
    best_trial_id: str
    best_score: float
    best_params: dict
    best_model: object
    n_forks: int
    total_steps: int


class PBT:
    """Population based training of ``adapter``'s models over ``space``.

    ``rounds`` rounds of ``ready`` training steps each; after every round but
    the last, the bottom ``quantile`` of the population exploits the top
    ``quantile`` and explores. ``workers`` processes train members in
    parallel (0: in this process). Events go to the search ``name``.
    """

    def __init__(self, adapter: Any, space: Mapping[str, tuple[str, float, float] | list[Any]], *, name: str,
                 population: int = 8, ready: int = 2, rounds: int = 10, quantile: float = 0.2,
                 perturb: Sequence[float] = (0.8, 1.2), resample_p: float = 0.25, direction: str = "maximize",
                 workers: int = 2, seed: int = 0, store: StoreLike = None, **attrs: Any) -> None:
        if population < 2:
            raise ValueError(f"population must be >= 2, got {population}")
        if not 0 < quantile <= 0.5:
            raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        self.adapter, self.space, self.name = adapter, dict(space), name
        self.population, self.ready, self.rounds = population, ready, rounds
        self.quantile, self.perturb, self.resample_p = quantile, tuple(perturb), resample_p
        self.direction, self.workers, self.seed, self.store = direction, workers, seed, store
        self.attrs = attrs

    def _better(self, a, b):
        return a > b if self.direction == "maximize" else a < b

    def run(self) -> PBTResult:
        rng = random.Random(self.seed)
        settings = {"population": self.population, "ready": self.ready, "rounds": self.rounds,
                    "quantile": self.quantile, "perturb": list(self.perturb),
                    "resample_p": self.resample_p, "workers": self.workers}
        s = open_search(self.name, strategy="pbt", direction=self.direction,
                        space={k: list(v) for k, v in self.space.items()}, seed=self.seed,
                        store=self.store, pbt=settings, **self.attrs)
        members = []
        for i in range(self.population):
            params = {k: _sample(spec, rng) for k, spec in self.space.items()}
            members.append(Member(s.trial(params), params, self.adapter.create(params, self.seed + i)))
        pool = None
        if self.workers:
            # Not fork: the parent has threads (hptrack's writer, BLAS, DuckDB), and
            # a forked child of a threaded process can crash (seen: a segfault in gc).
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                          initargs=(self.adapter,))
        else:
            _init_worker(self.adapter)
        forks = 0
        try:
            for r in range(self.rounds):
                step = (r + 1) * self.ready
                self._train_all(members, pool)
                for m in members:
                    m.trial.report(step - 1, m.score, resource=float(step), worker_pid=m.pid,
                                   **m.params)
                if r < self.rounds - 1:
                    forks += self._exploit_explore(s, members, step - 1, rng)
        finally:
            if pool is not None:
                pool.shutdown()
        for m in members:
            m.trial.complete(m.score)
        s.finish("ok", forks=forks)
        # ties (common: children score what their parent scored) go to the earliest trial,
        # as schedule() picks them
        sign = -1.0 if self.direction == "maximize" else 1.0
        best = min(members, key=lambda m: (sign * m.score, m.trial.number))
        return PBTResult(s.search_id, best.trial.trial_id, best.score, best.params, best.model,
                         forks, self.rounds * self.ready)

    def _train_all(self, members, pool):
        if pool is None:
            results = [_train(m.model, m.params, self.ready) for m in members]
        else:
            futures = [pool.submit(_train, m.model, m.params, self.ready) for m in members]
            results = [f.result() for f in futures]
        for m, (model, score, pid) in zip(members, results):
            m.model, m.score, m.pid = model, score, pid

    def _exploit_explore(self, s, members, step, rng) -> int:
        worst_first = sorted(range(len(members)), key=lambda i: members[i].score,
                             reverse=self.direction == "minimize")
        n = max(1, round(len(members) * self.quantile))
        bottom, top = worst_first[:n], worst_first[-n:]
        forks = 0
        for i in bottom:
            old, parent = members[i], members[rng.choice(top)]
            if not self._better(parent.score, old.score):
                continue  # ties (or NaN): nothing better to copy
            params, how = _explore(parent.params, self.space, rng, self.perturb, self.resample_p)
            model = self.adapter.set_state(self.adapter.create(params, self.seed),
                                           self.adapter.get_state(parent.model))
            copied = self.adapter.evaluate(model)
            old.trial.prune(step)
            child = s.fork(parent.trial, params, step=step, parent_score=parent.score,
                           replaced_trial_id=old.trial.trial_id, replaced_score=old.score,
                           params_before=parent.params, explore=how, copied_score=copied)
            members[i] = Member(child, params, model, copied)
            forks += 1
        return forks


def __getattr__(name: str) -> Any:
    # lineage and schedule are questions about the history: they moved to hptrack.analysis
    if name in ("lineage", "schedule"):
        import importlib
        import warnings

        warnings.warn(f"hptrack.pbt.{name} moved to hptrack.analysis.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("hptrack.analysis.population"), name)
    raise AttributeError(f"module 'hptrack.pbt' has no attribute {name!r}")


__all__ = ["PBT", "PBTResult", "SklearnPartialFit"]
