"""hptrack.optuna.warm_start: recorded trials added to a new study, checked against the
study that made them."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy.stats import loguniform
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn as hs
from hptrack.analysis import compare
from hptrack.optuna import Callback, WarmStartError, import_study, warm_start

optuna.logging.set_verbosity(optuna.logging.WARNING)
X, Y = load_wine(return_X_y=True)
FIELDS = ("state", "value", "values", "params", "distributions", "intermediate_values")


def knn(trial):
    """KNN on wine, a report per fold: the median pruner stops the weak ones."""
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(
        n_neighbors=trial.suggest_int("n_neighbors", 1, 30),
        weights=trial.suggest_categorical("weights", ["uniform", "distance"]),
        p=trial.suggest_float("p", 1.0, 2.0)))
    scores = cross_val_score(model, X, Y, cv=3)
    for k in range(len(scores)):
        trial.report(float(scores[:k + 1].mean()), k)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(scores.mean())


def new_study(seed=1, direction="maximize"):
    return optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    store = tmp_path_factory.mktemp("warm")
    study = new_study(seed=0)
    with Callback("knn-wine", store=store) as cb:
        study.optimize(knn, n_trials=24, callbacks=[cb])
    return store, study


def same(a, b):
    return {f: getattr(a, f) for f in FIELDS} == {f: getattr(b, f) for f in FIELDS}


def test_warm_started_trials_equal_the_recorded_ones(source):
    store, old = source
    assert any(t.state.name == "PRUNED" for t in old.trials)
    study = new_study()
    got = warm_start(study, "knn-wine", store, states=("COMPLETE", "PRUNED"))
    assert got.added == len(old.trials) and got.already == 0
    assert all(same(a, b) for a, b in zip(old.trials, study.trials))
    assert {t.user_attrs["hptrack_source_search"] for t in study.trials} == {got.searches[0]}
    # idempotent: the same trials are not added twice
    again = warm_start(study, ["knn-wine", "knn-wine"], store, states=("COMPLETE", "PRUNED"))
    assert again.added == 0 and again.already == 2 * len(old.trials)
    assert len(study.trials) == len(old.trials)


def test_complete_only_by_default_and_new_trials_recorded_alone(source, tmp_path):
    store, old = source
    study = new_study()
    got = warm_start(study, "knn-wine", store)
    complete = [t for t in old.trials if t.state.name == "COMPLETE"]
    assert got.added == len(complete) and got.left_out == {"state pruned": len(old.trials) - len(complete)}
    assert all(same(a, b) for a, b in zip(complete, study.trials))
    with Callback("knn-warm", store=tmp_path) as cb:
        study.optimize(knn, n_trials=4, callbacks=[cb])
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT n_trials, payload ->> '$.warm_started_from[0]' FROM searches").fetchall() == [
        (4, got.searches[0])]
    # an import of the whole study marks the added trials as copies: compare leaves them out
    storage = optuna.storages.InMemoryStorage()
    copy = optuna.create_study(storage=storage, study_name="copy", direction="maximize")
    copy.add_trials(study.trials)
    import_study(storage, "copy", tmp_path)
    assert con.close() is None
    (row,) = compare(["copy"], store=tmp_path, by="trials").per_search.to_dicts()
    finished = [t for t in study.trials[len(complete):] if t.state.is_finished()]
    assert row["n_trials"] == len(finished)


def test_other_direction_is_refused(source):
    store, _ = source
    study = new_study(direction="minimize")
    with pytest.raises(WarmStartError, match=r"direction\(s\) \['maximize'\].*\['minimize'\]"):
        warm_start(study, "knn-wine", store)
    assert study.trials == []


def test_a_value_outside_the_given_space_is_refused_or_skipped(source):
    store, old = source
    space = {"n_neighbors": IntDistribution(1, 10), "weights": CategoricalDistribution(["uniform", "distance"]),
             "p": FloatDistribution(1.0, 2.0)}
    outside = [t for t in old.trials if t.state.name == "COMPLETE" and t.params["n_neighbors"] > 10]
    assert outside
    study = new_study()
    with pytest.raises(WarmStartError, match=r"n_neighbors=\d+.*outside the study's IntDistribution"):
        warm_start(study, "knn-wine", store, distributions=space)
    assert study.trials == []
    got = warm_start(study, "knn-wine", store, distributions=space, outside="skip")
    assert got.left_out["outside the space"] == len(outside)
    assert all(t.distributions == space for t in study.trials)
    with pytest.raises(WarmStartError, match="param 'p', which distributions= lacks"):
        warm_start(new_study(), "knn-wine", store, distributions={"n_neighbors": IntDistribution(1, 30),
                                                                 "weights": space["weights"]})


def test_a_distribution_the_study_holds_otherwise_is_refused(source):
    store, _ = source
    study = new_study()
    study.add_trial(optuna.trial.create_trial(params={"weights": "uniform"}, value=0.5, distributions={
        "weights": CategoricalDistribution(["uniform"])}))
    with pytest.raises(WarmStartError, match="param 'weights'.*pass distributions="):
        warm_start(study, "knn-wine", store)
    assert len(study.trials) == 1


def test_sklearn_searches_give_their_space(tmp_path):
    grid = hs.track(GridSearchCV(SVC(), {"C": [0.1, 1.0, 10.0], "kernel": ["rbf", "linear"]}, cv=3),
                    name="svc-grid", store=tmp_path).fit(X, Y)
    rand = hs.track(RandomizedSearchCV(SVC(), {"C": loguniform(0.01, 100.0)}, n_iter=5, cv=3, random_state=0),
                    name="svc-random", store=tmp_path).fit(X, Y)
    study = new_study()
    warm_start(study, "svc-grid", tmp_path)
    assert [(t.params, t.value) for t in study.trials] == [
        (dict(p), v) for p, v in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"])]
    assert study.trials[0].distributions == {"C": CategoricalDistribution([0.1, 1.0, 10.0]),
                                             "kernel": CategoricalDistribution(["rbf", "linear"])}
    other = new_study()
    warm_start(other, "svc-random", tmp_path)
    assert [t.params["C"] for t in other.trials] == [p["C"] for p in rand.cv_results_["params"]]
    assert other.trials[0].distributions == {"C": FloatDistribution(0.01, 100.0, log=True)}
    hs.track(GridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc": [SVC(), SVC(C=3)]}, cv=3),
             name="objects", store=tmp_path).fit(X, Y)
    with pytest.raises(WarmStartError, match="param 'svc' of search 'objects' has no distribution"):
        warm_start(new_study(), "objects", tmp_path)
