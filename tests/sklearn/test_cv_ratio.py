"""The corrected t-test's test/train ratio comes from the recorded fold sizes (issue 14 item 4).

Under RepeatedStratifiedKFold(10 splits x 10 repeats) the ratio n_test/n_train
is 1/9, not 1/(J-1) = 1/99: with the wrong ratio, configurations tied with the
best are called significantly worse. Checked against the corrected t-test
recomputed by hand from cv_results_ and the splitter's own sizes."""

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

import hptrack
import hptrack.sklearn as hs
from hptrack import api
from hptrack.analysis.overfitting import diagnose
from hptrack.cli.main import cli

K = [1, 3, 5, 19, 23, 29]   # n_neighbors; 19 is best, the others are tied with it under 1/9


@pytest.fixture(scope="module")
def knn(tmp_path_factory):
    store = tmp_path_factory.mktemp("ratio")
    X, y = load_iris(return_X_y=True)
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    ts = hs.track(GridSearchCV(KNeighborsClassifier(), {"n_neighbors": K}, cv=cv),
                  name="knn-repeated", store=store).fit(X, y)
    return store, ts, [(len(tr), len(te)) for tr, te in cv.split(X, y)]


def by_hand(ts, n_folds, ratio, alpha=0.05):
    """Nadeau-Bengio from cv_results_ split scores: (tied trial ids, trial id -> p)."""
    res = ts.cv_results_
    s = np.array([res[f"split{k}_test_score"] for k in range(n_folds)]).T
    best = int(np.argmax(s.mean(axis=1)))
    p = {}
    for i in range(len(s)):
        if i != best:
            d = s[best] - s[i]
            t = d.mean() / np.sqrt((1 / len(d) + ratio) * d.var(ddof=1))
            p[ts.trial_id_of(i)] = 2 * sps.t.sf(abs(t), len(d) - 1)
    return {tid for tid, v in p.items() if v >= alpha}, p


def test_repeated_cv_ties_use_the_recorded_fold_sizes(knn):
    store, ts, sizes = knn
    ratio = np.mean([te / tr for tr, te in sizes])      # the splitter's own sizes
    assert ratio == pytest.approx(1 / 9)
    tied, p = by_hand(ts, len(sizes), ratio)
    d = diagnose("knn-repeated", store=store)
    assert d.n_folds == 100 and d.n_configs == len(K)
    assert d.ratio_source == "recorded fold sizes"
    assert d.test_train_ratio == pytest.approx(ratio)
    assert set(d.tied_trial_ids) == tied and d.n_tied == len(tied) == len(K) - 1
    assert d.tie_pvalues.keys() == p.keys()
    for tid, v in p.items():
        assert d.tie_pvalues[tid] == pytest.approx(v, rel=1e-9)
    # with 1/(J-1) = 1/99 (what diagnose assumed before) none of them is tied
    assert by_hand(ts, len(sizes), 1 / 99)[0] == set()


def test_every_fold_records_its_train_and_test_size(knn):
    store, ts, sizes = knn
    rows = hptrack.connect(store).sql(
        "SELECT fold, (payload->>'n_train')::INT, (payload->>'n_test')::INT FROM scores "
        "WHERE split = 'fold' AND trial_id = ?", params=[ts.trial_id_of(0)]).fetchall()
    assert sorted(rows) == [(k, tr, te) for k, (tr, te) in enumerate(sizes)]


def test_halving_rungs_record_their_subsampled_sizes(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    hv = HalvingGridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3, 4, 5, 6]},
                             cv=3, factor=2, min_resources=100, random_state=0)
    ts = hs.track(hv, name="halving-sizes", store=tmp_path).fit(X, y)
    rows = hptrack.connect(tmp_path).sql(
        "SELECT (payload->>'n_resources')::INT, (payload->>'n_train')::INT, (payload->>'n_test')::INT "
        "FROM scores "
        "WHERE split = 'fold'").fetchall()
    assert {r for r, _, _ in rows} == set(ts.n_resources_)
    full = [(len(tr), len(te)) for tr, te in StratifiedKFold(3).split(X, y)]
    for resource, n_train, n_test in rows:
        # a rung subsamples each fold's train and test parts to resource / n_samples of them
        share = resource / len(y)
        assert (n_train, n_test) in {(int(share * tr), int(share * te)) for tr, te in full}
    d = diagnose("halving-sizes", store=tmp_path)
    assert d.ratio_source == "recorded fold sizes" and d.test_train_ratio == pytest.approx(0.5, abs=0.01)


def test_unknown_sizes_assume_k_fold_and_say_so(tmp_path):
    rng = np.random.default_rng(0)
    with api.search("hand", strategy="grid", metric="acc", store=tmp_path, durability="batch") as s:
        for c in range(4):
            with s.trial({"c": c}) as t:
                fs = 0.8 + rng.normal(0, 0.02, 5)
                for k, v in enumerate(fs):
                    t.score(float(v), split="fold", fold=k, metric="acc")
                t.complete(float(fs.mean()))
    d = diagnose("hand", store=tmp_path)
    assert d.test_train_ratio == pytest.approx(1 / 4)
    assert d.ratio_source == "assumed k-fold: 1/(J-1)"


def test_diagnose_cli_shows_the_ratio_and_its_source(knn):
    store = knn[0]
    out = CliRunner().invoke(cli, ["--store", str(store), "diagnose", "knn-repeated"])
    assert out.exit_code == 0, out.output
    assert "test_train_ratio: 0.11111" in out.output
    assert "ratio_source: recorded fold sizes" in out.output
