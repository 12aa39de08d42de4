"""hptrack.sklearn when its private patches cannot apply or recording raises: the fit never breaks.

Differential: the history recorded from cv_results_ after fit (the fallback) equals the
history the live path records for the same search, trial by trial and fold by fold.
"""

import json
import pickle
import warnings

import numpy as np
import pytest
import sklearn
import sklearn.model_selection._search as sk_search
import sklearn.model_selection._validation as sk_validation
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.tree import DecisionTreeClassifier
from test_sklearn import Flaky, check_flat, rung_check

import hptrack
import hptrack.sklearn as hs
from hptrack import api
from hptrack.sklearn import _compat

IRIS = load_iris(return_X_y=True)
CANCER = load_breast_cancer(return_X_y=True)
DIGITS = load_digits(return_X_y=True)


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def history(store, search_id):
    """Everything recorded of a search that does not depend on the clock or on random ids."""
    number = dict(q(store, "SELECT trial_id, trial_number FROM trials WHERE search_id = ?",
                                     [search_id]))
    trials = {n: (state, value, step, err is not None) for n, state, value, step, err in
              q(store, "SELECT trial_number, state, value, last_step, error FROM trials WHERE search_id = ?",
                [search_id])}
    params = {}
    for tid, name, value in q(store, "SELECT trial_id, name, value FROM params WHERE search_id = ?", [search_id]):
        params.setdefault(number[tid], {})[name] = value
    scores = sorted((number[tid], split, fold, metric, step, value) for tid, split, fold, metric, step, value in
                    q(store, "SELECT trial_id, split, fold, metric, step, value FROM events "
                             "WHERE type = 'trial_scored' AND search_id = ?", [search_id]))
    reports = sorted((number[tid], step, resource, value) for tid, step, resource, value in
                     q(store, "SELECT trial_id, step, resource, value FROM reports WHERE search_id = ?",
                       [search_id]))
    return {"trials": trials, "params": params, "scores": scores, "reports": reports}


def results_without_times(search):
    return {k: v for k, v in search.cv_results_.items() if "time" not in k}


def assert_same_results(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k == "params":
            assert a[k] == b[k]
        else:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def ours(record):
    return [w for w in record if issubclass(w.category, hs.TrackingWarning)]


def fit_both(make, X, y, tmp_path, break_live):
    """The same search fitted live and with the live path broken by ``break_live``:
    (live tracked, fallback tracked, untracked search, our warnings of the fallback fit)."""
    live = hs.track(make(), name="live", store=tmp_path / "live").fit(X, y)
    with pytest.MonkeyPatch.context() as mp:
        break_live(mp)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fallback = hs.track(make(), name="fallback", store=tmp_path / "fb").fit(X, y)
        plain = make().fit(X, y)
    return live, fallback, plain, ours(record)


# the ways a scikit-learn release can move what the live path relies on, each keeping sklearn working
def moved_function(mp):  # _fit_and_score moved to another module (_search keeps its own import)
    mp.delattr(sk_validation, "_fit_and_score")


def replaced_function(mp):  # _search's name is another function, of another signature
    original = sk_search._fit_and_score
    mp.setattr(sk_search, "_fit_and_score", lambda *args, **kwargs: original(*args, **kwargs))


def changed_method(mp):  # a search method the instance hooks override takes other parameters
    original = sk_search.BaseSearchCV._format_results
    mp.setattr(sk_search.BaseSearchCV, "_format_results", lambda self, *a, **k: original(self, *a, **k))


def newer_sklearn(mp):
    mp.setattr(sklearn, "__version__", "1.10.0")


CAUSES = {moved_function: "_validation._fit_and_score is missing",
          replaced_function: "replaced by something else",
          changed_method: "_format_results does not take",
          newer_sklearn: "scikit-learn 1.10 is outside the range"}


@pytest.mark.parametrize("break_live", list(CAUSES), ids=lambda f: f.__name__)
def test_each_cause_falls_back_with_one_warning_naming_it(tmp_path, break_live):
    X, y = IRIS

    def make():
        return GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3]}, cv=3)

    live, fb, plain, record = fit_both(make, X, y, tmp_path, break_live)
    assert [w.category for w in record] == [hs.LiveRecordingOff]
    message = str(record[0].message)
    assert CAUSES[break_live] in message and "live per-fold recording is off" in message
    assert_same_results(results_without_times(fb), results_without_times(plain))
    assert history(tmp_path / "fb", fb.search_id) == history(tmp_path / "live", live.search_id)
    check_flat(tmp_path / "fb", fb)
    assert _compat.callbacks_of(fb.search_cv) == []  # the fold clock is gone again
    assert fb.best_trial_id == fb.trial_id_of(fb.best_index_)


