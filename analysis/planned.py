"""What a planned scikit-learn search will fit, worked out without fitting it.

A :class:`PlannedSearch` lists every candidate (its full params: the
estimator's fixed params overlaid with the searched ones), the training rows
of each CV fold, whether the best candidate is refit, and ``n_jobs``. It is
built from a search object and its data (:func:`from_search`), from a space
given as JSON-like values (:func:`from_space`, what ``hptrack plan`` takes), or
from a recorded search's ``search_started`` payload (:func:`from_payload`).

The candidates are scikit-learn's own: ``ParameterGrid`` for a grid,
``ParameterSampler`` with the search's ``n_iter`` and ``random_state`` for a
random search (the very candidates ``fit`` will draw when the seed is an int),
so the count of fits is exact. Successive halving is not planned: its rungs
depend on the data's classes and the cv, and are refused with a message.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hptrack._described import estimator_params, qualname, recorded_value, strategy_of

__all__ = ["PlannedSearch", "from_payload", "from_search", "from_space", "fold_train_sizes"]


@dataclass(frozen=True)
class PlannedSearch:
    """A search before it runs: its estimator, candidates, folds and workers."""

    estimator: str                      # module.QualName of the estimator class, as hptrack.sklearn records it
    candidates: list[dict]              # one per candidate: the estimator's params with the searched ones set
    fold_n_train: list[int]             # training rows of each CV fold
    n_samples: int                      # rows of X (the refit's training rows)
    n_features: int
    refit: bool = True
    n_jobs: int | None = None
    strategy: str = "grid"
    searched: list[str] = field(default_factory=list)   # the names the space varies

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    @property
    def n_folds(self) -> int:
        return len(self.fold_n_train)

    @property
    def n_fits(self) -> int:
        """Every fit the search runs: candidates x folds, plus the refit."""
        return self.n_candidates * self.n_folds + int(self.refit)


def candidates_of(space: Any, n_iter: int | None = None, random_state: Any = None) -> list[dict]:
    """The candidates scikit-learn evaluates: the grid's, or ``n_iter`` draws of the distributions."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if n_iter is None:
        return list(ParameterGrid(space))
    # a RandomState instance is copied: planning must not move the search's own generator
    return list(ParameterSampler(space, n_iter, random_state=copy.deepcopy(random_state)))


