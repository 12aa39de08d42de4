"""Importance on real material (issue 14): Optuna studies recorded live, a
GridSearchCV over estimators, intermediate reports read at a budget, a
one-param search; each checked against an independent computation."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import optuna
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge, SGDClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn as hs
from hptrack.analysis import importance
from hptrack.analysis.source import design
from hptrack.optuna import Callback

optuna.logging.set_verbosity(optuna.logging.WARNING)
IRIS = load_iris(return_X_y=True)
FAST = {"n_members": 8, "n_trees": 60}   # a small surrogate where the test is not about defaults


def iris_objective(trial):
    """Optuna's canonical example: SVC or RandomForest on iris, 3-fold accuracy."""
    classifier = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if classifier == "SVC":
        svc_c = trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
        model = SVC(C=svc_c, gamma="auto")
    else:
        rf_max_depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
        model = RandomForestClassifier(max_depth=rf_max_depth, n_estimators=10, random_state=0)
    return cross_val_score(model, *IRIS, cv=3).mean()


@pytest.fixture(scope="module")
def iris_store(tmp_path_factory):
    """The iris study through both live paths: @hptrack.track and the Callback."""
    store = str(tmp_path_factory.mktemp("iris"))
    st0 = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    st0.optimize(hptrack.track("iris-track", store=store, direction="maximize")(iris_objective), n_trials=40)
    st1 = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=1))
    st1.optimize(iris_objective, n_trials=40,
                 callbacks=[Callback("iris-callback", store=store)])
    hptrack.Writer.for_store(store).flush()
    return store


@pytest.mark.parametrize("name", ["iris-track", "iris-callback"])
def test_log_scale_comes_from_the_trials_distributions(iris_store, name):
    params = {p.name: p for p in design(name, iris_store).params}
    assert params["svc_c"].log and params["rf_max_depth"].log
    # the bounds are the suggest's own, on the log10 scale
    assert (params["svc_c"].low, params["svc_c"].high) == (-10, 10)


@pytest.fixture(scope="module")
def iris_spreads():
    """Independent of any surrogate: the objective's variance over an evenly spaced grid of
    each conditional param's (log) range, evaluated directly."""
    svc = np.var([cross_val_score(SVC(C=c, gamma="auto"), *IRIS, cv=3).mean()
                  for c in np.logspace(-10, 10, 9)])
    rf = np.var([cross_val_score(RandomForestClassifier(max_depth=m, n_estimators=10, random_state=0),
                                 *IRIS, cv=3).mean() for m in (2, 4, 8, 16, 32)])
    return svc, rf


@pytest.mark.parametrize("name", ["iris-track", "iris-callback"])
def test_iris_ranking_matches_the_objective_itself(iris_store, iris_spreads, name):
    df = importance(name, store=iris_store, seed=0)
    frac = dict(zip(df["param"], df["variance_fraction"]))
    assert all(0 <= v <= 1 for v in frac.values()), frac
    assert sum(frac.values()) <= 1 + 1e-9
    svc, rf = iris_spreads
    assert svc > 10 * rf
    assert frac["svc_c"] > frac["rf_max_depth"], df
    assert df["param"][0] != "rf_max_depth", df


@pytest.fixture(scope="module")
def wine_study(tmp_path_factory):
    """An SVC on wine where C dominates (gamma fixed); random sampling, tracked live."""
    store = str(tmp_path_factory.mktemp("wine"))
    X, y = load_wine(return_X_y=True)

    def objective(trial):
        c = trial.suggest_float("C", 1e-4, 1e4, log=True)
        tol = trial.suggest_float("tol", 1e-5, 1e-1, log=True)
        shrinking = trial.suggest_categorical("shrinking", [True, False])
        model = make_pipeline(StandardScaler(), SVC(C=c, tol=tol, shrinking=shrinking))
        return cross_val_score(model, X, y, cv=3).mean()

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(hptrack.track("wine-svc", store=store, direction="maximize")(objective), n_trials=40)
    hptrack.Writer.for_store(store).flush()
    return store, study


def test_top_param_agrees_with_optunas_own_evaluators(wine_study):
    store, study = wine_study
    ours = importance("wine-svc", store=store, seed=0)
    evaluators = [optuna.importance.FanovaImportanceEvaluator(seed=0)]
    if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):
        evaluators.append(optuna.importance.PedAnovaImportanceEvaluator())
    for ev in evaluators:
        theirs = optuna.importance.get_param_importances(study, evaluator=ev)
        assert ours["param"][0] == next(iter(theirs)) == "C", (type(ev).__name__, theirs, ours)


def test_report_importance_is_the_librarys(iris_store):
    from hptrack.analysis.report import build

    r = build(["iris-track"], store=iris_store, seed=0)
    got = r.searches[0].importance
    want = importance("iris-track", store=iris_store, seed=0)
    assert got is not None, r.searches[0].importance_note
    assert got.equals(want), (got, want)
    assert r.searches[0].importance_stability.startswith("top param ")