def test_fallback_dates_folds_with_the_public_callback_api(tmp_path):
    """sklearn.callback's task tree times each fold (begin before its fit, end after its
    scoring) and gives its training size; cv_results_ gives the scores."""
    X, y = IRIS
    with pytest.warns(hs.LiveRecordingOff):
        with pytest.MonkeyPatch.context() as mp:
            moved_function(mp)
            ts = hs.track(GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3, 4]},
                                       cv=3), name="timed", store=tmp_path).fit(X, y)
    rows = q(tmp_path, "SELECT trial_id, started_at, finished_at FROM trials ORDER BY trial_number")
    ends = [end for _, _, end in rows]
    assert ends == sorted(ends) and len(set(ends)) == 4  # one after another, not all at once
    for tid, start, end in rows:
        folds = q(tmp_path, "SELECT ts, payload FROM scores WHERE trial_id = ? AND split = 'fold' ORDER BY ts",
                  [tid])
        assert len(folds) == 3 and start < folds[0][0] and folds[-1][0] == end
        assert [json.loads(p)["n_train"] for _, p in folds] == [100, 100, 100]
    (live,), = q(tmp_path, "SELECT payload->>'live' FROM events WHERE type = 'search_finished'")
    assert live == "false" and ts.best_trial_id is not None


def multi_metric_random():
    return RandomizedSearchCV(DecisionTreeClassifier(random_state=0),
                              {"max_depth": [1, 2, 3, 5, None], "min_samples_leaf": [1, 5, 20]},
                              n_iter=6, random_state=0, cv=4, scoring=["accuracy", "f1"], refit="f1",
                              return_train_score=True)


def halving_digits():
    return HalvingGridSearchCV(DecisionTreeClassifier(random_state=0),
                               {"max_depth": [2, 4, 8, None], "min_samples_split": [2, 10, 40]},
                               cv=3, factor=2, random_state=0, min_resources=100)


def failing_grid():
    return GridSearchCV(Flaky(), {"bad": [False, True, False]}, cv=3, error_score=np.nan)


@pytest.mark.parametrize("make, data", [(multi_metric_random, CANCER), (halving_digits, DIGITS),
                                        (failing_grid, IRIS)], ids=["multi-metric", "halving", "failing"])
def test_fallback_history_equals_the_live_one(tmp_path, make, data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.FitFailedWarning)
        live, fb, plain, record = fit_both(make, X, y, tmp_path, moved_function)
    assert [w.category for w in record] == [hs.LiveRecordingOff]
    assert_same_results(results_without_times(fb), results_without_times(plain))
    got, want = history(tmp_path / "fb", fb.search_id), history(tmp_path / "live", live.search_id)
    assert got == want
    if make is not failing_grid:
        assert len(got["scores"]) >= len(got["trials"]) * (fb.n_splits_ + 1)  # folds and validation
    if make is halving_digits:
        rung_check(tmp_path / "fb", fb)
    if make is failing_grid:
        assert [s for s, *_ in got["trials"].values()] == ["complete", "failed", "complete"]
        assert len(got["scores"]) == 2 * (3 + 1)  # the failed candidate's folds are left out, as live


# --- recording that raises mid-fit ------------------------------------------------------

