"""hptrack.sklearn: tracked scikit-learn searches, checked against cv_results_."""

import json
import os

import numpy as np
import pytest
from scipy.stats import randint, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    KFold,
    ParameterSampler,
    RandomizedSearchCV,
    StratifiedKFold,
)
from sklearn.model_selection._search import BaseSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

import hptrack
import hptrack.sklearn as hs

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)
CANCER = load_breast_cancer(return_X_y=True)


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def fold_scores(store, search_id, split="fold"):
    """(trial_id, fold, metric, step) -> value of the recorded fold scores."""
    rows = q(store, "SELECT trial_id, fold, metric, step, value FROM events WHERE type = 'trial_scored' "
                    "AND split = ? AND search_id = ?", [split, search_id])
    out = {}
    for tid, fold, metric, step, value in rows:
        key = (tid, fold, metric, step)
        assert key not in out, f"fold score recorded twice: {key}"
        out[key] = value
    return out


def trial_rows(store, search_id):
    return {tid: (state, value) for tid, state, value in
            q(store, "SELECT trial_id, state, value FROM trials WHERE search_id = ?", [search_id])}


def search_payload(store, search_id):
    (payload,), = q(store, "SELECT payload FROM searches WHERE search_id = ?", [search_id])
    return json.loads(payload)


def check_flat(store, ts, metrics=("score",), train=False):
    """The equalities for a search with one cv_results_ row per candidate."""
    res = ts.cv_results_
    n = len(res["params"])
    trials = trial_rows(store, ts.search_id)
    assert len(trials) == n
    folds = fold_scores(store, ts.search_id)
    assert len(folds) == n * ts.n_splits_ * len(metrics)
    value_key = "mean_test_" + (ts.refit if isinstance(ts.refit, str) else metrics[0])
    names = dict(zip(metrics, metrics))
    if metrics == ("score",) and isinstance(ts.scoring, str):
        names = {"score": ts.scoring}  # a single named scorer is recorded under its name
    for r in range(n):
        tid = ts.trial_id_of(r)
        assert trials[tid] == ("complete", res[value_key][r])
        for m in metrics:
            for k in range(ts.n_splits_):
                assert folds[(tid, k, names[m], None)] == res[f"split{k}_test_{m}"][r]
    if train:
        assert len(fold_scores(store, ts.search_id, "fold_train")) == n * ts.n_splits_ * len(metrics)
    params = q(store, "SELECT trial_id, name, value_num, value_str FROM params WHERE search_id = ?",
               [ts.search_id])
    got = {}
    for tid, name, num, text in params:
        got.setdefault(tid, {})[name] = text if text is not None else num
    for r, p in enumerate(res["params"]):
        assert got[ts.trial_id_of(r)] == {k: (v if isinstance(v, str) else
                                              (None if v is None else float(v))) for k, v in p.items()}


# --- the five search classes ---------------------------------------------------

def test_grid_search_records_every_candidate_and_fold(tmp_path):
    X, y = CANCER
    grid = {"max_depth": [2, 4, None], "min_samples_split": [2, 10]}
    ts = hs.track(GridSearchCV(DecisionTreeClassifier(random_state=0), grid, scoring="f1", cv=3),
                  name="dt-grid", store=tmp_path, dataset="breast_cancer")
    assert ts.fit(X, y) is ts
    check_flat(tmp_path, ts)
    p = search_payload(tmp_path, ts.search_id)
    assert p["strategy"] == "grid" and p["metric"] == "f1" and p["direction"] == "maximize"
    assert p["space"] == {"max_depth": [2, 4, None], "min_samples_split": [2, 10]}
    assert p["cv"] == {"type": "int", "n_splits": 3}
    assert p["scoring"] == "f1" and p["refit"] is True and p["n_jobs"] is None
    assert p["estimator"].endswith("DecisionTreeClassifier")
    assert p["estimator_params"]["random_state"] == 0 and "max_depth" not in p["estimator_params"]
    assert p["seed"] == 0 and p["dataset"] == "breast_cancer"
    fp = p["dataset_fingerprint"]
    assert fp["X"]["shape"] == [569, 30] and fp["X"]["dtypes"] == "float64" and fp["y"]["shape"] == [569]
    # every original attribute is still there
    assert ts.best_params_ == ts.search_cv.best_params_
    assert (ts.predict(X[:5]) == ts.best_estimator_.predict(X[:5])).all()
    (status, best_trial), = q(tmp_path, "SELECT payload->>'status', payload->>'best_trial_id' FROM events "
                                        "WHERE type = 'search_finished'")
    assert status == "ok" and best_trial == ts.trial_id_of(ts.best_index_)
    assert q(tmp_path, "SELECT n_trials, n_complete FROM searches") == [(6, 6)]


