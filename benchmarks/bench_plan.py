"""Cost planning checked against the real run: estimate a search from smaller recorded ones, then run it.

Run it on purpose (not part of the test suite; about two minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_plan.py            # or: make bench-plan

Per case: record one or two small searches with ``hptrack.sklearn.track`` in a
fresh store, plan a bigger one with ``hptrack.analysis.plan`` (more
candidates, more rows, more folds or more workers), run it tracked and print
the estimated wall time (with its 10-90% range) beside the measured one, their
ratio, and the same for the sum of the folds' fit and score times (the model
alone, without scheduling and recording overhead). The fit count of the plan
is checked against the folds the run recorded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import loguniform
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn
from hptrack.analysis import plan
from hptrack.analysis.planning import duration


@dataclass
class Case:
    name: str
    data: tuple                  # (X, y) of the planned run
    recorded: list               # [(search, X, y)] run and recorded first
    planned: Any                 # the search to plan and run


def rows(X, y, n):
    return X[:n], y[:n]


def cases() -> list[Case]:
    bc = load_breast_cancer(return_X_y=True)
    dg = load_digits(return_X_y=True)
    big = make_classification(n_samples=6000, n_features=20, n_informative=10, random_state=0)
    lr = make_classification(n_samples=20000, n_features=200, n_informative=50, random_state=0)
    return [
        Case("SVC breast_cancer: 4 -> 20 candidates, cv 3 -> 5", bc,
             [(GridSearchCV(SVC(), {"C": [0.1, 1], "gamma": [1e-4, 1e-3]}, cv=3), *bc)],
             GridSearchCV(SVC(), {"C": [0.1, 0.3, 1, 3, 10], "gamma": [1e-5, 1e-4, 3e-4, 1e-3]}, cv=5)),
        Case("SVC 1.5k+3k -> 6k rows (fitted size slope), n_jobs 2", big,
             [(GridSearchCV(SVC(), {"C": [0.3, 3]}, cv=3), *rows(*big, 1500)),
              (GridSearchCV(SVC(), {"C": [0.3, 3]}, cv=3), *rows(*big, 3000))],
             GridSearchCV(SVC(), {"C": [0.3, 1, 3]}, cv=3, n_jobs=2)),
        Case("SVC 3k -> 6k rows (one recorded size: linear assumed)", big,
             [(GridSearchCV(SVC(), {"C": [0.3, 3]}, cv=3), *rows(*big, 3000))],
             GridSearchCV(SVC(), {"C": [0.3, 1, 3]}, cv=3)),
        Case("RandomForest digits: n_estimators 10,30 -> 50,100,200, n_jobs 2", dg,
             [(GridSearchCV(RandomForestClassifier(random_state=0), {"n_estimators": [10, 30]}, cv=3), *dg)],
             GridSearchCV(RandomForestClassifier(random_state=0), {"n_estimators": [50, 100, 200]}, cv=5,
                          n_jobs=2)),
        Case("LogisticRegression 5k+10k -> 20k rows, 6 C values, n_jobs 2", lr,
             [(GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 1]}, cv=3), *rows(*lr, 5000)),
              (GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 1]}, cv=3), *rows(*lr, 10000))],
             GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.003, 0.01, 0.03, 0.1, 0.3, 1]}, cv=5,
                          n_jobs=2)),
        Case("SVC digits random: n_iter 6 -> 30, n_jobs 2", dg,
             [(RandomizedSearchCV(SVC(), {"C": loguniform(0.1, 100), "gamma": loguniform(1e-4, 1e-2)},
                                  n_iter=6, cv=3, random_state=0), *dg)],
             RandomizedSearchCV(SVC(), {"C": loguniform(0.1, 100), "gamma": loguniform(1e-4, 1e-2)},
                                n_iter=30, cv=3, n_jobs=2, random_state=1)),
    ]


def fold_seconds(con, search_id: str) -> tuple[int, float]:
    n, s = con.sql("SELECT count(*), sum(f + s) FROM (SELECT trial_id, fold, "
                   "max(TRY_CAST(payload ->> 'fit_time' AS DOUBLE)) AS f, "
                   "max(TRY_CAST(payload ->> 'score_time' AS DOUBLE)) AS s "
                   "FROM scores WHERE split = 'fold' AND search_id = ? GROUP BY ALL)",
                   params=[search_id]).fetchall()[0]
    return int(n), float(s or 0.0)


def run_case(case: Case, store: str) -> dict:
    for i, (search, X, y) in enumerate(case.recorded):
        hptrack.sklearn.track(search, name=f"{case.name} / recorded {i}", store=store).fit(X, y)
    X, y = case.data
    p = plan(case.planned, X, y, store=store)
    # the model alone, before the run is recorded: one worker, the folds' seconds plus the refit
    serial = plan(case.planned, X, y, store=store, n_jobs=1)
    tracked = hptrack.sklearn.track(case.planned, name=f"{case.name} / planned", store=store)
    t0 = time.perf_counter()
    tracked.fit(X, y)
    wall = time.perf_counter() - t0
    n_folds, folds_s = fold_seconds(hptrack.connect(store), tracked.search_id)
    fits = n_folds + int(bool(case.planned.refit))
    assert fits == p.n_fits, f"{case.name}: planned {p.n_fits} fits, ran {fits}"
    refit_s = float(getattr(tracked.search_cv, "refit_time_", 0.0) or 0.0)
    return {"case": case.name, "plan": p, "wall": wall, "folds_s": folds_s, "refit_s": refit_s,
            "serial_est": serial.seconds - serial.overhead_s}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases()):
            store = f"{tmp}/store{i}"  # one store per case: each plan reads only its own history
            r = run_case(case, store)
            results.append(r)
            p = r["plan"]
            print(f"\n{case.name}\n  plan:   {p.text}\n  model:  {p.basis}")
            for note in p.notes:
                print(f"  note:   {note}")
            print(f"  wall:   estimated {duration(p.seconds)} ({duration(p.seconds_low)}-"
                  f"{duration(p.seconds_high)}), actual {r['wall']:.2f} s, "
                  f"actual/estimate {r['wall'] / p.seconds:.2f}")
            serial_actual = r["folds_s"] + r["refit_s"]
            print(f"  load:   {os.getloadavg()[0]:.1f} (1-minute average, {os.cpu_count()} cores)")
            print(f"  serial: folds+refit estimated {r['serial_est']:.2f} s, recorded {serial_actual:.2f} s, "
                  f"recorded/estimate {serial_actual / r['serial_est']:.2f}")
    ratios = np.array([r["wall"] / r["plan"].seconds for r in results])
    inside = sum(r["plan"].seconds_low <= r["wall"] <= r["plan"].seconds_high for r in results)
    print(f"\nactual/estimate wall time: median {np.median(ratios):.2f}, range {ratios.min():.2f}-"
          f"{ratios.max():.2f}; actual inside the 10-90% range in {inside} of {len(results)} cases")


if __name__ == "__main__":
    main()