def raise_once_at(mp, name, call):
    """Make ``Trial.<name>`` raise OSError at its ``call``-th call."""
    original, calls = getattr(api.Trial, name), []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    mp.setattr(api.Trial, name, failing)


@pytest.mark.parametrize("make, data, call", [
    (lambda: GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3]}, cv=3), IRIS, 1),
    # the first score of the second rung: rung 0 and 1 ran live, the others untouched
    (halving_digits, DIGITS, 13)], ids=["grid", "halving-mid-rungs"])
def test_a_write_raising_mid_fit_does_not_break_it(tmp_path, make, data, call):
    X, y = data
    live, fb, plain, record = fit_both(make, X, y, tmp_path, lambda mp: raise_once_at(mp, "score", call))
    assert [w.category for w in record] == [hs.RecordingFailed]
    assert "No space left on device" in str(record[0].message)
    assert "live per-fold recording is off" in str(record[0].message)
    assert_same_results(results_without_times(fb), results_without_times(plain))
    # what the failed write left out is recorded from cv_results_ after fit, nothing twice
    assert history(tmp_path / "fb", fb.search_id) == history(tmp_path / "live", live.search_id)


def test_a_store_refusing_every_fold_does_not_break_the_fit(tmp_path, monkeypatch):
    X, y = IRIS

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(api, "score_fold", full)
    gs = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ts = hs.track(gs, name="full", store=tmp_path).fit(X, y)
    assert [w.category for w in ours(record)] == [hs.RecordingFailed]
    assert_same_results(results_without_times(ts),
                        results_without_times(clone(gs).fit(X, y)))
    assert q(tmp_path, "SELECT state, count(*) FROM trials GROUP BY ALL") == [("complete", 2)]
    assert q(tmp_path, "SELECT count(*) FROM scores WHERE split = 'fold'") == [(0,)]


# --- clone --------------------------------------------------------------------------------

def test_clone_of_a_tracked_search_keeps_tracking(tmp_path):
    X, y = IRIS
    ts = hs.track(GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=3),
                  name="cloned", store=tmp_path, dataset="iris")
    c = clone(ts)
    assert isinstance(c, hs.TrackedSearchCV) and c.search_cv is not ts.search_cv
    assert (c.name, c.store, c.attrs) == ("cloned", tmp_path, {"dataset": "iris"})
    assert c.get_params()["estimator__max_depth"] is None
    assert c.set_params(cv=4, estimator__min_samples_leaf=2) is c
    assert c.search_cv.cv == 4 and c.get_params()["estimator__min_samples_leaf"] == 2 and ts.search_cv.cv == 3
    c.set_params(**ts.get_params(deep=False))  # round trip
    assert c.get_params(deep=False).keys() == ts.get_params(deep=False).keys() and c.cv == 3
    c.fit(X, y)
    back = pickle.loads(pickle.dumps(c))  # n_jobs>1 ships it to workers
    assert isinstance(back, hs.TrackedSearchCV) and back.best_params_ == c.best_params_
    assert q(tmp_path, "SELECT count(*) FROM trials WHERE search_id = ?", [c.search_id]) == [(2,)]
    assert not hasattr(ts.search_cv, "cv_results_")  # the original is untouched


@pytest.mark.parametrize("name, n_jobs", [(None, 1), ("outer", 2)])
def test_cross_val_score_of_a_tracked_search(tmp_path, name, n_jobs):
    """cross_val_score clones: unnamed, each outer fit is a search of its own; named, each
    appends its trials to that search (in whichever process runs the outer fold)."""
    X, y = IRIS
    gs = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=3)
    scores = cross_val_score(hs.track(gs, name=name, store=str(tmp_path)), X, y, cv=3, n_jobs=n_jobs)
    np.testing.assert_array_equal(scores, cross_val_score(gs, X, y, cv=3))
    per_search = q(tmp_path, "SELECT search_id, count(*) FROM trials GROUP BY ALL")
    if name is None:
        assert sorted(n for _, n in per_search) == [2, 2, 2]
    else:
        assert per_search == [(api.search_id_for("outer"), 6)]