def from_search(search_cv: Any, X: Any, y: Any = None, groups: Any = None,
                n_jobs: int | None = None) -> PlannedSearch:
    """The plan of a GridSearchCV or RandomizedSearchCV (or a tracked one) on ``X, y``: the
    candidates it will evaluate and its folds' sizes from ``cv.split`` (nothing is fitted).
    ``n_jobs`` overrides the search's."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import check_cv

    search_cv = getattr(search_cv, "search_cv", search_cv)  # hptrack.sklearn.track(...) wraps the search
    strategy = strategy_of(search_cv)
    if strategy == "grid":
        space, n_iter = search_cv.param_grid, None
    elif strategy == "random":
        space, n_iter = search_cv.param_distributions, search_cv.n_iter
    else:
        raise ValueError(_unplanned(strategy if strategy == "halving" else type(search_cv).__name__))
    cv = check_cv(search_cv.cv, y, classifier=is_classifier(search_cv.estimator))
    sizes = [len(train) for train, _ in cv.split(X, y, groups)]
    shape = getattr(X, "shape", None) or (len(X), len(X[0]))
    fixed = estimator_params(search_cv.estimator)
    cands = [{**fixed, **{k: recorded_value(v) for k, v in c.items()}}
             for c in candidates_of(space, n_iter, getattr(search_cv, "random_state", None))]
    return PlannedSearch(qualname(type(search_cv.estimator)), cands, sizes, int(shape[0]), int(shape[1]),
                         refit=bool(search_cv.refit), n_jobs=search_cv.n_jobs if n_jobs is None else n_jobs,
                         strategy=strategy, searched=_names(space))


def _unplanned(strategy: str) -> str:
    if strategy == "halving":
        return ("successive halving is not planned (its rungs depend on the classes, the cv and "
                "min_resources); plan the GridSearchCV / RandomizedSearchCV of the same space for an "
                "upper bound")
    return f"{strategy} is not planned: only GridSearchCV and RandomizedSearchCV are"


def _names(space: Any) -> list[str]:
    items = space if isinstance(space, (list, tuple)) else [space]
    return sorted({k for item in items if isinstance(item, Mapping) for k in item})


def fold_train_sizes(n_samples: int, n_splits: int) -> list[int]:
    """Training rows of each fold of k-fold CV on ``n_samples`` rows (KFold's test sizes; stratified
    folds differ by at most a row or two)."""
    if n_splits < 2 or n_samples < n_splits:
        raise ValueError(f"cv={n_splits} on {n_samples} rows: give 2 <= cv <= the number of rows")
    return [n_samples - (n_samples // n_splits + (1 if k < n_samples % n_splits else 0))
            for k in range(n_splits)]


def estimator_class(name: str) -> type:
    """The class at an import path such as ``sklearn.svm.SVC``."""
    module, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr) if module else None
    except (ImportError, AttributeError):
        cls = None
    if not isinstance(cls, type) or not hasattr(cls, "get_params"):
        raise ValueError(f"unknown estimator {name!r}: give the import path of a scikit-learn estimator "
                         "class, e.g. sklearn.svm.SVC or sklearn.ensemble.RandomForestClassifier")
    return cls


def distributions(space: Any) -> Any:
    """A space with ``{"distribution": name, "args": [...], "kwds": {...}}`` values (as
    hptrack.sklearn records scipy.stats distributions) turned back into frozen distributions."""
    import scipy.stats

    if isinstance(space, list):
        return [distributions(s) for s in space]
    if isinstance(space, dict) and "distribution" in space and set(space) <= {"distribution", "args", "kwds"}:
        dist = getattr(scipy.stats, str(space["distribution"]), None)
        if dist is None:
            raise ValueError(f"unknown distribution {space['distribution']!r}: give a scipy.stats name, "
                             "e.g. {\"distribution\": \"loguniform\", \"args\": [0.01, 100]}")
        return dist(*space.get("args", []), **space.get("kwds", {}))
    if isinstance(space, dict):
        return {k: distributions(v) for k, v in space.items()}
    return space


def from_space(estimator: str, space: Any, n_samples: int, n_features: int, cv: int = 5,
               n_iter: int | None = None, n_jobs: int | None = None, refit: bool = True,
               random_state: int | None = None, params: Mapping[str, Any] | None = None) -> PlannedSearch:
    """The plan of a search of ``estimator`` (an import path) over ``space`` on data of
    ``n_samples`` x ``n_features`` with ``cv``-fold CV: a grid (a dict or a list of dicts of
    lists), or with ``n_iter``, a random search whose values may be lists or
    ``{"distribution": "loguniform", "args": [a, b]}``. ``params`` fixes other params of
    the estimator (its defaults otherwise)."""
    cls = estimator_class(estimator)
    if not isinstance(space, (dict, list)) or not space:
        raise ValueError("the space must be a JSON object of param -> list of values (or a list of such "
                         'objects), e.g. {"C": [0.1, 1, 10]}')
    space = distributions(space)
    try:
        cands = candidates_of(space, n_iter, random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a space scikit-learn can search: {exc}") from None
    fixed = estimator_params(_instance(estimator, params))
    unknown = sorted(set(_names(space)) - set(fixed)) if fixed else []
    if unknown:
        raise ValueError(f"{estimator} has no param(s) {', '.join(unknown)}: its params are "
                         f"{', '.join(sorted(fixed))}")
    return PlannedSearch(qualname(cls), [{**fixed, **{k: recorded_value(v) for k, v in c.items()}} for c in cands],
                         fold_train_sizes(int(n_samples), int(cv)), int(n_samples), int(n_features),
                         refit=bool(refit), n_jobs=n_jobs, strategy="grid" if n_iter is None else "random",
                         searched=_names(space))


def from_payload(payload: Mapping[str, Any], **overrides: Any) -> PlannedSearch:
    """The plan of running a recorded search again (its ``search_started`` payload), with any of
    :func:`from_space`'s arguments overridden (a bigger ``space``, ``n_samples``, ``n_jobs`` ...)."""
    strategy = payload.get("strategy")
    if strategy not in ("grid", "random") and "space" not in overrides:
        raise ValueError(_unplanned(str(strategy)))
    shape = ((payload.get("dataset_fingerprint") or {}).get("X") or {}).get("shape") or []
    cv = payload.get("cv") or {}
    fixed = {k: v for k, v in (payload.get("estimator_params") or {}).items()
             if isinstance(v, (bool, int, float, str)) or v is None}
    args: dict[str, Any] = {
        "estimator": payload.get("estimator"), "space": payload.get("space"),
        "n_samples": shape[0] if len(shape) == 2 else None, "n_features": shape[1] if len(shape) == 2 else None,
        "cv": cv.get("n_splits", 5) if isinstance(cv, dict) else 5,
        "n_iter": payload.get("n_iter") if strategy == "random" else None,
        "n_jobs": payload.get("n_jobs"), "refit": bool(payload.get("refit", True)),
        "random_state": payload.get("search_random_state") if isinstance(
            payload.get("search_random_state"), int) else None}
    args.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in ("estimator", "space", "n_samples", "n_features") if args.get(k) is None]
    if missing:
        raise ValueError(f"the recorded search has no {', '.join(missing)}: give them "
                         f"({', '.join('--' + k.replace('_', '-') for k in missing)})")
    return from_space(params=_settable(args["estimator"], fixed), **args)


def _settable(estimator: str, fixed: Mapping[str, Any]) -> dict:
    """The recorded fixed params the class takes as constructor arguments (no nested ``a__b``)."""
    names = set(_instance(estimator).get_params(deep=False))
    return {k: v for k, v in fixed.items() if k in names and v != "deprecated"}


def _instance(estimator: str, params: Mapping[str, Any] | None = None) -> Any:
    """``estimator`` (an import path) built with ``params``; a clear error for a class that
    needs arguments no record or command line gives (a Pipeline's steps, a meta-estimator's
    estimator)."""
    cls = estimator_class(estimator)
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise ValueError(f"{estimator} cannot be built from its name and params ({exc}); for a Pipeline "
                         "or a meta-estimator, plan the search object itself: "
                         "hptrack.analysis.plan(GridSearchCV(...), X, y)") from None
