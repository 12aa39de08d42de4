"""PED-ANOVA (issue #17, 5) against Optuna's own PedAnovaImportanceEvaluator, the
reference: on real studies (iris with a conditional space and a log-int, wine with log
floats and a bool), and on random studies of every kind of distribution (hypothesis)."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.datasets import load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import hptrack.optuna
from hptrack.analysis import importance, stability

optuna.logging.set_verbosity(optuna.logging.WARNING)
Evaluator = pytest.importorskip("optuna.importance").PedAnovaImportanceEvaluator


def optunas(study) -> dict:
    """Optuna's raw (unnormalised) PED-ANOVA importances."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "some regimes have less than 2 trials" and the like
        return Evaluator().evaluate(study)


def ours(store, name, **kw) -> dict:
    df = importance(name, store=store, method="ped_anova", **kw)
    return dict(zip(df["param"], df["importance"]))


def same(a: dict, b: dict) -> None:
    assert set(a) == set(b), (a, b)
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), (k, a, b)


def _iris(trial):
    X, y = load_iris(return_X_y=True)
    if trial.suggest_categorical("classifier", ["SVC", "RandomForest"]) == "SVC":
        model = SVC(C=trial.suggest_float("svc_c", 1e-10, 1e10, log=True), gamma="auto")
    else:
        model = RandomForestClassifier(max_depth=trial.suggest_int("rf_max_depth", 2, 32, log=True),
                                       n_estimators=10, random_state=0)
    return cross_val_score(model, X, y, cv=3).mean()


def _wine(trial):
    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), SVC(C=trial.suggest_float("C", 1e-4, 1e4, log=True),
                                                tol=trial.suggest_float("tol", 1e-5, 1e-1, log=True),
                                                shrinking=trial.suggest_categorical("shrinking", [True, False])))
    return cross_val_score(model, X, y, cv=3).mean()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("ped"))
    studies = {}
    for name, objective, sampler in [("iris", _iris, optuna.samplers.TPESampler(seed=0)),
                                     ("wine", _wine, optuna.samplers.RandomSampler(seed=0))]:
        study = optuna.create_study(direction="maximize", sampler=sampler, study_name=name)
        study.optimize(objective, n_trials=50)
        hptrack.optuna.import_study(study._storage, name, store=store)
        studies[name] = study
    return store, studies


@pytest.mark.parametrize("name", ["iris", "wine"])
def test_ped_anova_is_optunas_evaluator_on_real_studies(real, name):
    store, studies = real
    theirs = optunas(studies[name])
    same(ours(store, name), theirs)
    # and the same ranking as Optuna's default get_param_importances prints
    default = optuna.importance.get_param_importances(studies[name])
    df = importance(name, store=store, method="ped_anova")
    assert list(df.filter(df["importance"] > 0)["param"]) == [k for k, v in default.items() if v > 0]


def test_ped_anova_has_a_bootstrap_interval_and_a_stability_statement(real):
    store, _ = real
    st_ = stability("wine", store=store, method="ped_anova", seed=0)
    df = st_.importance
    assert (df["ci_low"] <= df["importance"]).all() and (df["importance"] <= df["ci_high"]).all()
    assert (df["std"] > 0).any() and st_.n_boot == 20
    assert st_.top == df["param"][0] and "top param" in st_.note


def test_ped_anova_of_a_table_needs_the_direction():
    import polars as pl

    df = pl.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "value": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="direction='maximize' or 'minimize'"):
        importance(df, method="ped_anova")
    assert importance(df, method="ped_anova", direction="minimize").height == 1


@st.composite
def studies(draw):
    """A study of random distributions (float, log float, int, log int, categorical, some
    conditional), values with ties, either direction."""
    kinds = draw(st.lists(st.sampled_from(["float", "logfloat", "int", "logint", "cat", "cond"]),
                          min_size=1, max_size=4))
    dists = {}
    for i, k in enumerate(kinds):
        lo = draw(st.sampled_from([1, 2, 3]))
        dists[f"p{i}"] = {"float": FloatDistribution(-lo, lo * 2.5),
                          "logfloat": FloatDistribution(10.0 ** -lo, 10.0 ** lo, log=True),
                          "int": IntDistribution(lo, lo + draw(st.sampled_from([0, 1, 5, 49, 98, 200]))),
                          "logint": IntDistribution(lo, lo * draw(st.sampled_from([4, 64, 1000])), log=True),
                          "cat": CategoricalDistribution(["a", "b", "c"][:draw(st.integers(1, 3))]),
                          "cond": FloatDistribution(0.0, 1.0)}[k]
    n = draw(st.integers(4, 120))   # the design needs 4 usable trials
    seed = draw(st.integers(0, 2 ** 16))
    return kinds, dists, n, seed, draw(st.sampled_from(["maximize", "minimize"])), draw(st.sampled_from([None, 2]))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(studies())
# ints landing exactly on the midpoints of Optuna's grid (span 98 on 50 cells: every odd
# offset), which go to the lower cell; log-ints of every power of two
@example((["int", "logint", "cat"], {"p0": IntDistribution(1, 99), "p1": IntDistribution(1, 1024, log=True),
                                     "p2": CategoricalDistribution(["a", "b", "c"])}, 120, 7, "minimize", 1))
def test_ped_anova_is_optunas_evaluator_on_random_studies(spec):
    kinds, dists, n, seed, direction, digits = spec
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        params, used = {}, {}
        for (name, dist), kind in zip(dists.items(), kinds):
            if kind == "cond" and rng.random() < 0.4:
                continue            # a conditional param, absent in some trials
            if isinstance(dist, CategoricalDistribution):
                v = dist.choices[rng.integers(len(dist.choices))]
            elif isinstance(dist, IntDistribution):
                v = int(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high + 1)))) if dist.log else \
                    int(rng.integers(dist.low, dist.high + 1))
                v = min(max(v, dist.low), dist.high)
            else:
                v = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high)))) if dist.log else \
                    float(rng.uniform(dist.low, dist.high))
            params[name], used[name] = v, dist
        value = float(rng.normal()) if digits is None else round(float(rng.normal()), digits)  # ties
        trials.append(optuna.trial.create_trial(params=params, distributions=used, value=value))
    study = optuna.create_study(direction=direction, study_name=f"s{seed}-{n}")
    study.add_trials(trials)
    with tempfile.TemporaryDirectory() as store:   # a store per example: hypothesis reuses tmp_path
        hptrack.optuna.import_study(study._storage, study.study_name, store=store)
        mine = ours(store, study.study_name)
    theirs = optunas(study)
    # a param no trial ever took (every conditional draw skipped) is Optuna's to leave out
    same({k: v for k, v in mine.items() if k in theirs}, theirs)
