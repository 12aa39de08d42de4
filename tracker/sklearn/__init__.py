"""Record scikit-learn searches: ``hptrack.sklearn.track(GridSearchCV(...)).fit(X, y)``.

Import it explicitly (it imports scikit-learn)::

    import hptrack.sklearn
    from sklearn.model_selection import GridSearchCV

    gs = hptrack.sklearn.track(GridSearchCV(clf, grid, scoring="f1", cv=5), name="rf-grid")
    gs.fit(X_train, y_train)          # one trial per candidate, fold scores written live
    gs.best_params_, gs.cv_results_   # everything of the original search is still there
    hptrack.sklearn.log_test_score(gs, X_test, y_test)

Works for GridSearchCV, RandomizedSearchCV, HalvingGridSearchCV,
HalvingRandomSearchCV, scikit-optimize's BayesSearchCV and any other
BaseSearchCV subclass. What is recorded:

- ``search_started``: strategy, space (scipy.stats distributions as name and
  arguments, skopt dimensions as type and bounds), cv, scoring, refit, n_jobs,
  estimator class and fixed params, dataset fingerprint, seed.
- per candidate, one trial with its params. Per fold, ``trial_scored`` with
  ``split="fold"`` (test) and ``split="fold_train"`` (when
  ``return_train_score``), ``fold=k``, ``metric=<scorer name>`` and the fit and
  score times in the payload; the mean of each metric as ``split="validation"``.
  The trial's value is the mean test score of the refit metric, exactly
  ``cv_results_["mean_test_<refit>"]``. A candidate with a failed fit is a
  failed trial with the error. Each fold's payload also holds its ``n_train``
  and ``n_test`` (a halving rung's subsampled sizes), which
  ``hptrack.analysis.diagnose`` uses for the corrected t-test.
- a trial's time is its own folds' time: it starts when its first fold starts
  and ends when its last fold ends (each measured in the process that ran the
  fold), so ``duration_s`` is not the time the candidate queued behind the
  others; one by one, it is the sum of its folds' fit and score times plus the
  recording. A trial shows in the ``trials`` view once sklearn returns its
  batch; its fold scores are written live before that.
- halving: each iteration a rung, ``trial_reported`` with ``step=iter`` and
  ``resource=n_resources``; candidates not promoted end pruned at their last
  rung, the finalists complete with their last rung's score.

Live fold scores need three private pieces of scikit-learn (``_fit_and_score``,
``BaseSearchCV._run_search`` and ``_format_results``), checked before every fit
by ``hptrack.sklearn._compat`` (names, signatures, tested versions). If one
moved, the fit runs untouched and the search is recorded from ``cv_results_``
afterwards, the same events save the per-fold times, with one
:class:`LiveRecordingOff` warning; the folds are then timed through scikit-learn's
public ``sklearn.callback`` API (1.9+). If recording raises mid-fit, the fit goes
on and one :class:`RecordingFailed` warning says so. ``sklearn.base.clone`` of a
tracked search is tracked too (same name and store).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hptrack import api
from hptrack._described import jsonable, strategy_of
from hptrack.sklearn import _compat
from hptrack.sklearn._describe import objective_name, search_attrs, seed_of, space_of
from hptrack.sklearn._skip import SkipDoneOff, reused_rows, run_for
from hptrack.sklearn._warnings import LiveRecordingOff, RecordingFailed, TrackingWarning

__all__ = ["TrackedSearchCV", "NestedCVResult", "track", "log_test_score", "nested_cv",
           "TrackingWarning", "LiveRecordingOff", "RecordingFailed", "SkipDoneOff"]


def track(search_cv: Any, name: str | None = None, store: Any = None, *, skip_done: bool = False,
          **attrs: Any) -> TrackedSearchCV:
    """Wrap a scikit-learn search so that ``fit`` records it in the hptrack store.

    ``name`` defaults to ``<SearchClass>-<Estimator>-<UTC time>-<random>``, a new
    search per fit. Given a name, every ``fit`` appends to the search of that
    name. Extra keyword arguments are stored with the search; ``strategy=`` replaces
    the one read from the class (grid, random, halving, bayes), e.g. for a search
    run in stages of your own under one name. ``skip_done=True`` does not fit the
    folds already recorded (any search of the store) on the same data, cv, scoring
    and estimator params: their recorded scores are used (see
    :mod:`hptrack.sklearn._skip`).
    """
    if isinstance(search_cv, TrackedSearchCV):
        search_cv = search_cv.search_cv
    if not _compat.is_search(search_cv):
        raise TypeError("hptrack.sklearn.track() needs a scikit-learn search (a BaseSearchCV such as "
                        f"GridSearchCV or RandomizedSearchCV), got {type(search_cv).__name__}")
    return TrackedSearchCV(search_cv, name=name, store=store, attrs=attrs, skip_done=skip_done)


class TrackedSearchCV:
    """A search whose ``fit`` is recorded. Every other attribute is the original's.

    ``get_params``/``set_params`` are the search's own, so the wrapper goes wherever
    the search goes (``cross_val_score``, a ``Pipeline``, an outer search).
    ``sklearn.base.clone`` gives a tracked clone of the search with the same
    ``name``, ``store`` and attributes: with a name, each clone's ``fit`` appends
    to that one search (as fitting the original again would), without one each
    fit is a search of its own.
    """

    def __init__(self, search_cv: Any, name: str | None = None, store: Any = None,
                 attrs: dict | None = None, skip_done: bool = False):
        self.__dict__.update(search_cv=search_cv, name=name, store=store, attrs=dict(attrs or {}),
                             search_id=None, search_name=None, best_trial_id=None, _run=None,
                             _row_ids=[], skip_done=skip_done, reused_={})

    def __getattr__(self, attr: str) -> Any:
        # only called for what this wrapper lacks: best_params_, predict, cv_results_, ...
        inner = self.__dict__.get("search_cv")
        if inner is None:  # while unpickling or copying, before __dict__ is filled
            raise AttributeError(attr)
        return getattr(inner, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in self.__dict__:
            self.__dict__[attr] = value
        else:
            setattr(self.search_cv, attr, value)

    def __getstate__(self) -> dict[str, Any]:
        # a fitted search pickles (joblib.dump, n_jobs workers) without its open recording
        return {**self.__dict__, "_run": None}

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(self.__dict__) | set(dir(self.search_cv)))

    def __repr__(self) -> str:
        return f"hptrack.sklearn.track({self.search_cv!r}, name={self.search_name or self.name!r})"

    def __sklearn_clone__(self) -> TrackedSearchCV:
        """What ``sklearn.base.clone`` returns: an unfitted tracked clone of the search."""
        from sklearn.base import clone

        return TrackedSearchCV(clone(self.search_cv), name=self.name, store=self.store, attrs=self.attrs,
                               skip_done=self.skip_done)

    def get_params(self, deep: bool = True) -> dict:
        """The search's params (``estimator``, ``param_grid``, ``cv``, ...)."""
        return self.search_cv.get_params(deep=deep)

    def set_params(self, **params: Any) -> TrackedSearchCV:
        """Set the search's params; returns this tracked search."""
        self.search_cv.set_params(**params)
        return self

    def fit(self, X: Any, y: Any = None, **params: Any) -> TrackedSearchCV:
        """Fit the search, recording it live; returns self.

        Opening the search raises on a bad name, store or settings (nothing has
        run yet). Once the fit runs, nothing hptrack does can break it: if the live
        per-fold recording cannot apply, it is recorded from ``cv_results_`` after
        fit (:class:`LiveRecordingOff`); if recording raises, the fit goes on
        (:class:`RecordingFailed`); either warns once. With ``skip_done``, ``reused_``
        maps each ``cv_results_`` row none of whose folds was fitted now to the
        recorded trial they came from (``{"search_id", "trial_id"}``)."""
        cv = self.search_cv
        name = self.name or _default_name(cv)
        strategy = strategy_of(cv)
        described = search_attrs(cv, X, y)
        attrs = dict(self.attrs)
        hp = api.search(name, strategy=attrs.pop("strategy", None) or strategy, direction="maximize",
                        metric=objective_name(cv), space=space_of(cv), seed=seed_of(cv), store=self.store,
                        durability="batch", **{**described, **attrs})
        self.search_id, self.search_name, self.best_trial_id = hp.search_id, name, None
        single = cv.scoring if isinstance(cv.scoring, str) else "score"
        run = self._run = run_for(cv, hp, single, strategy, described, params, self.skip_done)
        remove = run.start()
        try:
            cv.fit(X, y, **params)
        except BaseException as exc:
            remove()
            run.abort(exc)
            with run.guard("finishing the search"):
                hp.finish("error", error=f"{type(exc).__name__}: {exc}")
            raise
        remove()
        run.finish(cv.cv_results_)
        self._row_ids = [run.trials[i].trial_id for i in run.row_trial]
        self.reused_ = reused_rows(run)
        with run.guard("finishing the search"):
            best = getattr(cv, "best_index_", None)
            if best is not None and 0 <= int(best) < len(run.row_trial):
                self.best_trial_id = run.trials[run.row_trial[int(best)]].trial_id
            hp.finish("ok", n_candidates=len(run.trials), n_rows=len(run.row_trial),
                      best_index=None if best is None else int(best), best_trial_id=self.best_trial_id,
                      best_params=jsonable(getattr(cv, "best_params_", None)),
                      best_score=jsonable(getattr(cv, "best_score_", None)),
                      refit_time=jsonable(getattr(cv, "refit_time_", None)),
                      n_candidates_per_iter=jsonable(getattr(cv, "n_candidates_", None)),
                      n_resources_per_iter=jsonable(getattr(cv, "n_resources_", None)),
                      live=run.live, reused_folds=getattr(run, "n_reused_folds", 0))
        return self

    def trial_id_of(self, index: int) -> str:
        """The trial id of ``cv_results_`` row ``index`` (for halving, the candidate's trial)."""
        return self._row_ids[index]


