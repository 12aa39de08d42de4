"""hptrack.sklearn.track(..., skip_done=True): folds recorded before are not fitted again,
and the result equals a fresh full search (checked against plain scikit-learn)."""

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import sklearn.model_selection._search as sk_search
import sklearn.model_selection._validation as sk_validation
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn as hs
from hptrack.analysis import compare

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)
CANCER = load_breast_cancer(return_X_y=True)
SMALL = {"C": [0.1, 1.0], "gamma": [0.01, 0.1]}
BIG = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}


@pytest.fixture
def fits(monkeypatch):
    """Counts the folds scikit-learn really fits (a stand-in for its _fit_and_score)."""
    real = sk_search._fit_and_score
    calls = []

    @functools.wraps(real)
    def counting(*args, **kwargs):
        calls.append(kwargs.get("parameters"))
        return real(*args, **kwargs)
    # both names, as hptrack.sklearn._compat checks they are one function
    monkeypatch.setattr(sk_search, "_fit_and_score", counting)
    monkeypatch.setattr(sk_validation, "_fit_and_score", counting)
    return calls


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def assert_same_search(got, fresh):
    """A skip_done search equals the fresh full one: every score, the best and the refit model."""
    for key in fresh.cv_results_:
        if key.startswith(("mean_test", "std_test", "rank_test", "split", "mean_train", "std_train")):
            np.testing.assert_array_equal(got.cv_results_[key], fresh.cv_results_[key], err_msg=key)
    assert [dict(p) for p in got.cv_results_["params"]] == [dict(p) for p in fresh.cv_results_["params"]]
    assert got.best_params_ == fresh.best_params_
    assert got.best_score_ == fresh.best_score_
    assert got.best_index_ == fresh.best_index_
    assert repr(got.best_estimator_.get_params(deep=False)) == repr(fresh.best_estimator_.get_params(deep=False))


def test_extended_grid_fits_only_the_new_points_and_equals_a_full_run(tmp_path, fits):
    X, y = CANCER
    est = make_pipeline(StandardScaler(), SVC())
    small = {f"svc__{k}": v for k, v in SMALL.items()}
    big = {f"svc__{k}": v for k, v in BIG.items()}
    hs.track(GridSearchCV(est, small, cv=5), name="first", store=tmp_path).fit(X, y)
    assert len(fits) == 4 * 5
    fits.clear()
    got = hs.track(GridSearchCV(est, big, cv=5), name="extended", store=tmp_path, skip_done=True).fit(X, y)
    assert len(fits) == (9 - 4) * 5                     # the 4 recorded candidates were not fitted
    old = {(c, g) for c in SMALL["C"] for g in SMALL["gamma"]}
    new = {(c, g) for c in BIG["C"] for g in BIG["gamma"]} - old
    assert {(p["svc__C"], p["svc__gamma"]) for p in fits} == new
    fresh = GridSearchCV(est, big, cv=5).fit(X, y)
    assert_same_search(got, fresh)
    np.testing.assert_array_equal(got.predict(X), fresh.predict(X))
    # the history holds every candidate with its value; the copies name their source
    first_ids = {t for (t,) in q(tmp_path, "SELECT trial_id FROM trials WHERE search_id = ?",
                                 [hptrack.api.search_id_for("first")])}
    rows = dict(q(tmp_path, "SELECT trial_id, value FROM trials WHERE search_id = ? AND state = 'complete'",
                  [got.search_id]))
    assert sorted(rows.values()) == sorted(fresh.cv_results_["mean_test_score"].tolist())
    assert len(got.reused_) == 4 and {r["trial_id"] for r in got.reused_.values()} == first_ids
    marked = q(tmp_path, "SELECT trial_id, payload ->> '$.reused_from.trial_id' FROM events WHERE "
                         "type = 'annotation' AND search_id = ? AND (payload -> 'reused_from') IS NOT NULL",
               [got.search_id])
    assert len(marked) == 4 and {src for _, src in marked} == first_ids
    copies = q(tmp_path, "SELECT count(*) FROM events WHERE type = 'trial_scored' AND split = 'fold' "
                         "AND search_id = ? AND (payload -> 'reused_from') IS NOT NULL", [got.search_id])
    assert copies == [(20,)]
    # compare charges only what this search fitted
    (row,) = compare([got.search_id], store=tmp_path, by="trials").per_search.to_dicts()
    assert row["n_trials"] == 5


def test_skip_done_with_worker_processes(tmp_path):
    X, y = WINE
    hs.track(GridSearchCV(SVC(), SMALL, cv=3), store=tmp_path).fit(X, y)
    got = hs.track(GridSearchCV(SVC(), BIG, cv=3, n_jobs=2), store=tmp_path, skip_done=True).fit(X, y)
    assert_same_search(got, GridSearchCV(SVC(), BIG, cv=3).fit(X, y))
    assert len(got.reused_) == 4
    assert q(tmp_path, "SELECT payload ->> 'reused_folds' FROM events WHERE type = 'search_finished' "
                       "AND search_id = ?", [got.search_id]) == [("12",)]


