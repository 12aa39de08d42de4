"""diagnose's leakage check on real data (issue #17, 3): it warns when preprocessing was
evidently fitted outside the CV, and not on the same data with the preprocessing inside a
Pipeline. Each leaky case also shows what the leak does to the scores it warns about."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn as hs
from hptrack.analysis import diagnose


def _leakage(store, name, search, X, y):
    hs.track(search, name=name, store=store).fit(X, y)
    d = diagnose(name, store=store)
    assert all(w in d.warnings for w in d.leakage)
    return d.leakage


def test_breast_cancer_standardised_before_the_search_warns_and_in_a_pipeline_does_not(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    grid = {"C": [0.1, 1, 10]}
    outside = _leakage(tmp_path, "outside", GridSearchCV(SVC(), grid, cv=5), StandardScaler().fit_transform(X), y)
    assert len(outside) == 1 and "mean 0 and standard deviation 1" in outside[0]
    assert "not a Pipeline" in outside[0] and "make_pipeline(StandardScaler()" in outside[0]
    inside = _leakage(tmp_path, "inside", GridSearchCV(make_pipeline(StandardScaler(), SVC()),
                                                       {"svc__C": grid["C"]}, cv=5), X, y)
    assert inside == []
    raw = _leakage(tmp_path, "raw", GridSearchCV(SVC(), grid, cv=3), X, y)  # unscaled, no pipeline
    assert raw == []


def test_wine_min_max_scaled_before_a_knn_search_warns_and_in_a_pipeline_does_not(tmp_path):
    X, y = load_wine(return_X_y=True)
    grid = {"n_neighbors": [1, 5, 15]}
    outside = _leakage(tmp_path, "outside", GridSearchCV(KNeighborsClassifier(), grid, cv=5),
                       MinMaxScaler().fit_transform(X), y)
    assert len(outside) == 1 and "spans exactly [0, 1]" in outside[0]
    inside = _leakage(tmp_path, "inside", GridSearchCV(make_pipeline(MinMaxScaler(), KNeighborsClassifier()),
                                                       {"kneighborsclassifier__n_neighbors": grid["n_neighbors"]},
                                                       cv=5), X, y)
    assert inside == []


def test_a_pipeline_without_a_scaler_does_not_excuse_x_scaled_before_it(tmp_path):
    from sklearn.decomposition import PCA

    X, y = load_breast_cancer(return_X_y=True)
    out = _leakage(tmp_path, "pca", GridSearchCV(make_pipeline(PCA(5), SVC()), {"svc__C": [1, 10]}, cv=3),
                   StandardScaler().fit_transform(X), y)
    assert len(out) == 1 and "a Pipeline of PCA (no scaler)" in out[0]


def test_data_that_is_only_zeros_and_ones_is_not_called_min_max_scaled(tmp_path):
    X, y = load_digits(return_X_y=True)
    binary = (X > 8).astype(float)            # every column spans [0, 1], and nothing lies inside it
    assert _leakage(tmp_path, "binary", GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 3]}, cv=3),
                    binary, y) == []


def test_a_feature_derived_from_the_target_warns_and_inflates_the_cv_score(tmp_path):
    X, y = load_diabetes(return_X_y=True)     # shipped centred (not unit variance): no scaling warning
    rng = np.random.default_rng(0)
    leaky = np.column_stack([X, y + rng.normal(0, 0.05 * y.std(), len(y))])   # e.g. a target encoding
    grid = {"alpha": [0.01, 0.1, 1.0]}
    cv = KFold(5, shuffle=True, random_state=0)
    honest = _leakage(tmp_path, "honest", GridSearchCV(Ridge(), grid, cv=cv), X, y)
    assert honest == []
    out = _leakage(tmp_path, "leaky", GridSearchCV(Ridge(), grid, cv=cv), leaky, y)
    assert len(out) == 1 and "column 'x10'" in out[0] and "r = 0.99" in out[0]
    # what it warns about: the leaky search's CV score is far above what the honest features give
    best = {n: hptrack.trials(n, store=tmp_path)["value"].max() for n in ("honest", "leaky")}
    assert best["honest"] < 0.55 < 0.95 < best["leaky"]
    assert best["honest"] == pytest.approx(cross_val_score(Ridge(alpha=0.01), X, y, cv=cv).mean(), abs=0.05)


def test_two_class_labels_are_checked_and_many_classes_are_not(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")       # string labels of two classes
    leak = np.column_stack([X, (y == 1) + np.random.default_rng(1).normal(0, 0.01, len(y))])
    out = _leakage(tmp_path, "labels", GridSearchCV(SVC(), {"C": [1]}, cv=3), leak, labels)
    assert len(out) == 1 and "column 'x30'" in out[0]
    Xd, yd = load_digits(return_X_y=True)
    leak10 = np.column_stack([Xd, yd.astype(float)])      # a class code of ten classes has no order
    assert _leakage(tmp_path, "digits", GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1]}, cv=3),
                    leak10, yd) == []


@pytest.mark.parametrize("facts", [None, "standard", [], {"scaled": 3},
                                   {"scaled": "standard", "in_cv": "StandardScaler"}, {"target": "x"},
                                   {"target": {"column": "c", "r": "0.999"}},
                                   {"target": {"r": float("nan")}}, {"scaled": ["minmax"], "target": None}])
def test_hostile_or_damaged_facts_give_no_warning_and_no_error(facts):
    from hptrack.analysis.overfitting import leakage

    out = leakage(facts)
    assert out == [] or (isinstance(facts, dict) and facts.get("in_cv") == "StandardScaler" and len(out) == 1)


@pytest.mark.parametrize("X", [np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), np.array([["a", "b"]] * 5, object),
                               np.zeros((5, 0)), np.ones(5), [[1, 2]], "text"])
def test_unusual_data_records_no_scaling_or_target_facts(X):
    from scipy import sparse

    from hptrack.sklearn._leakage import leakage_facts

    for x in (X, sparse.csr_matrix(np.eye(4))) if isinstance(X, np.ndarray) and X.ndim == 2 and X.size else (X,):
        facts = leakage_facts(x, np.arange(5.0), SVC())
        assert facts == {"scaled": None, "target": None, "in_cv": []}


def test_the_facts_are_recorded_with_the_search_and_read_back_in_sql(tmp_path):
    X, y = load_wine(return_X_y=True)
    est = make_pipeline(StandardScaler(), KNeighborsClassifier())
    hs.track(GridSearchCV(est, {"kneighborsclassifier__n_neighbors": [3]}, cv=3), name="w", store=tmp_path).fit(X, y)
    con = hptrack.connect(tmp_path)
    row = con.sql("SELECT payload ->> '$.leakage.in_cv[0]', payload ->> '$.leakage.scaled' FROM searches").fetchall()
    assert row == [("StandardScaler", None)]
