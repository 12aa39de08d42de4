"""scikit-learn objects as the JSON hptrack records: an estimator's class name and fixed
params, hyperparameter values and distributions, a search's strategy.

The integration writes these into ``search_started`` (:mod:`hptrack.sklearn`); the
analysis compares a planned search with that history (:mod:`hptrack.analysis.planned`),
so both take them from here: one rule, the same JSON on both sides. Nothing here imports
scikit-learn, scipy or skopt.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

import numpy as np

from hptrack import schema

__all__ = ["estimator_params", "jsonable", "qualname", "recorded_value", "strategy_of"]

# skopt dimensions and scipy distributions are recognised by their attributes,
# so neither library has to be importable here.
_SKOPT_DIMENSIONS = ("Real", "Integer", "Categorical", "Space")


def strategy_of(search_cv: Any) -> str:
    """grid / random / halving / bayes, else custom, from the class (and its bases)."""
    names = [c.__name__ for c in type(search_cv).__mro__]
    modules = [c.__module__ or "" for c in type(search_cv).__mro__]
    if any("Halving" in n for n in names):
        return "halving"
    if any(n == "BayesSearchCV" for n in names) or any(m.startswith("skopt") for m in modules):
        return "bayes"
    if "GridSearchCV" in names:
        return "grid"
    if "RandomizedSearchCV" in names:
        return "random"
    return "custom"


def jsonable(v: Any) -> Any:
    """A JSON value for a hyperparameter value, a distribution, a dimension or an object."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        return f if np.isfinite(f) else repr(f)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, range)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    dist = getattr(v, "dist", None)
    if dist is not None and hasattr(v, "args") and hasattr(v, "kwds"):
        # a frozen scipy.stats distribution: name and arguments rebuild it
        return {"distribution": getattr(dist, "name", type(dist).__name__),
                "args": jsonable(list(v.args)), "kwds": jsonable(dict(v.kwds))}
    if type(v).__name__ in _SKOPT_DIMENSIONS and (type(v).__module__ or "").startswith("skopt"):
        return _skopt_dimension(v)
    if hasattr(v, "get_params") and hasattr(v, "fit"):
        return {"estimator": qualname(type(v)), "params": estimator_params(v)}
    if callable(v):
        return getattr(v, "__qualname__", None) or repr(v)
    return repr(v)


def _skopt_dimension(d) -> dict:
    out = {"type": type(d).__name__, "name": getattr(d, "name", None)}
    if hasattr(d, "categories"):
        out["categories"] = jsonable(list(d.categories))
    else:
        out.update(low=jsonable(d.low), high=jsonable(d.high), prior=getattr(d, "prior", None))
        if getattr(d, "base", None) is not None:
            out["base"] = jsonable(d.base)
    return out


def estimator_params(estimator: Any, exclude: Collection[str] = ()) -> dict:
    """The estimator's fixed params (deep), leaving out nested estimators themselves."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:
        return {}
    out = {}
    for k, v in params.items():
        if k in exclude or (hasattr(v, "get_params") and hasattr(v, "fit")):
            continue
        if k == "steps" or k.endswith("transformers"):
            continue  # nested estimators, already listed by their own params
        out[k] = jsonable(v)
    return out


def qualname(cls: type) -> str:
    """``module.QualName`` of a class, as the history names estimators."""
    return f"{cls.__module__}.{cls.__qualname__}"


def recorded_value(v: Any) -> Any:
    """A searched param's value as a trial records it: scalars the schema can hold as they are,
    anything else as its repr."""
    if v is not None and hasattr(v, "item"):
        v = v.item()
    if v is None or isinstance(v, (bool, int, str)):
        return v
    try:
        schema.encode_param("p", v)
        return v
    except TypeError:
        return repr(v)
