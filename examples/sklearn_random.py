"""RandomizedSearchCV with scipy.stats.randint distributions on breast_cancer, scored by F1.

    python examples/sklearn_random.py [--quick]    # --quick: fewer trees and folds, one process (the tests run this)
"""

import sys

from scipy.stats import randint
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import RandomizedSearchCV, train_test_split

import hptrack
import hptrack.sklearn

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

quick = "--quick" in sys.argv
cv, n_jobs = (3, 1) if quick else (5, -1)  # folds; -1: loky workers record live
distributions = {"n_estimators": randint(5, 20) if quick else randint(20, 200), "max_depth": randint(2, 12),
                 "min_samples_split": randint(2, 20)}
search = hptrack.sklearn.track(
    RandomizedSearchCV(RandomForestClassifier(random_state=0), distributions, n_iter=6 if quick else 12,
                       scoring="f1", cv=cv, n_jobs=n_jobs, random_state=0),
    name="rf-random", dataset="breast_cancer")
search.fit(X_train, y_train)
test_f1 = hptrack.sklearn.log_test_score(search, X_test, y_test)
print(f"best {search.best_params_}  cv F1 {search.best_score_:.4f}  test F1 {test_f1:.4f}")

# The distributions are stored as name and arguments, so the search can be rebuilt.
con = hptrack.connect()
print(con.sql("SELECT space FROM searches WHERE search_id = ?", params=[search.search_id]).fetchall()[0][0])
print(hptrack.trials("rf-random").sort("value", descending=True).head(5))
