"""Cost planning (issue #17 item 4): exact fit counts, and times read only from matching history.

The count is checked against the fits scikit-learn actually runs (an estimator
that counts its own ``fit`` calls) and, on random spaces, against the product
of the grid's value counts; the time against the recorded folds it used (a
replanned recorded search gives back the sum of their times) and against a
synthetic history whose law is known."""

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import loguniform, randint
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, KFold, ParameterGrid, RandomizedSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

import hptrack
import hptrack.sklearn as hs
from hptrack.analysis import plan, plan_space
from hptrack.analysis.planned import from_space
from hptrack.analysis.planning import estimate, history, makespan, workers_for
from hptrack.cli.main import cli

SVC_QUALNAME = "sklearn.svm._classes.SVC"
GRID = {"C": [0.1, 1], "gamma": [0.01, 0.1]}


class CountingTree(DecisionTreeClassifier):
    """A decision tree that counts every fit scikit-learn runs (n_jobs=1: one process)."""
    fits = 0

    def fit(self, X, y, sample_weight=None, check_input=True):
        CountingTree.fits += 1
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """svc-grid on breast_cancer (the history), beside searches a plan of it must ignore: another
    estimator on the same data, and SVC on 10 of the 30 features."""
    root = str(tmp_path_factory.mktemp("plan"))
    X, y = load_breast_cancer(return_X_y=True)
    hs.track(GridSearchCV(SVC(), GRID, cv=3), name="svc-grid", store=root).fit(X, y)
    hs.track(GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 5]}, cv=3), name="knn",
             store=root).fit(X, y)
    hs.track(GridSearchCV(SVC(), GRID, cv=3), name="svc-10-features", store=root).fit(X[:, :10], y)
    hs.track(GridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc__C": [1.0]}, cv=2), name="svc-pipeline",
             store=root).fit(X, y)
    return root


@pytest.mark.parametrize("make", [
    lambda: GridSearchCV(CountingTree(), {"max_depth": [1, 2, 3], "criterion": ["gini", "entropy"]}, cv=3),
    lambda: GridSearchCV(CountingTree(), {"max_depth": [1, 2]}, cv=5, refit=False),
    lambda: GridSearchCV(CountingTree(), [{"max_depth": [1, 2]}, {"min_samples_leaf": [1, 2, 4]}], cv=KFold(4)),
    lambda: GridSearchCV(CountingTree(), {"max_depth": [1, 2]}, cv=2, scoring=["accuracy", "f1_macro"],
                         refit="accuracy"),
    lambda: RandomizedSearchCV(CountingTree(), {"max_depth": randint(1, 6), "ccp_alpha": loguniform(1e-4, 1e-1)},
                               n_iter=7, cv=3, random_state=0),
    lambda: RandomizedSearchCV(CountingTree(), {"max_depth": [1, 2, 3]}, n_iter=10, cv=2, refit=False,
                               random_state=0),   # a 3-point grid: sklearn samples 3, not 10
], ids=["grid", "grid-no-refit", "list-of-grids", "multimetric-refit", "random", "random-small-grid"])
@pytest.mark.filterwarnings("ignore:The total space of parameters:UserWarning")
def test_fits_are_the_fits_sklearn_runs(make, tmp_path):
    X, y = load_iris(return_X_y=True)
    p = plan(make(), X, y, store=tmp_path / "none")
    search = make()
    CountingTree.fits = 0
    search.fit(X, y)
    assert p.n_fits == CountingTree.fits
    assert p.n_candidates == len(search.cv_results_["params"])
    assert p.n_folds == search.n_splits_


def test_random_candidates_are_the_ones_fit_draws():
    X, y = load_iris(return_X_y=True)
    make = lambda: RandomizedSearchCV(DecisionTreeClassifier(), {"max_depth": randint(1, 20)},  # noqa: E731
                                      n_iter=6, cv=2, random_state=3)
    from hptrack.analysis.planned import from_search

    planned = from_search(make(), X, y)
    fitted = make().fit(X, y)
    assert [c["max_depth"] for c in planned.candidates] == [p["max_depth"] for p in fitted.cv_results_["params"]]


