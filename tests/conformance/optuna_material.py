"""Real Optuna material: objectives in the style of Optuna's own examples, each run
once through all three ways into hptrack.

Every study runs (in memory) with its objective wrapped in ``@hptrack.track``
(store "decorator") and ``hptrack.optuna.Callback`` in its callbacks (store
"callback"); afterwards it is copied into a journal file storage, which
``hptrack.optuna.import_study`` reads (store "import"), and some studies also
into an RDB (sqlite) storage (store "import-sqlite"). So one run gives three or
four recorded histories of one study, and the tests compare each with it.
(Only some go through sqlite: SQLAlchemy took 40% of the material's time when
all did, more than all the fits.)

The studies run with the process in a non-UTC zone with a half-hour offset
(Optuna stores naive local times), so a wrong conversion to UTC shows; the
expected UTC times are computed here with zoneinfo, independently of hptrack.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timezone
from zoneinfo import ZoneInfo

import optuna
from objectives import sgd_partial_fit
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectKBest, f_regression
from sklearn.linear_model import ElasticNet, RidgeClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

import hptrack
import hptrack.optuna

PATHS = ("decorator", "callback", "import")
SQLITE = ("median-sgd-digits", "nsga2-wine", "enqueue-iris", "failures-cancer")
LOCAL_ZONE = "Asia/Kolkata"  # UTC+05:30: an hour-only fix would not hide a bad conversion
STATE = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)
CANCER = load_breast_cancer(return_X_y=True)
DIABETES = load_diabetes(return_X_y=True)
_DX, _DY = load_digits(return_X_y=True)
DIGITS = (_DX[:500] / 16.0, _DY[:500], _DX[500:800] / 16.0, _DY[500:800])
EPOCHS = 6


# --- objectives -----------------------------------------------------------------------------

def conditional_iris(trial):
    """Optuna's sklearn_simple example: the space depends on the classifier chosen."""
    X, y = IRIS
    name = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if name == "SVC":
        c = trial.suggest_float("svc_c", 1e-3, 1e3, log=True)
        clf = SVC(C=c, gamma="auto")
    else:
        depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
        # mixed-type choices: None, a str and a float
        features = trial.suggest_categorical("rf_max_features", [None, "sqrt", 0.5])
        clf = RandomForestClassifier(n_estimators=8, max_depth=depth, max_features=features,
                                     random_state=0)
    trial.set_user_attr("classifier_family", name)
    return float(cross_val_score(clf, X, y, cv=3).mean())


def distributions_diabetes(trial):
    """Every kind of distribution: float log, float step, int step, int log, bool and str."""
    X, y = DIABETES
    alpha = trial.suggest_float("alpha", 1e-4, 10.0, log=True)
    l1_ratio = trial.suggest_float("l1_ratio", 0.0, 1.0, step=0.1)
    max_iter = trial.suggest_int("max_iter", 200, 1000, step=200)
    k = trial.suggest_int("k", 1, 10, log=True)
    fit_intercept = trial.suggest_categorical("fit_intercept", [True, False])
    selection = trial.suggest_categorical("selection", ["cyclic", "random"])
    model = make_pipeline(SelectKBest(f_regression, k=k),
                          ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter,
                                     fit_intercept=fit_intercept, selection=selection,
                                     random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at small max_iter
        mse = -cross_val_score(model, X, y, cv=3, scoring="neg_mean_squared_error").mean()
    trial.set_user_attr("n_features", k)
    return float(mse)


def sgd_digits(trial):
    """Optuna's pruning examples: SGDClassifier.partial_fit, one report per epoch."""
    return sgd_partial_fit(trial, DIGITS, EPOCHS)


def forest_size_wine(trial):
    """Two objectives: accuracy up, model size (trees x depth) down."""
    X, y = WINE
    n = trial.suggest_int("n_estimators", 2, 8)
    depth = trial.suggest_int("max_depth", 1, 8)
    clf = RandomForestClassifier(n_estimators=n, max_depth=depth, random_state=0)
    return float(cross_val_score(clf, X, y, cv=3).mean()), float(n * depth)


def tree_leaves_cancer(trial):
    """Two objectives: accuracy up, number of leaves down."""
    X, y = CANCER
    depth = trial.suggest_int("max_depth", 1, 12)
    leaf = trial.suggest_int("min_samples_leaf", 1, 64, log=True)
    criterion = trial.suggest_categorical("criterion", ["gini", "entropy"])
    clf = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=leaf, criterion=criterion,
                                 random_state=0)
    acc = float(cross_val_score(clf, X, y, cv=3).mean())
    return acc, float(clf.fit(X, y).get_n_leaves())


