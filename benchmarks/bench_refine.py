"""Coarse then refined against more of the coarse search, for the same budget (issue #17, 1).

Run it on purpose (not part of the test suite; 10-15 minutes on 2 shared cores)::

    .venv/bin/python benchmarks/bench_refine.py
    .venv/bin/python benchmarks/bench_refine.py --tasks digits --seeds 3 --trials 20   # quicker
    .venv/bin/python benchmarks/bench_refine.py --tasks diabetes friedman1 --wide      # C, gamma over 12 decades

Per task (a scikit-learn dataset and an estimator with a wide space) and seed, on
the same train/test split and the same CV splitter:

* ``random``: RandomizedSearchCV on the coarse space for N trials;
* ``random+refine``: the same for N/2 trials (the same first N/2 candidates as
  ``random``: same sampler seed), then ``hptrack.analysis.refine`` on what the
  store recorded, then RandomizedSearchCV on the refined space for N/2 trials. The
  refined space is the printed ``sklearn_code()`` run with ``exec``: exactly what a
  user would paste. Both stages are one search (one name; ``strategy="custom"``, the
  recorded strategy for a search of one's own design, which ``compare`` tells apart from
  ``random``), so ``compare`` sees N trials in it as in ``random``. The output calls
  it ``random+refine``.

Everything is recorded through ``hptrack.sklearn.track`` in a temporary store and
the arms are compared with ``hptrack.analysis.compare`` by trials (its Friedman test
and Wilcoxon signed-rank test, the seeds as blocks, on the best CV score within
the common budget of N trials). Scores are accuracy (classifiers) and R^2 (diabetes,
a regression: a finer score than an accuracy near 1). The winner of each arm (its best CV candidate,
refit on the training rows) is scored on the held-out test rows, and the test
scores are compared with a paired Wilcoxon test too: refining must not merely fit
the CV folds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
from scipy.stats import loguniform, randint, wilcoxon


def tasks(wide: bool = False) -> dict:
    """name -> (loader, estimator factory, coarse space, classification?). ``wide``: the
    SVMs' C and gamma over 12 decades each, as a first search of a model one knows
    little about (the good region is then a small corner of the space); libsvm's
    iterations capped so that the hopeless corners stay affordable."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine, make_friedman1
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    svc_space = {"svc__C": loguniform(1e-3, 1e3), "svc__gamma": loguniform(1e-5, 1e1),
                 "svc__kernel": ["rbf", "sigmoid", "linear"], "svc__tol": loguniform(1e-5, 1e-1)}
    svr_space = {"svr__C": loguniform(1e-2, 1e4), "svr__gamma": loguniform(1e-5, 1e1),
                 "svr__epsilon": loguniform(1e-2, 1e2), "svr__kernel": ["rbf", "sigmoid", "linear"]}
    if wide:
        svc_space = {**svc_space, "svc__C": loguniform(1e-6, 1e6), "svc__gamma": loguniform(1e-9, 1e3)}
        svr_space = {**svr_space, "svr__C": loguniform(1e-6, 1e6), "svr__gamma": loguniform(1e-9, 1e3)}
    cap = {"max_iter": 200_000} if wide else {}
    # kernel ridge over 9 decades of alpha and gamma: cheap fits (13 ms on 375 rows), so the
    # budgets where refining pays (100 trials and more per arm) stay affordable
    krr_space = {"kernelridge__alpha": loguniform(1e-6, 1e3), "kernelridge__gamma": loguniform(1e-6, 1e3),
                 "kernelridge__kernel": ["rbf", "laplacian", "sigmoid"]}
    knn_space = {"kneighborsclassifier__n_neighbors": randint(1, 80),
                 "kneighborsclassifier__weights": ["uniform", "distance"],
                 "kneighborsclassifier__p": [1, 2], "kneighborsclassifier__leaf_size": randint(5, 100)}
    return {
        "breast_cancer": (load_breast_cancer, lambda: make_pipeline(StandardScaler(), SVC(**cap)), svc_space, True),
        "digits": (load_digits, lambda: make_pipeline(StandardScaler(), SVC(**cap)), svc_space, True),
        "wine": (load_wine, lambda: make_pipeline(StandardScaler(), KNeighborsClassifier()), knn_space, True),
        "diabetes": (load_diabetes, lambda: make_pipeline(StandardScaler(), SVR(**cap)), svr_space, False),
        # Friedman's #1 regression (scikit-learn's generator, fixed seed): smooth, nonlinear, noise 1
        "friedman1": (lambda return_X_y: make_friedman1(n_samples=500, noise=1.0, random_state=0),
                      lambda: make_pipeline(StandardScaler(), SVR(**cap)), svr_space, False),
        "friedman1-krr": (lambda return_X_y: make_friedman1(n_samples=500, noise=1.0, random_state=0),
                          lambda: make_pipeline(StandardScaler(), KernelRidge()), krr_space, False),
        "diabetes-krr": (load_diabetes, lambda: make_pipeline(StandardScaler(), KernelRidge()), krr_space, False),
    }