values = st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True)
grids = st.dictionaries(st.sampled_from(["max_depth", "min_samples_leaf", "max_leaf_nodes"]), values,
                        min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(space=st.one_of(grids, st.lists(grids, min_size=1, max_size=3)), cv=st.integers(2, 10),
       refit=st.booleans(), n_iter=st.one_of(st.none(), st.integers(1, 40)), with_dist=st.booleans())
def test_fit_count_on_random_spaces(space, cv, refit, n_iter, with_dist):
    from sklearn.model_selection import ParameterGrid

    parts = space if isinstance(space, list) else [space]
    size = sum(int(np.prod([len(v) for v in g.values()])) for g in parts)
    if n_iter is None:
        expected = size
    else:
        parts = parts[:1]  # ParameterSampler takes one dict (or a list of dicts: one drawn per sample)
        space = parts[0]
        size = int(np.prod([len(v) for v in space.values()]))
        if with_dist:
            space = {**space, "ccp_alpha": {"distribution": "uniform", "args": [0, 1]}}
        expected = n_iter if with_dist else min(n_iter, size)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # n_iter above a grid's size
        planned = from_space("sklearn.tree.DecisionTreeClassifier", space, n_samples=100, n_features=4, cv=cv,
                             n_iter=n_iter, refit=refit)
    assert planned.n_candidates == expected
    assert planned.n_fits == expected * cv + int(refit)
    if n_iter is None:
        assert len(ParameterGrid(space)) == expected


def test_replanning_a_recorded_search_gives_back_its_recorded_fold_times(store):
    X, y = load_breast_cancer(return_X_y=True)
    p = plan(GridSearchCV(SVC(), GRID, cv=3, refit=False), X, y, store=store, n_jobs=1)
    con = hptrack.connect(store)
    (recorded,), = con.sql(
        "SELECT sum(TRY_CAST(payload ->> 'fit_time' AS DOUBLE) + TRY_CAST(payload ->> 'score_time' AS DOUBLE)) "
        "FROM scores JOIN (SELECT search_id FROM searches WHERE name = 'svc-grid') USING (search_id) "
        "WHERE split = 'fold'").fetchall()
    assert p.exact_folds == p.n_fits == 12
    assert p.seconds - p.overhead_s == pytest.approx(recorded, rel=1e-9)
    assert p.seconds_low <= p.seconds <= p.seconds_high
    # a tracked search is planned from its own store
    tracked = hs.track(GridSearchCV(SVC(), GRID, cv=3, refit=False), name="svc-grid", store=store)
    assert plan(tracked, X, y, n_jobs=1).seconds == p.seconds
    # on 2 workers the same folds, dealt in sklearn's order, each to the first worker free
    folds = history(con, SVC_QUALNAME).filter(pl.col("search") == "svc-grid")
    two = plan(GridSearchCV(SVC(), GRID, cv=3, refit=False, n_jobs=2), X, y, store=store, cores=2)
    assert two.workers == 2 and two.seconds - two.overhead_s < p.seconds - p.overhead_s
    assert two.seconds - two.overhead_s >= (recorded / 2) - 1e-12
    assert len(folds) == 12
    # the history ran in one process: BLAS threading differs on 2 workers, and the plan says so
    assert any("the history ran in one process" in n for n in two.notes) and not p.notes


def test_only_history_of_the_same_estimator_and_n_features_is_used(store):
    X, y = load_breast_cancer(return_X_y=True)
    p = plan(GridSearchCV(SVC(), {"C": [0.1, 1, 10]}, cv=5), X, y, store=store)
    assert p.history_searches == ["svc-grid"] and p.history_folds == 12
    # the pure estimate: rows of another estimator or width, however slow, change nothing
    h = history(hptrack.connect(store), SVC_QUALNAME)
    junk = h.with_columns(pl.lit(1e6).alias("fit_time"))
    mixed = pl.concat([h, junk.with_columns(pl.lit("sklearn.svm._classes.LinearSVC").alias("estimator")),
                       junk.with_columns(pl.lit(31, dtype=pl.Int64).alias("n_features"))])
    from hptrack.analysis.planned import from_search

    planned = from_search(GridSearchCV(SVC(), {"C": [0.1, 1, 10]}, cv=5), X, y)
    clean = estimate(h.filter(pl.col("n_features") == 30), planned, cores=2)
    assert estimate(mixed, planned, cores=2).seconds == clean.seconds == pytest.approx(p.seconds)


def test_no_history_gives_no_time_and_says_so(store, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    for where in (tmp_path / "nowhere", store):  # no store at all; a store with no such folds
        p = plan(GridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2, 3]}, cv=4), X, y, store=where)
        assert p.seconds is None and p.seconds_low is None and p.history_folds == 0
        assert p.n_fits == 13
        assert p.text == ("3 candidates x 4 folds + 1 refit = 13 fits; time unknown: no recorded folds of "
                          "DecisionTreeClassifier on 30 features (record a smaller search of it with "
                          "hptrack.sklearn.track first)")