def test_trials_end_when_their_last_fold_ends(tmp_path):
    """Not when sklearn's batch returns: run one by one, the candidates end one after another,
    each between its second-last and its last fold's score (the fold's own clock)."""
    X, y = CANCER
    grid = {"max_depth": [2, 4, 6, 8, None]}
    hs.track(GridSearchCV(DecisionTreeClassifier(random_state=0), grid, scoring="f1", cv=3),
             name="dt-timed", store=tmp_path).fit(X, y)
    rows = q(tmp_path, "SELECT trial_id, started_at, finished_at FROM trials ORDER BY recorded_number")
    ends = [end for _, _, end in rows]
    assert len(ends) == 5 and ends == sorted(ends) and len(set(ends)) == 5
    (search_end,), = q(tmp_path, "SELECT max(ts) FROM events WHERE type = 'search_finished'")
    for tid, start, end in rows:
        folds = [t for (t,) in q(tmp_path, "SELECT ts FROM scores WHERE trial_id = ? AND split = 'fold' "
                                           "ORDER BY ts", [tid])]
        assert len(folds) == 3 and start < folds[-2] <= end <= folds[-1] < search_end
        (valid,), = q(tmp_path, "SELECT ts FROM scores WHERE trial_id = ? AND split = 'validation'", [tid])
        assert valid == end


def test_random_search_serialises_scipy_distributions(tmp_path):
    X, y = WINE
    dists = {"max_depth": randint(1, 8), "min_impurity_decrease": uniform(0.0, 0.05),
             "criterion": ["gini", "entropy"]}
    rs = RandomizedSearchCV(DecisionTreeClassifier(random_state=0), dists, n_iter=5, cv=KFold(3, shuffle=True,
                            random_state=1), random_state=3, return_train_score=True)
    ts = hs.track(rs, name="dt-random", store=tmp_path).fit(X, y)
    check_flat(tmp_path, ts, train=True)
    p = search_payload(tmp_path, ts.search_id)
    assert p["strategy"] == "random" and p["seed"] == 3 and p["n_iter"] == 5
    assert p["space"]["max_depth"] == {"distribution": "randint", "args": [1, 8], "kwds": {}}
    assert p["space"]["min_impurity_decrease"] == {"distribution": "uniform", "args": [0.0, 0.05], "kwds": {}}
    assert p["space"]["criterion"] == ["gini", "entropy"]
    assert p["cv"]["type"] == "KFold" and p["cv"]["n_splits"] == 3 and p["cv"]["random_state"] == 1
    # the sampled candidates are the ones sklearn's own sampler draws
    assert [dict(c) for c in ParameterSampler(dists, 5, random_state=3)] == list(ts.cv_results_["params"])


def rung_check(store, ts):
    """Halving: rungs per iteration match n_candidates_ and n_resources_, scores match cv_results_."""
    res = ts.cv_results_
    rungs = q(store, "SELECT step, count(*), min(resource), max(resource) FROM reports "
                     "WHERE search_id = ? GROUP BY step ORDER BY step", [ts.search_id])
    assert [r[0] for r in rungs] == list(range(ts.n_iterations_))
    assert [r[1] for r in rungs] == list(ts.n_candidates_)
    assert [r[2] for r in rungs] == [r[3] for r in rungs] == [float(n) for n in ts.n_resources_]
    reports = {(tid, step): (value, resource) for tid, step, value, resource in
               q(store, "SELECT trial_id, step, value, resource FROM reports WHERE search_id = ?",
                 [ts.search_id])}
    folds = fold_scores(store, ts.search_id)
    for r in range(len(res["params"])):
        tid, it = ts.trial_id_of(r), int(res["iter"][r])
        assert reports[(tid, it)] == (res["mean_test_score"][r], float(res["n_resources"][r]))
        for k in range(ts.n_splits_):
            assert folds[(tid, k, "score", it)] == res[f"split{k}_test_score"][r]
    # one trial per initial candidate; the finalists complete, the rest are pruned at their last rung
    states = q(store, "SELECT state, last_step, count(*) FROM trials WHERE search_id = ? GROUP BY ALL",
               [ts.search_id])
    last = ts.n_iterations_ - 1
    counts = {(s, step): n for s, step, n in states}
    assert counts.pop(("complete", last)) == ts.n_candidates_[-1]
    for it in range(last):
        assert counts.pop(("pruned", it)) == ts.n_candidates_[it] - ts.n_candidates_[it + 1]
    assert counts == {}
    best = trial_rows(store, ts.search_id)[ts.trial_id_of(ts.best_index_)]
    assert best == ("complete", ts.best_score_)