def svc_iris(trial):
    X, y = IRIS
    c = trial.suggest_float("C", 1e-2, 1e2, log=True)
    kernel = trial.suggest_categorical("kernel", ["rbf", "linear"])
    return float(cross_val_score(SVC(C=c, kernel=kernel), X, y, cv=3).mean())


def ridge_wine(trial):
    X, y = WINE
    alpha = trial.suggest_float("alpha", 1e-3, 1e3, log=True)
    return float(cross_val_score(make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha)),
                                 X, y, cv=3).mean())


WINE_FIXED = {"alpha": FloatDistribution(1e-3, 1e3, log=True),
              "alpha_scale": IntDistribution(1, 4),
              "scale": CategoricalDistribution([True, False])}


def ridge_wine_fixed(trial):
    """Define-and-run (Optuna's ask-and-tell tutorial): the params come with
    ``study.ask(fixed_distributions)``, the objective reads ``trial.params``."""
    X, y = WINE
    alpha = trial.params["alpha"] * trial.params["alpha_scale"]
    steps = [StandardScaler()] if trial.params["scale"] else []
    model = make_pipeline(*steps, RidgeClassifier(alpha=alpha))
    return float(cross_val_score(model, X, y, cv=3).mean())


def knn_iris(trial):
    X, y = IRIS
    k = trial.suggest_int("n_neighbors", 1, 30)
    weights = trial.suggest_categorical("weights", ["uniform", "distance"])
    p = trial.suggest_int("p", 1, 2)
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=k, weights=weights, p=p),
                                 X, y, cv=3).mean())


def flaky_cancer(trial):
    """Fails two ways, as real objectives do: an exception, and a NaN result."""
    X, y = CANCER
    c = trial.suggest_float("C", 1e-4, 1e2, log=True)
    mode = trial.suggest_categorical("mode", ["ok", "raise", "nan"])
    if mode == "raise":
        raise ValueError(f"solver diverged at C={c:.3g}")
    if mode == "nan":
        trial.report(float("nan"), 0)   # a diverged run reports NaN before it gives up
        return float("nan")
    return float(cross_val_score(make_pipeline(StandardScaler(), RidgeClassifier(alpha=1 / c)),
                                 X, y, cv=3).mean())


# --- patterns -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pattern:
    name: str
    objective: Callable
    n_trials: int
    sampler: Callable[[], optuna.samplers.BaseSampler]
    pruner: Callable[[], optuna.pruners.BasePruner] | None = None
    directions: tuple = ("maximize",)
    n_jobs: int = 1
    enqueue: tuple = ()            # (params, user_attrs) given to enqueue_trial
    drive: str = "optimize"        # optimize / ask_tell / ask_tell_fixed
    catch: tuple = ()


PATTERNS = [
    Pattern("conditional-iris", conditional_iris, 16, lambda: optuna.samplers.TPESampler(seed=0)),
    Pattern("distributions-diabetes", distributions_diabetes, 16,
            lambda: optuna.samplers.RandomSampler(seed=1), directions=("minimize",)),
    Pattern("median-sgd-digits", sgd_digits, 16,
            lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
            lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)),
    Pattern("hyperband-sgd-digits", sgd_digits, 16, lambda: optuna.samplers.TPESampler(seed=1),
            lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS,
                                                   reduction_factor=3)),
    Pattern("sha-sgd-digits", sgd_digits, 16, lambda: optuna.samplers.RandomSampler(seed=2),
            lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)),
    Pattern("nsga2-wine", forest_size_wine, 16,
            lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=6),
            directions=("maximize", "minimize")),
    Pattern("motpe-cancer", tree_leaves_cancer, 16,
            lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=6),
            directions=("maximize", "minimize")),
    Pattern("enqueue-iris", svc_iris, 10, lambda: optuna.samplers.RandomSampler(seed=3),
            enqueue=(({"C": 1.0, "kernel": "rbf"}, {"source": "baseline"}),
                     ({"C": 10.0, "kernel": "linear"}, None))),
    Pattern("ask-tell-wine", ridge_wine, 10, lambda: optuna.samplers.TPESampler(seed=0),
            drive="ask_tell"),
    Pattern("ask-tell-fixed-wine", ridge_wine_fixed, 10, lambda: optuna.samplers.RandomSampler(seed=4),
            drive="ask_tell_fixed"),
    Pattern("threads-knn-iris", knn_iris, 16, lambda: optuna.samplers.TPESampler(seed=0), n_jobs=2),
    Pattern("failures-cancer", flaky_cancer, 15, lambda: optuna.samplers.RandomSampler(seed=5),
            catch=(ValueError,)),
]


