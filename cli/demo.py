"""The main job on real data (``hptrack demo``, ``make demo``).

Tunes a random forest on scikit-learn's breast_cancer for F1 with four
strategies at an equal budget of candidate configurations, each recorded live
through a real integration (halving and pruned TPE spend less compute on
those candidates; the report compares by compute spent): GridSearchCV,
RandomizedSearchCV and
HalvingRandomSearchCV through ``hptrack.sklearn.track``, and Optuna TPE
through ``@hptrack.track`` on an Optuna objective (fold scores, a report per
fold and a median pruner). Every winner is scored on a held-out test split.
Then the report is printed and written as one HTML file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

GRID = {"n_estimators": [50, 100, 200], "max_depth": [3, 5, 10, None], "min_samples_split": [2, 5]}
QUICK_GRID = {"n_estimators": [10, 30], "max_depth": [3, 5, 10, None], "min_samples_split": [2, 5]}
TASK = "breast_cancer"
METRIC = "f1"


def _space(quick):
    from scipy.stats import randint
    top = 40 if quick else 300
    return top, {"n_estimators": randint(20, top), "max_depth": [3, 5, 10, None],
                 "min_samples_split": randint(2, 11)}


def check_installed() -> None:
    """Raise ImportError naming the ``demo`` extra if Optuna (the TPE strategy) is absent,
    before any search runs."""
    from hptrack.errors import missing_extra

    try:
        import optuna  # noqa: F401
    except ImportError as err:
        raise missing_extra(err, "hptrack demo", "demo") from err


def run(store: StoreLike = None, quick: bool = False, html: str = "report.html", echo: Callable[..., Any] = print,
        seed: int = 0) -> Any:
    """Run the four searches into ``store``, print the report, write ``html``
    (None: no file). Returns the Report."""
    check_installed()
    from sklearn.datasets import load_breast_cancer
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes Halving* importable)
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from hptrack.analysis.report import report


    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    cv = StratifiedKFold(n_splits=3 if quick else 5, shuffle=True, random_state=seed)
    grid = QUICK_GRID if quick else GRID
    budget = len(grid["n_estimators"]) * len(grid["max_depth"]) * len(grid["min_samples_split"])
    top, dists = _space(quick)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = {}
    echo(f"breast_cancer: {len(y_tr)} training rows ({cv.get_n_splits()}-fold CV), {len(y_te)} held out "
         f"for test;\nrandom forest, F1; each strategy gets {budget} candidate configurations")
    for strategy in ("grid", "random", "tpe", "halving"):
        name = names[strategy] = f"demo-{strategy}-{stamp}"
        started = time.perf_counter()
        if strategy == "tpe":
            cv_f1, test_f1, n = _tpe(name, store, X_tr, y_tr, X_te, y_te, cv, budget, top, seed)
        else:
            cv_f1, test_f1, n = _sklearn(strategy, name, store, X_tr, y_tr, X_te, y_te, cv, grid,
                                         dists, budget, seed)
        echo(f"{strategy:>8}: {n:3d} evaluations, best CV F1 {cv_f1:.4f}, test F1 {test_f1:.4f} "
             f"({time.perf_counter() - started:.1f}s)")
    return report(list(names.values()), store=store, html=html)


def _sklearn(strategy, name: str, store, X_tr, y_tr, X_te, y_te, cv, grid, dists, budget, seed):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import (
        GridSearchCV,
        HalvingRandomSearchCV,
        RandomizedSearchCV,
    )

    import hptrack.sklearn

    rf = RandomForestClassifier(random_state=seed)
    search = {
        "grid": lambda: GridSearchCV(rf, grid, scoring=METRIC, cv=cv, n_jobs=-1),
        "random": lambda: RandomizedSearchCV(rf, dists, n_iter=budget, scoring=METRIC, cv=cv,
                                             n_jobs=-1, random_state=seed),
        # min_resources="exhaust": the last rung fits (nearly) every training row, so the
        # finalist's CV score is a full-fidelity result, comparable with the others'
        "halving": lambda: HalvingRandomSearchCV(rf, dists, n_candidates=budget, factor=2,
                                                 min_resources="exhaust", scoring=METRIC, cv=cv,
                                                 n_jobs=-1, random_state=seed),
    }[strategy]()
    tracked = hptrack.sklearn.track(search, name=name, store=store, dataset=TASK, task=TASK)
    tracked.fit(X_tr, y_tr)
    test = hptrack.sklearn.log_test_score(tracked, X_te, y_te, store=store)
    return tracked.best_score_, test, len(tracked.cv_results_["params"])


def _tpe(name: str, store, X_tr, y_tr, X_te, y_te, cv, budget, top, seed):
    """Optuna TPE through @hptrack.track: each fold's F1 is a fold score (for the
    overfitting diagnostics) and the running mean a report (for the pruner)."""
    import numpy as np
    import optuna
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score

    import hptrack
    from hptrack.optuna import hptrack_trial

    splits = list(cv.split(X_tr, y_tr))

    def model(n_estimators, max_depth, min_samples_split):
        return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                      min_samples_split=min_samples_split, random_state=seed, n_jobs=-1)

    @hptrack.track(name, strategy="tpe", metric=METRIC, seed=seed, store=store, dataset=TASK,
                   task=TASK)
    def objective(trial):
        rf = model(trial.suggest_int("n_estimators", 20, top),
                   trial.suggest_categorical("max_depth", [3, 5, 10, None]),
                   trial.suggest_int("min_samples_split", 2, 10))
        scores = []
        for k, (tr, va) in enumerate(splits):
            m = clone(rf).fit(X_tr[tr], y_tr[tr])
            scores.append(f1_score(y_tr[va], m.predict(X_tr[va])))
            hptrack_trial(trial).score(scores[-1], split="fold", fold=k, metric=METRIC)
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    study.optimize(objective, n_trials=budget)
    best = study.best_trial
    final = model(**best.params).fit(X_tr, y_tr)
    test = float(f1_score(y_te, final.predict(X_te)))
    search = objective.search()
    # the winner's hptrack trial: the integration records Optuna's trial number
    (tid,), = hptrack.connect(store).sql(
        "SELECT trial_id FROM trials WHERE search_id = ? AND recorded_number = ?",
        params=[search.search_id, best.number]).fetchall()
    hptrack.score_trial(search.search_id, tid, test, split="test", metric=METRIC, store=store)
    search.finish()
    return study.best_value, test, len(study.trials)