def test_halving_grid_rungs(tmp_path):
    X, y = CANCER
    grid = {"max_depth": [1, 2, 3, 4, 5, None], "min_samples_split": [2, 20]}
    hv = HalvingGridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, factor=2,
                             random_state=0, min_resources=60)
    ts = hs.track(hv, name="dt-halving", store=tmp_path).fit(X, y)
    assert ts.n_iterations_ >= 3
    rung_check(tmp_path, ts)
    assert search_payload(tmp_path, ts.search_id)["strategy"] == "halving"
    assert search_payload(tmp_path, ts.search_id)["factor"] == 2
    # the rungs can be rebuilt by SQL: candidates and resource per iteration
    assert q(tmp_path, "SELECT step, count(*), any_value(resource) FROM reports GROUP BY step ORDER BY step") == [
        (i, int(c), float(r)) for i, (c, r) in enumerate(zip(ts.n_candidates_, ts.n_resources_))]


def test_halving_random_rungs(tmp_path):
    X, y = WINE
    hv = HalvingRandomSearchCV(KNeighborsClassifier(), {"n_neighbors": randint(1, 10),
                                                        "weights": ["uniform", "distance"]},
                               n_candidates=9, factor=3, cv=3, random_state=0)
    ts = hs.track(hv, name="knn-halving", store=tmp_path).fit(X, y)
    rung_check(tmp_path, ts)
    assert len(trial_rows(tmp_path, ts.search_id)) == ts.n_candidates_[0] == 9


def test_bayes_search_cv(tmp_path):
    import skopt
    from skopt.space import Categorical, Integer, Real

    X, y = IRIS
    bs = skopt.BayesSearchCV(DecisionTreeClassifier(random_state=0),
                             {"max_depth": Integer(1, 6), "min_impurity_decrease": Real(0.0, 0.1),
                              "criterion": Categorical(["gini", "entropy"])},
                             n_iter=4, n_points=2, cv=3, random_state=0)
    ts = hs.track(bs, name="dt-bayes", store=tmp_path).fit(X, y)
    check_flat(tmp_path, ts)
    p = search_payload(tmp_path, ts.search_id)
    assert p["strategy"] == "bayes"
    assert p["space"]["max_depth"] == {"type": "Integer", "name": None, "low": 1, "high": 6,
                                       "prior": "uniform", "base": 10}
    assert p["space"]["criterion"]["categories"] == ["gini", "entropy"]


class TwoRoundSearchCV(BaseSearchCV):
    """A custom BaseSearchCV subclass: a random round, then the best one's neighbours."""

    def __init__(self, estimator, *, scoring=None, n_jobs=None, refit=True, cv=None, error_score=np.nan):
        super().__init__(estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv,
                         error_score=error_score)

    def _run_search(self, evaluate_candidates):
        results = evaluate_candidates([{"n_neighbors": k} for k in (1, 5, 15)])
        best = results["params"][int(np.argmax(results["mean_test_score"]))]["n_neighbors"]
        evaluate_candidates([{"n_neighbors": best + 1}, {"n_neighbors": best + 2}])


def test_custom_search_subclass(tmp_path):
    X, y = IRIS
    ts = hs.track(TwoRoundSearchCV(KNeighborsClassifier(), cv=3), name="knn-custom", store=tmp_path).fit(X, y)
    assert len(ts.cv_results_["params"]) == 5
    check_flat(tmp_path, ts)
    assert search_payload(tmp_path, ts.search_id)["strategy"] == "custom"


# --- metrics, failures ---------------------------------------------------------

def test_multi_metric_records_every_metric_and_refit_value(tmp_path):
    X, y = CANCER
    gs = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3]},
                      scoring={"acc": "accuracy", "f1": "f1"}, refit="f1", cv=3)
    ts = hs.track(gs, name="mm", store=tmp_path).fit(X, y)
    check_flat(tmp_path, ts, metrics=("acc", "f1"))
    metrics = [json.loads(m) for m, in q(tmp_path, "SELECT metrics FROM trials ORDER BY recorded_number")]
    for r, m in enumerate(metrics):
        assert m["mean_test_acc"] == ts.cv_results_["mean_test_acc"][r]
        assert m["std_test_f1"] == ts.cv_results_["std_test_f1"][r]
    p = search_payload(tmp_path, ts.search_id)
    assert p["metric"] == "f1" and p["refit"] == "f1" and p["scoring"] == {"acc": "accuracy", "f1": "f1"}
    val = q(tmp_path, "SELECT metric, count(*) FROM scores WHERE split = 'validation' GROUP BY ALL ORDER BY 1")
    assert val == [("acc", 2), ("f1", 2)]