# --- item 2: estimators as grid values --------------------------------------------
@pytest.fixture(scope="module")
def digits_pipe_store(tmp_path_factory):
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import SelectKBest
    from sklearn.svm import LinearSVC

    store = str(tmp_path_factory.mktemp("digits"))
    X, y = load_digits(return_X_y=True)
    pipe = Pipeline([("reduce_dim", "passthrough"), ("clf", LinearSVC(max_iter=2000))])
    grid = {"reduce_dim": [PCA(8), SelectKBest(k=8)], "clf__C": [0.01, 0.1, 1, 10]}
    with np.errstate(all="ignore"), pytest.warns(Warning):
        gs = hs.track(GridSearchCV(pipe, grid, cv=3), name="digits-pipe", store=store).fit(X, y)
    return store, gs.cv_results_


@pytest.mark.parametrize("method", ["fanova", "permutation", "impurity"])
def test_estimators_as_grid_values(digits_pipe_store, method):
    store, cv = digits_pipe_store
    df = importance("digits-pipe", store=store, method=method, seed=0, **(FAST if method == "fanova" else {}))
    # independent: cv_results_ by hand, the spread of mean scores between the two reducers
    # is far wider than between the values of C
    scores = cv["mean_test_score"]
    by_dim = [scores[[type(r).__name__ == k for r in cv["param_reduce_dim"]]].mean()
              for k in ("PCA", "SelectKBest")]
    by_c = [scores[np.asarray(cv["param_clf__C"], float) == c].mean() for c in (0.01, 0.1, 1, 10)]
    assert np.ptp(by_dim) > 3 * np.ptp(by_c)
    assert df["param"][0] == "reduce_dim", df


def test_estimator_categories_have_readable_labels(digits_pipe_store):
    from hptrack.analysis import marginals

    store, _ = digits_pipe_store
    curve = marginals("digits-pipe", "reduce_dim", store=store, **FAST)
    labels = curve["value"].to_list()
    assert len(labels) == 2 and any("PCA" in v for v in labels) and any("SelectKBest" in v for v in labels)


def test_dict_and_list_categories_in_a_table():
    rng = np.random.default_rng(0)
    kinds = [{"kernel": "rbf", "gamma": 0.1}, {"kernel": "linear"}]
    rows = [{"cfg": kinds[i % 2], "layers": [8] * (1 + i % 3), "x": float(rng.random()),
             "value": 3.0 * (i % 2) + float(rng.random()) * 0.1} for i in range(40)]
    df = pl.DataFrame(rows)
    out = importance(df, **FAST)
    assert out["param"][0] == "cfg"


# --- item 3: canonical row order --------------------------------------------------
@st.composite
def _permutations(draw, n):
    return draw(st.permutations(range(n)))


@pytest.fixture(scope="module")
def iris_table(iris_store):
    return hptrack.trials("iris-track", store=iris_store)


@pytest.fixture(scope="module")
def iris_answers(iris_table):
    return {m: importance(iris_table, seed=3, method=m, n_members=4, n_trees=30)
            for m in ("fanova", "impurity")}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=_permutations(40), method=st.sampled_from(["fanova", "impurity"]))
def test_row_order_does_not_change_the_answer(iris_table, iris_answers, order, method):
    shuffled = importance(iris_table[list(order)], seed=3, method=method, n_members=4, n_trees=30)
    assert shuffled.equals(iris_answers[method])


@pytest.fixture(scope="module")
def sgd_store(tmp_path_factory):
    """SGD on digits with a validation accuracy reported per epoch (a real learning curve)."""
    store = str(tmp_path_factory.mktemp("sgd"))
    X, y = load_digits(return_X_y=True)
    Xtr, Xva, ytr, yva = train_test_split(X / 16, y, test_size=0.3, random_state=0)
    rng = np.random.default_rng(0)
    with hptrack.search("sgd-epochs", strategy="random", direction="maximize", store=store,
                        space={"alpha": {"low": 1e-6, "high": 1e-1, "log": True},
                               "eta0": {"low": 1e-4, "high": 1.0, "log": True}}) as s:
        for _ in range(30):
            p = {"alpha": float(10 ** rng.uniform(-6, -1)), "eta0": float(10 ** rng.uniform(-4, 0))}
            clf = SGDClassifier(alpha=p["alpha"], learning_rate="constant", eta0=p["eta0"], random_state=0)
            with s.trial(p) as t:
                for epoch in range(4):
                    clf.partial_fit(Xtr, ytr, classes=np.arange(10))
                    t.report(epoch, clf.score(Xva, yva))
                t.complete(clf.score(Xva, yva))
    hptrack.Writer.for_store(store).flush()
    return store


@pytest.mark.slow  # passed on the old code too: the row-permutation property test is the catcher
def test_budget_is_reproducible_in_fresh_processes(sgd_store):
    cmd = [sys.executable, "-m", "hptrack.cli", "--store", sgd_store, "importance", "sgd-epochs",
           "--budget", "2", "--method", "impurity", "--format", "json"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, timeout=120) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)


