"""The main job on real data: tune a random forest on breast_cancer, record every
trial, fold and test score in the default store (./.hptrack), then ask SQL.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py [--quick]``).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split

import hptrack

SPACE = {"n_estimators": [50, 100, 200], "max_depth": [3, 5, 10, None], "max_features": ["sqrt", "log2"]}


def evaluate(params, X_train, y_train, X_test, y_test, cv, t):
    """Cross-validate one configuration, recording each fold, then score on the test split."""
    model = RandomForestClassifier(random_state=0, n_jobs=1, **params)
    res = cross_validate(model, X_train, y_train, cv=cv, scoring="f1", return_train_score=True)
    for fold, (test, train) in enumerate(zip(res["test_score"], res["train_score"])):
        t.score(test, split="fold", fold=fold, metric="f1")
        t.score(train, split="train", fold=fold, metric="f1")
    cv_f1 = float(np.mean(res["test_score"]))
    test_f1 = f1_score(y_test, model.fit(X_train, y_train).predict(X_test))
    t.score(test_f1, split="test", metric="f1")
    t.complete(cv_f1)
    return cv_f1


def grid(search, data, cv, configs):
    for params in configs:
        with search.trial(params) as t:
            evaluate(params, *data, cv, t)


def random_search(search, data, cv, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        params = {k: v[rng.integers(len(v))] for k, v in SPACE.items()}
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}
        with search.trial(params) as t:
            evaluate(params, *data, cv, t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default=None, help="store folder (default ./.hptrack or $HPTRACK_STORE)")
    ap.add_argument("--quick", action="store_true", help="a smaller run for CI")
    args = ap.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    data = (X_train, y_train, X_test, y_test)
    cv = StratifiedKFold(n_splits=3 if args.quick else 5, shuffle=True, random_state=0)
    configs = [dict(zip(SPACE, combo)) for combo in itertools.product(*SPACE.values())]
    if args.quick:
        configs = configs[::4]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    common = dict(direction="maximize", metric="f1", space=SPACE, store=args.store,
                  dataset="breast_cancer", cv=str(cv))
    with hptrack.search(f"demo-grid-{stamp}", strategy="grid", seed=0, **common) as s:
        grid(s, data, cv, configs)
    with hptrack.search(f"demo-random-{stamp}", strategy="random", seed=0, **common) as s:
        random_search(s, data, cv, len(configs), seed=0)
    print(f"recorded {2 * len(configs)} trials in {time.perf_counter() - started:.1f}s\n")

    con = hptrack.connect(args.store)
    print("Searches in the store:")
    con.sql("SELECT name, strategy, n_trials, n_complete, started_at FROM searches ORDER BY started_at").show()
    print("Best configuration per search, with its test score (SQL over the event log):")
    con.sql("""
        WITH best AS (
            SELECT s.name, t.trial_id, t.value AS cv_f1,
                   row_number() OVER (PARTITION BY t.search_id ORDER BY t.value DESC) AS r
            FROM trials t JOIN searches s USING (search_id) WHERE t.state = 'complete')
        SELECT b.name, round(b.cv_f1, 4) AS cv_f1, round(sc.value, 4) AS test_f1,
               string_agg(p.name || '=' || p.value, ', '
                          ORDER BY p.name) AS params
        FROM best b JOIN scores sc ON sc.trial_id = b.trial_id AND sc.split = 'test'
        JOIN params p ON p.trial_id = b.trial_id
        WHERE b.r = 1 GROUP BY ALL ORDER BY b.name
    """).show(max_width=200)
    print(f"Events live in {hptrack.Store(args.store).root}; try: hptrack ls, hptrack query \"SELECT ...\"")


if __name__ == "__main__":
    main()