class Flaky(BaseEstimator, ClassifierMixin):
    """Fails to fit when ``bad`` is set; ``interrupt_at`` raises Ctrl-C on that fit in this process."""
    fits = 0

    def __init__(self, bad=False, interrupt_at=None):
        self.bad, self.interrupt_at = bad, interrupt_at

    def fit(self, X, y):
        type(self).fits += 1
        if self.interrupt_at is not None and type(self).fits == self.interrupt_at:
            raise KeyboardInterrupt
        if self.bad:
            raise ValueError("bad setting refused")
        self.classes_ = np.unique(y)
        self.major_ = np.bincount(y).argmax()
        return self

    def predict(self, X):
        return np.full(len(X), self.major_)


def test_failed_fits_are_failed_trials(tmp_path):
    X, y = IRIS
    with pytest.warns(UserWarning):
        ts = hs.track(GridSearchCV(Flaky(), {"bad": [False, True]}, cv=3, error_score=np.nan),
                      name="flaky", store=tmp_path).fit(X, y)
    rows = q(tmp_path, "SELECT recorded_number, state, value, error FROM trials ORDER BY recorded_number")
    assert rows[0][:3] == (0, "complete", ts.cv_results_["mean_test_score"][0])
    assert rows[1][1] == "failed" and "bad setting refused" in rows[1][3]
    assert len(fold_scores(tmp_path, ts.search_id)) == 3  # only the folds that fitted


def test_interrupted_search_keeps_finished_folds(tmp_path):
    X, y = IRIS
    Flaky.fits = 0
    ts = hs.track(GridSearchCV(Flaky(interrupt_at=5), {"bad": [False, False, False]}, cv=3),
                  name="interrupted", store=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ts.fit(X, y)
    folds = q(tmp_path, "SELECT recorded_number, fold FROM events e JOIN trials USING (trial_id) "
                        "WHERE e.type = 'trial_scored' AND split = 'fold' ORDER BY 1, 2")
    assert folds == [(0, 0), (0, 1), (0, 2), (1, 0)]  # fits 1-4 finished, the 5th was interrupted
    states = q(tmp_path, "SELECT state, count(*) FROM trials GROUP BY ALL ORDER BY 1")
    assert states == [("failed", 3)]  # no candidate completed: cv_results_ never existed
    (status, err), = q(tmp_path, "SELECT payload->>'status', payload->>'error' FROM events "
                                 "WHERE type = 'search_finished'")
    assert status == "error" and err.startswith("KeyboardInterrupt")
    assert not hasattr(ts.search_cv, "cv_results_")
    assert "_run_search" not in vars(ts.search_cv)  # the hooks are gone
    import sklearn.model_selection._search as sk_search
    import sklearn.model_selection._validation as sk_validation
    assert sk_search._fit_and_score is sk_validation._fit_and_score


# --- parallel --------------------------------------------------------------------

def test_n_jobs_2_workers_write_live(tmp_path):
    X, y = CANCER
    gs = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.01, 0.1, 1.0]}, scoring="f1",
                      cv=StratifiedKFold(3), n_jobs=2)
    ts = hs.track(gs, name="lr-parallel", store=tmp_path).fit(X, y)
    check_flat(tmp_path, ts)
    parent = hptrack.Writer.for_store(tmp_path).writer_id
    writers = {w for w, in q(tmp_path, "SELECT DISTINCT writer_id FROM events WHERE split = 'fold'")}
    assert parent not in writers
    # the loky workers are still alive, holding their logs: the headers name their processes
    assert {w: pid for w, pid in worker_logs(tmp_path).items() if w in writers}
    assert all(pid != os.getpid() for w, pid in worker_logs(tmp_path).items() if w in writers)


def worker_logs(store):
    from hptrack._files.wal import read_log

    wal = store / "wal"
    out = {}
    for name in os.listdir(wal) if wal.exists() else []:
        header = read_log(str(wal / name)).header
        out[header["writer_id"]] = header["pid"]
    return out


class Boom(DecisionTreeClassifier):
    """A tree that crashes the whole search (error_score='raise') when max_depth == 99."""

    def fit(self, X, y, **kw):
        if self.max_depth == 99:
            raise RuntimeError("boom")
        return super().fit(X, y, **kw)