def test_budget_table_is_in_trial_order(sgd_store):
    from hptrack.analysis.source import read

    table, _, _ = read("sgd-epochs", sgd_store, budget=2)
    assert table["trial_number"].to_list() == sorted(table["trial_number"].to_list())


# --- item 1 (cause) and item 4: fractions are fractions ------------------------------
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), d=st.integers(1, 4), n=st.integers(8, 40),
       spike=st.floats(1e-9, 1e-2))
def test_fractions_lie_in_the_unit_interval(seed, d, n, spike):
    # designs where the objective changes inside a sliver of one param's range (what a
    # log-scaled param read on the linear scale looks like): the variance must still add up
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    X[: n // 2, 0] *= spike
    y = np.where(X[:, 0] < spike, rng.normal(0, 1, n), 0.0) + rng.normal(0, 0.01, n) * X[:, -1]
    table = pl.DataFrame({**{f"p{j}": X[:, j] for j in range(d)}, "value": y})
    df = importance(table, seed=seed, n_members=4, n_trees=40)
    frac = df["variance_fraction"].to_numpy()
    assert (frac >= 0).all() and (frac <= 1).all(), df
    assert frac.sum() <= 1 + 1e-9, df
    assert (df["ci_low"] <= df["ci_high"]).all() and (df["ci_high"] <= 1).all()


@pytest.fixture(scope="module")
def ridge_store(tmp_path_factory):
    """A one-param search: Ridge's alpha on diabetes."""
    store = str(tmp_path_factory.mktemp("ridge"))
    X, y = load_diabetes(return_X_y=True)

    def objective(trial):
        alpha = trial.suggest_float("alpha", 1e-4, 1e3, log=True)
        return cross_val_score(Ridge(alpha=alpha), X, y, cv=3).mean()

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(hptrack.track("ridge-alpha", store=store, direction="maximize")(objective), n_trials=25)
    hptrack.Writer.for_store(store).flush()
    return store


def test_one_param_search_explains_at_most_everything(ridge_store):
    df = importance("ridge-alpha", store=ridge_store, seed=0)
    assert df["variance_fraction"][0] <= 1.0
    assert df["variance_fraction"][0] == pytest.approx(1.0, abs=1e-9)  # one param explains it all


# --- item 5: uncertainty -------------------------------------------------------------
@pytest.mark.parametrize("method", ["fanova", "permutation", "impurity"])
def test_every_importance_has_a_bootstrap_interval(wine_study, method):
    store, _ = wine_study
    df = importance("wine-svc", store=store, method=method, seed=0)
    assert {"ci_low", "ci_high"} <= set(df.columns)
    assert (df["ci_low"] <= df["ci_high"]).all()
    if method != "permutation":   # shares: so are their intervals
        assert (df["ci_low"] >= 0).all() and (df["ci_high"] <= 1).all()
    assert df.filter(pl.col("param") == "C")["ci_low"][0] > df.filter(pl.col("param") == "tol")["ci_high"][0]
    if method != "fanova":   # (fanova's seeding: test_sensitivity.py)
        assert df.equals(importance("wine-svc", store=store, method=method, seed=0))


def test_stability_is_stated_and_low_on_few_trials(wine_study, iris_table):
    from hptrack.analysis import stability

    store, _ = wine_study
    s = stability("wine-svc", store=store, seed=0)
    assert s.top == "C" and s.top_share >= 0.8 and "stable" in s.note and "unstable" not in s.note
    few = stability(iris_table.head(10), seed=0, **FAST)
    assert few.n_trials < 30 and "ranking unstable" in few.note


def test_cli_importance_shows_interval_and_stability(wine_study):
    from click.testing import CliRunner

    from hptrack.cli.main import cli

    store, _ = wine_study
    r = CliRunner().invoke(cli, ["--store", store, "importance", "wine-svc", "--format", "table"])
    assert r.exit_code == 0, r.output
    assert "ci_low" in r.output and "top param" in r.output
    r = CliRunner().invoke(cli, ["--store", store, "importance", "wine-svc", "--method", "impurity",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)   # the statement goes to stderr: stdout stays JSON
    assert {"ci_low", "ci_high"} <= set(rows[0]) and "top param" in r.stderr


def test_rank_agreement_with_optuna_fanova():
    from scipy.stats import spearmanr

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(t):
        p = [t.suggest_float(f"p{i}", 0, 1) for i in range(4)]
        return 4 * p[0] ** 2 + 2 * math.sin(3 * p[1]) + 0.7 * p[2] + 0.05 * p[3]

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=200)
    theirs = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    table = pl.DataFrame([{**t.params, "value": t.value} for t in study.trials])
    ours = importance(table, n_trees=150, n_members=2)
    mine = dict(zip(ours["param"], ours["share"]))
    names = sorted(theirs)
    assert ours["param"][0] == max(theirs, key=theirs.get)
    rho = spearmanr([theirs[n] for n in names], [mine[n] for n in names]).statistic
    assert rho >= 0.8
