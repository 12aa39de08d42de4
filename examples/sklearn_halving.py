"""HalvingRandomSearchCV on breast_cancer, scored by F1: each iteration is a rung.

    python examples/sklearn_halving.py [--quick]    # --quick: fewer trees and folds, one process (the tests run this)
"""

import sys

from scipy.stats import randint
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes Halving* importable)
from sklearn.model_selection import HalvingRandomSearchCV, train_test_split

import hptrack
import hptrack.sklearn

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

quick = "--quick" in sys.argv
cv, n_jobs = (3, 1) if quick else (5, -1)  # folds; -1: loky workers record live
distributions = {"n_estimators": randint(5, 20) if quick else randint(20, 200), "max_depth": randint(2, 12),
                 "min_samples_split": randint(2, 20)}
search = hptrack.sklearn.track(
    HalvingRandomSearchCV(RandomForestClassifier(random_state=0), distributions, n_candidates=9 if quick else 27,
                          factor=3, scoring="f1", cv=cv,
                          n_jobs=n_jobs, random_state=0),
    name="rf-halving", dataset="breast_cancer")
search.fit(X_train, y_train)
test_f1 = hptrack.sklearn.log_test_score(search, X_test, y_test)
print(f"best {search.best_params_}  cv F1 {search.best_score_:.4f}  test F1 {test_f1:.4f}")
print("candidates per iteration", search.n_candidates_, "samples", search.n_resources_)

# The rungs, rebuilt from the store: candidates, samples and best F1 per iteration.
con = hptrack.connect()
print(con.sql("""
    SELECT step AS iteration, count(*) AS candidates, any_value(resource) AS n_samples,
           round(max(value), 4) AS best_f1
    FROM reports WHERE search_id = ? GROUP BY step ORDER BY step""", params=[search.search_id]).pl())
print(con.sql("SELECT state, count(*) FROM trials WHERE search_id = ? GROUP BY state",
              params=[search.search_id]).fetchall())