def _default_name(cv) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{type(cv).__name__}-{type(cv.estimator).__name__}-{stamp}-{os.urandom(2).hex()}"


def _scorer_for(search, scoring) -> tuple:
    """(name, scorer) for a test score: the given scoring, or the search's refit scorer."""
    from sklearn.metrics import check_scoring

    inner = search.search_cv if isinstance(search, TrackedSearchCV) else search
    if scoring is not None:
        name = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "score")
        return name, check_scoring(inner.best_estimator_, scoring=scoring)
    scorer = inner.scorer_
    name = objective_name(inner)
    if isinstance(scorer, dict):
        scorer = scorer[inner.refit if isinstance(inner.refit, str) else name]
    return name, scorer


def log_test_score(search: TrackedSearchCV, X_test: Any, y_test: Any, scoring: Any = None,
                   store: Any = None) -> float:
    """Score the refit best model on held-out data and record it on the best trial
    (``trial_scored`` with ``split="test"``). Returns the score."""
    if not isinstance(search, TrackedSearchCV) or search.search_id is None:
        raise TypeError("log_test_score() needs a search returned by hptrack.sklearn.track() "
                        "that has been fitted")
    if search.best_trial_id is None:
        raise ValueError("the search has no best trial (refit=False?); nothing to score")
    name, scorer = _scorer_for(search, scoring)
    value = float(scorer(search.best_estimator_, X_test, y_test))
    api.score_trial(search.search_id, search.best_trial_id, value, split="test", metric=name,
                    store=store if store is not None else search.store, n_samples=int(len(y_test)))
    return value


