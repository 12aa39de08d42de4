"""Real scikit-learn material: searches in the style of scikit-learn's gallery, each
fitted once through ``hptrack.sklearn.track`` into one store."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import pandas as pd
from scipy.stats import loguniform, randint
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes Halving* importable)
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
    RepeatedStratifiedKFold,
    StratifiedKFold,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

import hptrack.sklearn

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)
_CX, _CY = load_breast_cancer(return_X_y=True)
CANCER = (_CX, _CY)
_DX, _DY = load_digits(return_X_y=True)
DIGITS = (_DX[:600], _DY[:600])
RSKF = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)


def cancer_frame():
    """A small mixed table from breast_cancer: four numeric columns and a
    categorical one (tumour size as text), as a user's dataframe would be."""
    data = load_breast_cancer(as_frame=True)
    X = data.frame[["mean texture", "mean smoothness", "mean concavity", "mean symmetry"]].copy()
    X["size"] = pd.cut(data.frame["mean radius"], bins=[0, 12, 16, 100],
                       labels=["small", "medium", "large"]).astype(str)
    return X, data.target.to_numpy()


def _column_pipeline():
    prep = ColumnTransformer([
        ("num", StandardScaler(), ["mean texture", "mean smoothness", "mean concavity",
                                   "mean symmetry"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
    ])
    return Pipeline([("prep", prep), ("clf", RidgeClassifier())])


def searches():
    """name -> (search, X, y). Small grids, small CV, fast estimators."""
    # RidgeClassifier, not LogisticRegression: a closed-form fit, 50x cheaper here
    scaled = make_pipeline(StandardScaler(), RidgeClassifier())
    return {
        "grid-multimetric-cancer": (GridSearchCV(
            scaled, {"ridgeclassifier__alpha": [0.1, 10.0, 100.0, 1000.0]},
            scoring={"acc": "accuracy", "f1": "f1", "roc": "roc_auc"}, refit="f1",
            cv=StratifiedKFold(4), return_train_score=True), *CANCER),
        "random-loguniform-digits": (RandomizedSearchCV(
            SVC(), {"C": loguniform(1e-2, 1e2), "gamma": loguniform(1e-4, 1e-1)},
            n_iter=8, cv=3, random_state=0), *DIGITS),
        "halving-grid-cancer": (HalvingGridSearchCV(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": [1, 2, 3, 4, None], "min_samples_leaf": [1, 5]},
            factor=2, cv=3, random_state=0), *CANCER),
        "halving-random-wine": (HalvingRandomSearchCV(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": randint(1, 8), "criterion": ["gini", "entropy"]},
            n_candidates=8, factor=2, min_resources=30, cv=3, random_state=0), *WINE),
        "columns-pipeline-cancer": (GridSearchCV(
            _column_pipeline(),
            {"prep__num__with_mean": [True, False], "clf__alpha": [0.1, 100.0],
             "clf__class_weight": [None, "balanced"]}, scoring="balanced_accuracy", cv=3),
            *cancer_frame()),
        "estimators-as-values-digits": (GridSearchCV(
            Pipeline([("reduce_dim", "passthrough"), ("clf", KNeighborsClassifier())]),
            {"reduce_dim": [PCA(n_components=8, random_state=0), SelectKBest(chi2, k=8)],
             "clf__n_neighbors": [3, 7]}, cv=3), *DIGITS),
        "rskf-svc-iris": (GridSearchCV(
            SVC(), {"C": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}, cv=RSKF), *IRIS),
    }


NESTED_INNER = GridSearchCV(SVC(), {"C": [0.1, 1.0, 10.0], "kernel": ["rbf", "linear"]}, cv=3)
NESTED_OUTER = StratifiedKFold(3)


@dataclass
class Fitted:
    tracked: object          # the TrackedSearchCV after fit
    X: object
    y: object
    seconds: float

    @property
    def cv_results(self) -> dict:
        return self.tracked.cv_results_


@dataclass
class SklearnMaterial:
    store: str
    fitted: dict                              # name -> Fitted
    nested: object = None                     # NestedCVResult
    nested_by_hand: list = field(default_factory=list)  # [(inner GridSearchCV, outer score)]


def _nested_by_hand(X, y):
    """The nested loop written out: what nested_cv must reproduce."""
    out = []
    for train, test in NESTED_OUTER.split(X, y):
        inner = clone(NESTED_INNER).fit(X[train], y[train])
        out.append((inner, float(inner.score(X[test], y[test]))))
    return out


def build(root) -> SklearnMaterial:
    store = os.path.join(root, "store")
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning and friends
        for name, (cv, X, y) in searches().items():
            t0 = time.perf_counter()
            tracked = hptrack.sklearn.track(cv, name=name, store=store).fit(X, y)
            fitted[name] = Fitted(tracked, X, y, time.perf_counter() - t0)
        nested = hptrack.sklearn.nested_cv(clone(NESTED_INNER), *IRIS, outer_cv=NESTED_OUTER,
                                           name="nested-iris", store=store)
        by_hand = _nested_by_hand(*IRIS)
    return SklearnMaterial(store, fitted, nested, by_hand)
