"""The main job on real data: tune a random forest on breast_cancer (F1) with a
grid, a random and a successive-halving search, each recorded live through
hptrack.sklearn into the default store (./.hptrack), score the winners on a
held-out test split, then ask the event log questions in SQL.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py [--quick] [--store DIR]``).
"""

from __future__ import annotations

import argparse
import time

from scipy.stats import randint
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV,
                                     StratifiedKFold, train_test_split)

import hptrack
import hptrack.sklearn

GRID = {"n_estimators": [50, 100, 200], "max_depth": [3, 5, 10, None], "min_samples_split": [2, 5]}
DISTRIBUTIONS = {"n_estimators": randint(20, 300), "max_depth": [3, 5, 10, None],
                 "min_samples_split": randint(2, 11)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default=None, help="store folder (default ./.hptrack or $HPTRACK_STORE)")
    ap.add_argument("--quick", action="store_true", help="a smaller run for CI")
    args = ap.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    cv = StratifiedKFold(n_splits=3 if args.quick else 5, shuffle=True, random_state=0)
    grid = {**GRID, "n_estimators": [50, 100]} if args.quick else GRID
    budget = len(grid["n_estimators"]) * len(grid["max_depth"]) * len(grid["min_samples_split"])
    rf = RandomForestClassifier(random_state=0)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    searches = {
        "grid": GridSearchCV(rf, grid, scoring="f1", cv=cv, n_jobs=-1),
        "random": RandomizedSearchCV(rf, DISTRIBUTIONS, n_iter=budget, scoring="f1", cv=cv,
                                     n_jobs=-1, random_state=0),
        "halving": HalvingRandomSearchCV(rf, DISTRIBUTIONS, n_candidates=budget, factor=2,
                                         scoring="f1", cv=cv, n_jobs=-1, random_state=0),
    }
    for strategy, search in searches.items():
        started = time.perf_counter()
        tracked = hptrack.sklearn.track(search, name=f"demo-{strategy}-{stamp}", store=args.store,
                                        dataset="breast_cancer")
        tracked.fit(X_train, y_train)
        test_f1 = hptrack.sklearn.log_test_score(tracked, X_test, y_test, store=args.store)
        print(f"{strategy:>8}: {len(tracked.cv_results_['params']):3d} candidate evaluations, "
              f"best CV F1 {tracked.best_score_:.4f}, test F1 {test_f1:.4f} "
              f"({time.perf_counter() - started:.1f}s)")

    con = hptrack.connect(args.store)
    print("\nSearches in the store:")
    con.sql("SELECT name, strategy, n_trials, n_complete, n_pruned, n_failed FROM searches "
            "ORDER BY started_at").show(max_width=200)
    print("Each winner: CV F1, held-out test F1 and its params (SQL over the event log):")
    con.sql("""
        SELECT s.name, round(t.value, 4) AS cv_f1, round(sc.value, 4) AS test_f1,
               string_agg(p.name || '=' || p.value, ', ' ORDER BY p.name) AS params
        FROM scores sc JOIN trials t USING (search_id, trial_id) JOIN searches s USING (search_id)
        JOIN params p USING (search_id, trial_id)
        WHERE sc.split = 'test' GROUP BY ALL ORDER BY s.name
    """).show(max_width=200)
    print("Successive halving, rebuilt from the events: candidates and resource per rung")
    con.sql(f"""
        SELECT r.step AS rung, count(*) AS candidates, any_value(r.resource) AS n_samples,
               round(max(r.value), 4) AS best_f1
        FROM reports r JOIN searches s USING (search_id)
        WHERE s.name = 'demo-halving-{stamp}' GROUP BY r.step ORDER BY r.step
    """).show()
    print(f"Events live in {hptrack.Store(args.store).root}; try: hptrack ls, "
          f"hptrack show demo-grid-{stamp}, hptrack query \"SELECT ...\"")


if __name__ == "__main__":
    main()