@dataclass
class NestedCVResult:
    """What :func:`nested_cv` returns: one outer score per outer fold."""
    outer_scores: np.ndarray
    best_params: list
    search_id: str
    inner_search_ids: list = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.outer_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.outer_scores))


def nested_cv(search_cv: Any, X: Any, y: Any, outer_cv: Any = 5, name: str | None = None,
              store: Any = None) -> NestedCVResult:
    """Nested cross-validation: a tracked inner search per outer fold.

    The outer run is a search of its own (``strategy="custom"``, ``kind="nested_cv"``)
    with one trial per outer fold; its value is the refit inner model's score on
    the outer test fold, also recorded as ``split="test"`` on the inner search's
    best trial. Each inner search is named ``<name>/outer-<k>`` and its
    ``search_started`` holds ``parent_search_id``, ``parent_trial_id`` and ``outer_fold``.
    """
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import check_cv
    from sklearn.utils import _safe_indexing

    if isinstance(search_cv, TrackedSearchCV):
        search_cv = search_cv.search_cv
    outer = check_cv(outer_cv, y, classifier=is_classifier(search_cv.estimator))
    name = name or "nested-" + _default_name(search_cv)
    hp = api.search(name, strategy="custom", direction="maximize", metric=objective_name(search_cv),
                    space=space_of(search_cv), seed=seed_of(search_cv), store=store,
                    kind="nested_cv", outer_cv=jsonable(repr(outer)),
                    inner_search_class=type(search_cv).__name__,
                    **{k: v for k, v in search_attrs(search_cv, X, y).items()
                       if k in ("estimator", "cv", "scoring", "dataset_fingerprint")})
    scores, best_params, inner_ids = [], [], []
    with hp:
        for k, (train, test) in enumerate(outer.split(X, y)):
            with hp.trial({"outer_fold": k}) as t:
                inner = track(clone(search_cv), name=f"{name}/outer-{k}", store=store,
                              parent_search_id=hp.search_id, parent_trial_id=t.trial_id,
                              outer_fold=k)
                inner.fit(_safe_indexing(X, train), _safe_indexing(y, train))
                score = log_test_score(inner, _safe_indexing(X, test), _safe_indexing(y, test))
                t.score(score, split="test", fold=k, n_train=int(len(train)), n_test=int(len(test)))
                t.complete(score, inner_search_id=inner.search_id,
                           best_params=jsonable(inner.best_params_))
                scores.append(score)
                best_params.append(inner.best_params_)
                inner_ids.append(inner.search_id)
    return NestedCVResult(np.asarray(scores), best_params, hp.search_id, inner_ids)
