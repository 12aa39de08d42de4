"""Every private scikit-learn name the live recording relies on, checked before each fit.

The live per-fold recording (:mod:`hptrack.sklearn._record`) stands in for
three private pieces of ``BaseSearchCV.fit``. Before a fit, :func:`live_unavailable`
checks that each is there with the signature the recording calls it with, and
that scikit-learn's version is in the tested range. If anything differs, the
fit runs untouched and the search is recorded from ``cv_results_`` afterwards
(``Run.replay`` in :mod:`hptrack.sklearn._record`): a scikit-learn release that moves a private
name costs live fold scores, never the user's ``fit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.model_selection._search import BaseSearchCV

# [first, last) scikit-learn minor versions the live path is written for; 1.3 is the
# minimum the package declares, 1.9.1 the version its tests run on
TESTED = ((1, 3), (1, 10))

SEARCH_MODULE = "sklearn.model_selection._search"
VALIDATION_MODULE = "sklearn.model_selection._validation"
# the name BaseSearchCV.fit dispatches every (candidate, fold) to, swapped during a fit
FIT_AND_SCORE = "_fit_and_score"
# the keyword arguments of _fit_and_score the recorder reads
FIT_AND_SCORE_PARAMS = ("train", "test", "split_progress", "candidate_progress")
# the search methods overridden on the instance: the parameters they are called with
RUN_SEARCH_PARAMS = ("self", "evaluate_candidates")
FORMAT_RESULTS_PARAMS = ("self", "candidate_params", "n_splits", "out", "more_results")
# evaluate_candidates, the closure fit hands to _run_search
EVALUATE_PARAMS = ("candidate_params", "cv", "more_results")


def sklearn_version() -> tuple[int, int]:
    import sklearn

    major, minor = sklearn.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def search_base() -> type[BaseSearchCV] | None:
    """sklearn's BaseSearchCV, or None if it moved."""
    import importlib

    try:
        return getattr(importlib.import_module(SEARCH_MODULE), "BaseSearchCV", None)
    except ImportError:
        return None


def is_search(obj: object) -> bool:
    """A scikit-learn search: a BaseSearchCV, or (if that class moved) anything shaped like one."""
    base = search_base()
    if base is not None:
        return isinstance(obj, base)
    return all(hasattr(obj, a) for a in ("fit", "get_params", "estimator", "cv", "scoring", "refit"))


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _starts_with(fn, names) -> bool:
    try:
        return _params(fn)[:len(names)] == list(names)
    except (TypeError, ValueError):
        return False


def live_unavailable(search_cv: Any) -> str | None:
    """Why the live per-fold recording cannot run on ``search_cv`` here, or None if it can."""
    import importlib

    version = sklearn_version()
    low, high = TESTED
    if not low <= version < high:
        return (f"scikit-learn {'.'.join(map(str, version))} is outside the range hptrack's live "
                f"recording is tested on (>= {'.'.join(map(str, low))}, < {'.'.join(map(str, high))})")
    try:
        search_mod = importlib.import_module(SEARCH_MODULE)
        validation_mod = importlib.import_module(VALIDATION_MODULE)
    except ImportError as exc:
        return f"{exc.name or SEARCH_MODULE} cannot be imported"
    current = search_mod.__dict__.get(FIT_AND_SCORE)
    original = validation_mod.__dict__.get(FIT_AND_SCORE)
    if current is None or original is None:
        where = SEARCH_MODULE if current is None else VALIDATION_MODULE
        return f"{where}.{FIT_AND_SCORE} is missing"
    if current is not original:
        return (f"{SEARCH_MODULE}.{FIT_AND_SCORE} is not {VALIDATION_MODULE}.{FIT_AND_SCORE} "
                "(replaced by something else)")
    try:
        params = _params(original)
    except (TypeError, ValueError):
        params = []
    missing = [p for p in FIT_AND_SCORE_PARAMS if p not in params]
    if missing:
        return f"{VALIDATION_MODULE}.{FIT_AND_SCORE} has no parameter {', '.join(missing)}"
    cls = type(search_cv)
    for attr, names in (("_run_search", RUN_SEARCH_PARAMS), ("_format_results", FORMAT_RESULTS_PARAMS)):
        fn = getattr(cls, attr, None)
        if fn is None:
            return f"{cls.__name__}.{attr} is missing"
        if not _starts_with(fn, names):
            return f"{cls.__name__}.{attr} does not take ({', '.join(names)})"
    return None


def evaluate_unsupported(evaluate: Callable[..., Any]) -> str | None:
    """Why ``evaluate_candidates`` (known only during fit) cannot be wrapped, or None."""
    if _starts_with(evaluate, EVALUATE_PARAMS):
        return None
    return f"evaluate_candidates does not take ({', '.join(EVALUATE_PARAMS)})"


def takes_callback_ctx(run_search: Callable[..., Any]) -> bool:
    """Whether ``_run_search`` takes scikit-learn 1.9's ``callback_ctx``."""
    try:
        return "callback_ctx" in inspect.signature(run_search).parameters
    except (TypeError, ValueError):
        return False


def callbacks_of(estimator: Any) -> list:
    """The callbacks set with ``set_callbacks`` (sklearn >= 1.9), which has no public getter."""
    return list(getattr(estimator, "_skl_callbacks", None) or [])
