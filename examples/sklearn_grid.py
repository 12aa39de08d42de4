"""GridSearchCV over a random forest on breast_cancer, scored by F1, recorded by hptrack.

    python examples/sklearn_grid.py            # writes to ./.hptrack (or $HPTRACK_STORE)
    python examples/sklearn_grid.py --quick    # fewer trees and folds, one process (the tests run this)
    hptrack show rf-grid                       # then look at it
"""

import sys

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, train_test_split

import hptrack
import hptrack.sklearn

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

quick = "--quick" in sys.argv
cv, n_jobs = (3, 1) if quick else (5, -1)  # folds; -1: loky workers record live
grid = {"n_estimators": [5, 10] if quick else [50, 100], "max_depth": [3, 6, None], "min_samples_split": [2, 10]}
search = hptrack.sklearn.track(
    GridSearchCV(RandomForestClassifier(random_state=0), grid, scoring="f1", cv=cv, n_jobs=n_jobs),
    name="rf-grid", dataset="breast_cancer")
search.fit(X_train, y_train)  # one trial per candidate; fold scores are written as they finish

test_f1 = hptrack.sklearn.log_test_score(search, X_test, y_test)
print(f"best {search.best_params_}  cv F1 {search.best_score_:.4f}  test F1 {test_f1:.4f}")

# The same history, from the store: per-fold F1 of the five best candidates.
con = hptrack.connect()
print(con.sql("""
    SELECT t.trial_number, round(t.value, 4) AS mean_f1, list(round(s.value, 4) ORDER BY s.fold) AS folds
    FROM trials t JOIN scores s USING (search_id, trial_id)
    WHERE t.search_id = ? AND s.split = 'fold'
    GROUP BY ALL ORDER BY mean_f1 DESC LIMIT 5""", params=[search.search_id]).pl())