def _history(rows):
    return pl.DataFrame([{"search_id": "s", "search": "s", "estimator": "m.E", "n_features": 5, "n_train": n,
                          "fit_time": t, "score_time": 0.0, "params": json.dumps({"n_estimators": k}),
                          "search_wall_s": None, "search_refit_s": None, "search_n_jobs": None}
                         for n, k, t in rows])


def _planned(n_train, n_estimators):
    from hptrack.analysis.planned import PlannedSearch

    return PlannedSearch("m.E", [{"n_estimators": k} for k in n_estimators], [n_train] * 2, n_train * 2, 5,
                         refit=False)


def test_the_model_recovers_a_known_cost_law():
    # fit_time = 1e-6 * n_train * n_estimators, recorded at two sizes and three forest sizes
    law = lambda n, k: 1e-6 * n * k  # noqa: E731
    h = _history([(n, k, law(n, k)) for n in (1000, 2000) for k in (10, 30, 100) for _ in range(2)])
    p = estimate(h, _planned(8000, [400, 800]), cores=1)
    assert p.exact_folds == 0 and "log n_train + log n_estimators" in p.basis
    assert p.seconds == pytest.approx(2 * (law(8000, 400) + law(8000, 800)), rel=1e-3)
    assert p.seconds_low == pytest.approx(p.seconds, rel=1e-3) == p.seconds_high  # no residual spread
    assert any("extrapolating" in n for n in p.notes) and any("n_estimators beyond" in n for n in p.notes)


def test_one_recorded_size_is_linear_with_a_range_up_to_quadratic():
    h = _history([(1000, 10, 0.01), (1000, 10, 0.01)])
    p = estimate(h, _planned(4000, [10]), cores=1)
    assert p.seconds == pytest.approx(2 * 0.04)
    assert p.seconds_high == pytest.approx(2 * 0.16)
    assert any("one data size" in n for n in p.notes)


def test_workers_and_schedule():
    assert [workers_for(j, 4, 10) for j in (None, 1, -1, -2, 8)] == [1, 1, 4, 3, 4]
    assert workers_for(-1, 8, 3) == 3
    assert makespan(np.array([3.0, 1, 1, 1]), 2) == 3.0
    assert makespan(np.array([1.0, 1, 1, 3]), 2) == 4.0


def test_halving_is_refused_with_the_way_out():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="successive halving is not planned.*GridSearchCV"):
        plan(HalvingGridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2]}), X, y)


def run(*args, store):
    return CliRunner().invoke(cli, ["--store", str(store), "plan", *args])


