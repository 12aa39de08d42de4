"""Studies for checking the analysis against independent computations: objectives
where one parameter clearly dominates (importance), and repeated seeds of three
strategies on Optuna's quickstart function (compare's Friedman test)."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

import hptrack

_DX, _DY = load_diabetes(return_X_y=True)


def log_dominant(trial):
    """The learning rate (log scale) decides; momentum and layers barely matter."""
    lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 1.0)
    layers = trial.suggest_int("layers", 1, 8)
    return (math.log10(lr) + 3.0) ** 2 + 0.1 * momentum + 0.01 * layers


def ridge_diabetes(trial):
    """Ridge's alpha (log scale) decides; tol and the solver do not."""
    alpha = trial.suggest_float("alpha", 1e-3, 1e4, log=True)
    tol = trial.suggest_float("tol", 1e-6, 1e-2, log=True)
    solver = trial.suggest_categorical("solver", ["svd", "cholesky", "lsqr"])
    return float(-cross_val_score(Ridge(alpha=alpha, tol=tol, solver=solver), _DX, _DY, cv=3,
                                  scoring="neg_mean_squared_error").mean())


IMPORTANCE = {"importance-log-synthetic": (log_dominant, "lr"),
              "importance-ridge-diabetes": (ridge_diabetes, "alpha")}
IMPORTANCE_TRIALS = 30


def quadratic(trial):
    """Optuna's quickstart objective, in two dimensions."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("y", -10, 10)
    return (x - 2) ** 2 + (y + 1) ** 2


GRID = {"x": np.linspace(-10, 10, 5).tolist(), "y": np.linspace(-10, 10, 4).tolist()}
SAMPLERS = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
    "grid": lambda seed: optuna.samplers.GridSampler(GRID, seed=seed),
}
SEEDS = (0, 1, 2, 3)
COMPARE_TRIALS = 15


@dataclass
class AnalysisMaterial:
    store: str
    studies: dict            # search name -> optuna.Study
    compare_names: dict      # (strategy, seed) -> search name


def _run(name, objective, sampler, store, n_trials, seed=None, direction="minimize"):
    study = optuna.create_study(study_name=name, sampler=sampler, direction=direction)
    study.optimize(hptrack.track(name, store=store, seed=seed)(objective), n_trials=n_trials)
    return study


def build(root) -> AnalysisMaterial:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = os.path.join(root, "store")
    studies, compare_names = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (objective, _) in IMPORTANCE.items():
            studies[name] = _run(name, objective, optuna.samplers.RandomSampler(seed=0), store,
                                 IMPORTANCE_TRIALS)
        for strategy, make in SAMPLERS.items():
            for seed in SEEDS:
                name = f"quadratic-{strategy}-s{seed}"
                studies[name] = _run(name, quadratic, make(seed), store, COMPARE_TRIALS, seed=seed)
                compare_names[(strategy, seed)] = name
    return AnalysisMaterial(store, studies, compare_names)
