"""What a scikit-learn search is, as JSON: strategy, space, cv, scoring, estimator, data.

These are the ``search_started`` attributes of :mod:`hptrack.sklearn`. Every
function returns plain JSON values, so the payload reads back the same in SQL
(``payload ->> 'cv'``) as in Python.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any

import numpy as np

from hptrack._described import estimator_params, jsonable, qualname
from hptrack.sklearn._leakage import leakage_facts


def space_of(search_cv: Any) -> Any:
    """The grid, the distributions or the skopt search space, serialised."""
    for attr in ("param_grid", "param_distributions", "search_spaces"):
        space = getattr(search_cv, attr, None)
        if space is not None:
            return jsonable(space)
    return None


def searched_names(space: Any) -> set:
    """Param names that the space varies (a dict, or a list of dicts / (dict, n) pairs)."""
    names = set()
    items = space if isinstance(space, (list, tuple)) else [space]
    for item in items:
        if isinstance(item, tuple) and item and isinstance(item[0], dict):
            item = item[0]
        if isinstance(item, dict):
            names.update(item)
    return names


def cv_of(cv: Any) -> dict:
    """The cv argument: an int, None (sklearn's default 5 folds), or a splitter and its settings."""
    if cv is None:
        return {"type": "default", "n_splits": 5}
    if isinstance(cv, numbers.Integral):
        return {"type": "int", "n_splits": int(cv)}
    info = {"type": type(cv).__name__}
    for k, v in sorted(vars(cv).items()) if hasattr(cv, "__dict__") else []:
        if not k.startswith("_"):
            info[k] = jsonable(v)
    if "n_splits" not in info and hasattr(cv, "get_n_splits"):
        try:
            info["n_splits"] = int(cv.get_n_splits())
        except Exception:
            pass
    return info


def scoring_of(scoring: Any) -> Any:
    if scoring is None:
        return None
    if isinstance(scoring, str):
        return scoring
    if isinstance(scoring, dict):
        return {str(k): scoring_of(v) for k, v in scoring.items()}
    if isinstance(scoring, (list, tuple, set)):
        return [scoring_of(s) for s in scoring]
    return jsonable(scoring)


def metric_names(search_cv: Any) -> list[str] | None:
    """Names of the metrics before fit: None for a single metric (or a callable scorer)."""
    scoring = search_cv.scoring
    if isinstance(scoring, dict):
        return list(scoring)
    if isinstance(scoring, (list, tuple, set)):
        return list(scoring)
    return None


def objective_name(search_cv: Any) -> str:
    """The name of the trial's value: the refit metric, the scoring string, or 'score'."""
    refit = search_cv.refit
    if isinstance(refit, str):
        return refit
    names = metric_names(search_cv)
    if names:
        return names[0]
    return search_cv.scoring if isinstance(search_cv.scoring, str) else "score"


def seed_of(search_cv: Any) -> int | None:
    """The search's random_state if it is an int, else the estimator's, else None."""
    for obj in (search_cv, getattr(search_cv, "estimator", None)):
        rs = getattr(obj, "random_state", None)
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            return int(rs)
    return None


def fingerprint(X: Any, y: Any = None) -> dict:
    """Shape, dtypes and a SHA-256 of X and y: the same data gives the same fingerprint."""
    out = {"X": _array_fingerprint(X)}
    if y is not None:
        out["y"] = _array_fingerprint(y)
    return out


def _array_fingerprint(a) -> dict:
    h = hashlib.sha256()
    info = {"type": type(a).__name__}
    if hasattr(a, "tocsr"):  # scipy sparse
        m = a.tocsr()
        for part in (m.data, m.indices, m.indptr):
            h.update(np.ascontiguousarray(part).tobytes())
        info.update(shape=list(m.shape), dtypes=str(m.dtype), nnz=int(m.nnz))
    else:
        dtypes = getattr(a, "dtypes", None)
        if dtypes is not None and hasattr(dtypes, "items"):  # a DataFrame
            info["dtypes"] = {str(k): str(v) for k, v in dtypes.items()}
            info["columns"] = [str(c) for c in a.columns]
        elif getattr(a, "dtype", None) is not None:
            info["dtypes"] = str(a.dtype)
        arr = np.asarray(a)
        info["shape"] = list(arr.shape)
        if arr.dtype == object:
            h.update(repr(arr.tolist()).encode())
        else:
            h.update(str(arr.dtype).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    info["sha256"] = h.hexdigest()
    return info


def search_attrs(search_cv: Any, X: Any, y: Any) -> dict:
    """Everything search_started records beyond name, strategy, metric, space and seed."""
    space = getattr(search_cv, "param_grid", None)
    if space is None:
        space = getattr(search_cv, "param_distributions", None)
    if space is None:
        space = getattr(search_cv, "search_spaces", None)
    est = search_cv.estimator
    refit = search_cv.refit
    attrs = {
        "search_class": qualname(type(search_cv)),
        "estimator": qualname(type(est)),
        "estimator_params": estimator_params(est, exclude=searched_names(space or {})),
        "cv": cv_of(search_cv.cv),
        "scoring": scoring_of(search_cv.scoring),
        "refit": refit if isinstance(refit, (bool, str)) else jsonable(refit),
        "n_jobs": search_cv.n_jobs,
        "error_score": jsonable(search_cv.error_score),
        "return_train_score": bool(getattr(search_cv, "return_train_score", False)),
        "dataset_fingerprint": fingerprint(X, y),
        "leakage": leakage_facts(X, y, est),
        "search_random_state": jsonable(getattr(search_cv, "random_state", None))
        if isinstance(getattr(search_cv, "random_state", None), (numbers.Integral, type(None))) else
        repr(search_cv.random_state),
    }
    for k in ("n_iter", "factor", "resource", "min_resources", "max_resources",
              "aggressive_elimination", "n_candidates", "n_points"):
        if hasattr(search_cv, k):
            attrs[k] = jsonable(getattr(search_cv, k))
    return attrs