# --- running them ---------------------------------------------------------------------------

@dataclass
class Ran:
    """One pattern after its run: its trials as Optuna holds them in memory (what
    the decorator and the callback saw) and in each storage import_study read
    (path -> trials), and the expected UTC times of each trial (number ->
    (start, complete))."""
    pattern: Pattern
    trials: list
    stored_trials: dict
    utc: dict = field(default_factory=dict)
    seconds: float = 0.0

    def reference(self, path: str) -> list:
        return self.stored_trials.get(path, self.trials)


@dataclass
class OptunaMaterial:
    stores: dict                                  # path -> store folder
    ran: dict                                     # pattern name -> Ran


@contextmanager
def local_zone(zone: str):
    """The process's local time zone is ``zone`` for the block (POSIX only)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield ZoneInfo(zone)
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def _run_one(p: Pattern, stores: dict) -> optuna.Study:
    objective = hptrack.track(p.name, store=stores["decorator"])(p.objective)
    callback = hptrack.optuna.Callback(name=p.name, store=stores["callback"])
    study = optuna.create_study(study_name=p.name, sampler=p.sampler(),
                                pruner=p.pruner() if p.pruner else None,
                                directions=list(p.directions))
    for params, attrs in p.enqueue:
        study.enqueue_trial(params, user_attrs=attrs)
    if p.drive == "optimize":
        study.optimize(objective, n_trials=p.n_trials, n_jobs=p.n_jobs, callbacks=[callback],
                       catch=p.catch)
        return study
    for _ in range(p.n_trials):
        # ask-and-tell runs no callbacks: the user calls the Callback after each tell
        trial = study.ask(WINE_FIXED if p.drive == "ask_tell_fixed" else None)
        study.tell(trial, objective(trial))
        callback(study, study.trials[-1])
    return study


def build(root) -> OptunaMaterial:
    """Run every pattern once (see module doc); ``root`` is an empty folder."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stores = {path: os.path.join(root, path) for path in PATHS + ("import-sqlite",)}
    ran = {}
    with local_zone(LOCAL_ZONE) as zone, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning, "nan" warnings
        storages = {"import": optuna.storages.JournalStorage(
                        optuna.storages.journal.JournalFileBackend(os.path.join(root, "journal.log"))),
                    "import-sqlite": optuna.storages.RDBStorage(
                        f"sqlite:///{os.path.join(root, 'optuna.db')}")}
        for p in PATTERNS:
            t0 = time.perf_counter()
            study = _run_one(p, stores)
            stored = {}
            for path, storage in storages.items():
                if path == "import-sqlite" and p.name not in SQLITE:
                    continue
                optuna.copy_study(from_study_name=p.name, from_storage=study._storage,
                                  to_storage=storage)
                hptrack.optuna.import_study(storage, p.name, store=stores[path])
                stored[path] = optuna.load_study(study_name=p.name, storage=storage).trials
            utc = {ft.number: tuple(_to_utc(d, zone) for d in (ft.datetime_start, ft.datetime_complete))
                   for ft in study.trials}
            ran[p.name] = Ran(p, study.trials, stored, utc, time.perf_counter() - t0)
    return OptunaMaterial(stores, ran)


def _to_utc(naive, zone):
    return None if naive is None else naive.replace(tzinfo=zone).astimezone(timezone.utc)


def finite(values) -> bool:
    return values is not None and all(math.isfinite(v) for v in values)