def test_cli_plans_a_space_and_a_recorded_search(store):
    r = run("--estimator", "sklearn.svm.SVC", "--grid", '{"C": [0.1, 1, 10], "gamma": [0.01, 0.1]}',
            "--cv", "5", "--n-jobs", "2", "--n-samples", "569", "--n-features", "30", store=store)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("6 candidates x 5 folds + 1 refit = 31 fits, about ")
    assert "from 12 recorded folds of 1 search" in r.output and "model: log seconds" in r.output
    r = run("--like", "svc-grid", "--no-refit", "--n-jobs", "1", "--format", "json", store=store)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["n_fits"], out["exact_folds"], out["history_searches"]) == (12, 12, ["svc-grid"])
    r = run("--like", "svc-grid", "--distributions", '{"C": {"distribution": "loguniform", "args": [0.01, 100]}}',
            "--n-iter", "20", store=store)
    assert r.exit_code == 0 and r.output.startswith("20 candidates x 3 folds + 1 refit = 61 fits, about ")
    assert plan_space(like="svc-grid", store=store).n_fits == 13


@pytest.mark.parametrize("args, code, message", [
    (["--estimator", "sklearn.svm.SVC", "--grid", "{C: [1]}", "--n-samples", "9", "--n-features", "2"], 2,
     "not JSON"),
    (["--estimator", "sklearn.svm.SVM", "--grid", '{"C": [1]}', "--n-samples", "9", "--n-features", "2"], 1,
     "unknown estimator 'sklearn.svm.SVM': give the import path"),
    (["--estimator", "sklearn.svm.SVC", "--grid", '{"c": [1]}', "--n-samples", "9", "--n-features", "2"], 1,
     "has no param(s) c"),
    (["--estimator", "sklearn.svm.SVC", "--grid", '{"C": [1]}'], 1, "give n_samples, n_features"),
    (["--grid", '{"C": [1]}'], 2, "give --estimator PATH"),
    (["--like", "nope"], 1, "no search named 'nope'"),
    (["--estimator", "sklearn.pipeline.Pipeline", "--grid", '{"memory": [null]}', "--n-samples", "9",
      "--n-features", "2"], 1, "for a Pipeline or a meta-estimator, plan the search object itself"),
    (["--like", "svc-pipeline"], 1, "for a Pipeline or a meta-estimator, plan the search object itself"),
])
def test_cli_errors_name_the_fix(store, args, code, message):
    r = run(*args, store=store)
    assert r.exit_code == code and message in r.output, r.output


def test_cli_without_history_says_time_unknown(tmp_path):
    r = run("--estimator", "sklearn.svm.SVC", "--grid", '{"C": [1, 2]}', "--n-samples", "100",
            "--n-features", "3", store=tmp_path / "empty")
    assert r.exit_code == 0, r.output
    assert "4 folds" not in r.output and "= 11 fits; time unknown: no recorded folds of SVC on 3 features" in r.output


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("est, grid", [
    (SVC(class_weight={0: 1.0, 1: 2.0, 2: 1.0}), GRID),
    (MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=20, random_state=0), {"alpha": [1e-4, 1e-2]}),
], ids=["dict", "tuple"])
def test_a_fixed_dict_or_tuple_param_matches_its_recorded_folds(est, grid, tmp_path):
    """Fixed params are compared as hptrack.sklearn records them: a search with a dict
    (class_weight) or a tuple (hidden_layer_sizes) finds its own recorded folds as the same config."""
    X, y = load_iris(return_X_y=True)
    hs.track(GridSearchCV(est, grid, cv=3, refit=False), name="recorded", store=tmp_path).fit(X, y)
    p = plan(GridSearchCV(est, grid, cv=3, refit=False), X, y, store=tmp_path, n_jobs=1)
    assert p.n_fits == 3 * len(list(ParameterGrid(grid)))
    assert p.exact_folds == p.n_fits, p.notes