def test_same_random_search_again_fits_nothing(tmp_path, fits):
    X, y = IRIS
    space = {"C": [0.01, 0.1, 1.0, 10.0, 100.0], "gamma": [0.001, 0.01, 0.1, 1.0]}
    make = lambda: RandomizedSearchCV(SVC(), space, n_iter=6, cv=4, random_state=3)  # noqa: E731
    hs.track(make(), store=tmp_path).fit(X, y)
    fits.clear()
    got = hs.track(make(), store=tmp_path, skip_done=True).fit(X, y)
    assert fits == []
    assert_same_search(got, make().fit(X, y))


@pytest.mark.parametrize("change", ["data", "cv", "scoring", "fixed param", "int vs float"])
def test_anything_else_changed_refits_everything(tmp_path, fits, change):
    X, y = IRIS
    grid = {"C": [1.0, 10.0]}
    hs.track(GridSearchCV(SVC(), grid, cv=3), store=tmp_path).fit(X, y)
    fits.clear()
    est, cv, scoring = SVC(), 3, None
    if change == "data":
        X = X + 1e-9
    elif change == "cv":
        cv = 4
    elif change == "scoring":
        scoring = "f1_macro"
    elif change == "fixed param":
        est = SVC(kernel="linear")
    else:
        grid = {"C": [1, 10]}
    got = hs.track(GridSearchCV(est, grid, cv=cv, scoring=scoring), store=tmp_path, skip_done=True).fit(X, y)
    assert len(fits) == 2 * got.n_splits_ and got.reused_ == {}


def test_seeded_shuffle_matches_and_an_unseeded_one_never_does(tmp_path, fits):
    X, y = IRIS
    grid = {"C": [1.0, 10.0]}
    seeded = KFold(4, shuffle=True, random_state=0)
    hs.track(GridSearchCV(SVC(), grid, cv=seeded), store=tmp_path).fit(X, y)
    fits.clear()
    again = hs.track(GridSearchCV(SVC(), grid, cv=KFold(4, shuffle=True, random_state=0)), store=tmp_path,
                     skip_done=True).fit(X, y)
    assert fits == [] and len(again.reused_) == 2
    for _ in range(2):
        with pytest.warns(hs.SkipDoneOff, match="random_state=None"):
            got = hs.track(GridSearchCV(SVC(), grid, cv=StratifiedKFold(4, shuffle=True)), store=tmp_path,
                           skip_done=True).fit(X, y)
        assert got.reused_ == {}
    assert len(fits) == 2 * 2 * 4


def test_callable_scoring_is_not_matched(tmp_path, fits):
    X, y = IRIS

    def acc(est, X_, y_):
        return float((est.predict(X_) == y_).mean())
    for _ in range(2):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            hs.track(GridSearchCV(SVC(), {"C": [1.0]}, cv=3, scoring=acc), store=tmp_path,
                     skip_done=True).fit(X, y)
    assert any(issubclass(w.category, hs.SkipDoneOff) and "callable" in str(w.message) for w in seen)
    assert len(fits) == 2 * 3


CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import hptrack.sklearn as hs
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    KILL_AT = int(os.environ["KILL_AT"])
    N = [0]

    class Killed(SVC):
        def fit(self, X, y, **kw):
            N[0] += 1
            if N[0] == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)   # a crash mid-grid, mid-candidate
            return super().fit(X, y, **kw)

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    grid = {"C": [0.5, 5.0, 50.0], "gamma": [0.01, 0.05]}
    gs = hs.track(GridSearchCV(Killed(), grid, cv=3), name="digits-grid", store=sys.argv[1],
                  skip_done=True).fit(X, y)
    print(json.dumps({"fits": N[0], "best_params": gs.best_params_, "best_score": gs.best_score_,
                      "means": gs.cv_results_["mean_test_score"].tolist(), "reused": len(gs.reused_)}))
""")


def test_killed_grid_reruns_only_the_missing_folds(tmp_path):
    from sklearn.datasets import load_digits

    store = str(tmp_path / "store")
    env = {**os.environ, "KILL_AT": "9"}   # fits 1-8 recorded (candidates 0-1 whole, 2 half)
    first = subprocess.run([sys.executable, "-c", CHILD, store], env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    again = subprocess.run([sys.executable, "-c", CHILD, store], env={**env, "KILL_AT": "0"},
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout.strip().splitlines()[-1])
    assert out["fits"] == 6 * 3 - 8 + 1              # the missing folds, and the refit
    assert out["reused"] == 2                         # candidates none of whose folds ran again
    X, y = load_digits(return_X_y=True)
    fresh = GridSearchCV(SVC(), {"C": [0.5, 5.0, 50.0], "gamma": [0.01, 0.05]}, cv=3).fit(X[:600] / 16.0, y[:600])
    assert out["means"] == fresh.cv_results_["mean_test_score"].tolist()
    assert out["best_params"] == fresh.best_params_ and out["best_score"] == fresh.best_score_
    states = q(store, "SELECT state, count(*) FROM trials GROUP BY ALL")
    assert states == [("complete", 6)]                # the killed run had started no trial