def test_n_jobs_2_crash_keeps_worker_folds(tmp_path):
    X, y = CANCER
    cv = StratifiedKFold(3)
    grid = {"max_depth": [1, 2, 3, 4, 99]}
    gs = GridSearchCV(Boom(random_state=0), grid, cv=cv, n_jobs=2, error_score="raise")
    ts = hs.track(gs, name="crash-parallel", store=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        ts.fit(X, y)
    recorded = q(tmp_path, "SELECT recorded_number, fold, e.value FROM events e JOIN trials USING (trial_id) "
                           "WHERE e.type = 'trial_scored' AND split = 'fold'")
    assert recorded, "no fold survived the crash"
    for number, fold, value in recorded:
        train, test = list(cv.split(X, y))[fold]
        model = DecisionTreeClassifier(random_state=0, max_depth=grid["max_depth"][number]).fit(X[train], y[train])
        assert value == model.score(X[test], y[test])
    assert q(tmp_path, "SELECT DISTINCT state FROM trials") == [("failed",)]


def test_n_jobs_2_halving(tmp_path):
    X, y = CANCER
    hv = HalvingGridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3, 4]},
                             cv=3, factor=2, min_resources=100, n_jobs=2, random_state=0)
    ts = hs.track(hv, name="halving-parallel", store=tmp_path).fit(X, y)
    rung_check(tmp_path, ts)


# --- test score, nested CV, API edges -------------------------------------------------

def test_log_test_score_on_best_trial(tmp_path):
    X, y = CANCER
    Xtr, ytr, Xte, yte = X[:400], y[:400], X[400:], y[400:]
    ts = hs.track(GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [2, 3]},
                               scoring="f1", cv=3), name="test-score", store=tmp_path).fit(Xtr, ytr)
    score = hs.log_test_score(ts, Xte, yte)
    assert score == f1_score(yte, ts.predict(Xte))
    acc = hs.log_test_score(ts, Xte, yte, scoring="accuracy")
    rows = q(tmp_path, "SELECT trial_id, metric, value FROM scores WHERE split = 'test' ORDER BY metric")
    assert rows == [(ts.trial_id_of(ts.best_index_), "accuracy", acc),
                    (ts.trial_id_of(ts.best_index_), "f1", score)]
    with pytest.raises(TypeError, match="track"):
        hs.log_test_score(ts.search_cv, Xte, yte)


def test_nested_cv_matches_hand_written_loop(tmp_path):
    X, y = WINE
    inner = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3]}, cv=3,
                         scoring="f1_macro")
    outer = StratifiedKFold(3, shuffle=True, random_state=0)
    res = hs.nested_cv(inner, X, y, outer_cv=outer, name="nested", store=tmp_path)
    expected = [clone(inner).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in outer.split(X, y)]
    assert list(res.outer_scores) == expected
    assert res.mean == np.mean(expected) and res.std == np.std(expected)
    outer_rows = q(tmp_path, "SELECT t.value, p.value FROM trials t JOIN params p USING (search_id, trial_id) "
                             "WHERE t.search_id = ? ORDER BY p.value", [res.search_id])
    assert outer_rows == [(s, str(k)) for k, s in enumerate(expected)]
    links = q(tmp_path, "SELECT search_id, payload->>'parent_search_id', (payload->>'outer_fold')::INT "
                        "FROM searches WHERE payload->>'parent_search_id' IS NOT NULL ORDER BY 3")
    assert [(sid, parent, k) for sid, parent, k in links] == [
        (sid, res.search_id, k) for k, sid in enumerate(res.inner_search_ids)]
    tests = q(tmp_path, "SELECT search_id, value FROM scores WHERE split = 'test' AND search_id != ? "
                        "ORDER BY search_id", [res.search_id])
    assert sorted(tests) == sorted(zip(res.inner_search_ids, expected))


def test_track_rejects_non_searches_and_delegates(tmp_path):
    with pytest.raises(TypeError, match="BaseSearchCV"):
        hs.track(DecisionTreeClassifier())
    gs = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 3]}, cv=3)
    ts = hs.track(gs, store=tmp_path)
    assert ts.get_params()["cv"] == 3 and ts.n_jobs is None
    ts.fit(*IRIS)
    assert ts.search_name.startswith("GridSearchCV-KNeighborsClassifier-")
    assert hs.track(ts).search_cv is gs


def test_dataset_fingerprint_tells_data_apart():
    from hptrack.sklearn._describe import fingerprint

    X, y = IRIS
    assert fingerprint(X, y) == fingerprint(X.copy(), y.copy())
    X2 = X.copy()
    X2[0, 0] += 1e-9
    assert fingerprint(X2, y)["X"]["sha256"] != fingerprint(X, y)["X"]["sha256"]
    assert fingerprint(X.astype(np.float32), y)["X"]["dtypes"] == "float32"