def run_seed(task, seed, n_trials, store, show, top, wide):
    from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold, train_test_split

    import hptrack.sklearn
    from hptrack.analysis import refine

    load, estimator, space, classify = tasks(wide)[task]
    X, y = load(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y if classify else None,
                                              random_state=seed)
    cv = (StratifiedKFold if classify else KFold)(5, shuffle=True, random_state=seed)

    def search(dists, n, random_state, name, **attrs):
        s = hptrack.sklearn.track(RandomizedSearchCV(estimator(), dists, n_iter=n, cv=cv, random_state=random_state),
                                  name=name, store=store, task=task, **attrs)
        return s.fit(X_tr, y_tr)

    coarse = search(space, n_trials, seed, f"{task}-random-s{seed}")
    name = f"{task}-refine-s{seed}"
    first = search(space, n_trials // 2, seed, name, strategy="custom")
    r = refine(name, store, top=top)
    code = r.sklearn_code()
    scope: dict = {}
    exec(code, scope)   # the printed code is what runs
    second = search(scope["param_distributions"], n_trials - n_trials // 2, seed + 10_000, name,
                    strategy="custom")
    if show:
        print(f"\n{task}, seed {seed}: the refined space\n{code}\n")
    winner = max((first, second), key=lambda s: s.best_score_)
    return {"cv": (coarse.best_score_, winner.best_score_),
            "test": (hptrack.sklearn.log_test_score(coarse, X_te, y_te),
                     hptrack.sklearn.log_test_score(winner, X_te, y_te)),
            "names": (coarse.search_name, name)}


def run_task(task, seeds, n_trials, store, top, wide=False):
    from hptrack.analysis import compare

    t = time.perf_counter()
    rows = [run_seed(task, seed, n_trials, store, show=seed == 0, top=top, wide=wide) for seed in range(seeds)]
    names = [row["names"][0] for row in rows] + [row["names"][1] for row in rows]
    c = compare(names, by="trials", store=store)
    cv, test = np.array([row["cv"] for row in rows]), np.array([row["test"] for row in rows])
    summary = {row["strategy"]: row for row in c.summary.to_dicts()}
    w = c.tests.get("wilcoxon_holm")
    print(f"== {task}{' (wide space)' if wide else ''}: {seeds} seeds, {n_trials} trials per arm, refine top={top} "
          f"({time.perf_counter() - t:.0f} s)")
    for i, (arm, label) in enumerate((("random", "random"), ("custom", "random+refine"))):
        print(f"  {label:14s} best CV score mean {cv[:, i].mean():.4f} (compare: final best "
              f"{summary[arm]['best_at_horizon_mean']:.4f}, mean rank {summary[arm]['mean_rank']:.2f}); "
              f"held-out test score of its winner mean {test[:, i].mean():.4f}")
    wins = int((cv[:, 1] > cv[:, 0]).sum()), int((cv[:, 1] == cv[:, 0]).sum()), int((cv[:, 1] < cv[:, 0]).sum())
    print(f"  best CV per seed, refine vs random: {wins[0]} better, {wins[1]} equal, {wins[2]} worse")
    print(f"  compare: best = {c.best} (custom: random+refine); {c.verdict}")
    print(f"  compare tests: Friedman p = {c.tests['friedman']['p']:.4g} (Iman-Davenport p_f = "
          f"{c.tests['friedman']['p_f']:.4g}); Wilcoxon-Holm {w}")
    diff = test[:, 1] - test[:, 0]
    p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
    print(f"  held-out test, refine minus random: mean {diff.mean():+.4f}, {int((diff > 0).sum())} better, "
          f"{int((diff == 0).sum())} equal, {int((diff < 0).sum())} worse; paired Wilcoxon p = {p:.4g}")
    return c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(tasks()), choices=list(tasks()))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=40, help="trials per arm (N)")
    parser.add_argument("--top", type=float, default=0.25, help="refine's top share")
    parser.add_argument("--wide", action="store_true", help="the SVMs' C and gamma over 12 decades each")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")   # appending to a finished search, ConvergenceWarning
    with tempfile.TemporaryDirectory() as store:
        for task in args.tasks:
            run_task(task, args.seeds, args.trials, store, args.top, args.wide)


if __name__ == "__main__":
    main()
