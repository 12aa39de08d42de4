"""Conformance on real scikit-learn searches: every candidate's params, every split
score, mean/std/rank and the refit best equal ``cv_results_``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from .readback import read_search, scored
from .sklearn_material import searches

NAMES = list(searches())
FLAT = [n for n in NAMES if not n.startswith("halving")]
HALVING = [n for n in NAMES if n.startswith("halving")]


def expected_param(v):
    """A cv_results_ param as hptrack can hold it: numpy scalars as Python values,
    anything else that is not a scalar (an estimator) as its repr."""
    if isinstance(v, np.generic):
        v = v.item()
    return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)


def metrics_of(results) -> list[str]:
    """The metric names of cv_results_ ("score" for a single scorer)."""
    return sorted(k[len("mean_test_"):] for k in results if k.startswith("mean_test_"))


def stored_metric(search_cv, m: str) -> str:
    """The ``metric`` column hptrack writes for cv_results_ metric ``m``."""
    if m == "score" and isinstance(search_cv.scoring, str):
        return search_cv.scoring
    return m


def n_splits(results) -> int:
    return sum(1 for k in results if k.startswith("split") and k.endswith("_test_" + metrics_of(results)[0]))


def _ctx(material, name):
    f = material.fitted[name]
    rec = read_search(material.store, name)
    return f, f.cv_results, {t.trial_id: t for t in rec.trials}, rec


@pytest.mark.parametrize("name", NAMES)
def test_one_trial_per_candidate_with_its_params(sklearn_material, name):
    f, res, trials, _ = _ctx(sklearn_material, name)
    rows = range(len(res["params"]))
    ids = [f.tracked.trial_id_of(i) for i in rows]
    n_candidates = len(res["params"]) if name in FLAT else int(np.sum(res["iter"] == 0))
    assert len(trials) == n_candidates == len(set(ids))
    for i in rows:
        want = {k: expected_param(v) for k, v in res["params"][i].items()}
        got = trials[ids[i]].params
        assert got == want, f"row {i}"
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}, f"row {i}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("part", ["test", "train"])
def test_every_split_score(sklearn_material, name, part):
    f, res, _, _ = _ctx(sklearn_material, name)
    metrics = metrics_of(res)
    # return_train_score=False: then no train score may be recorded either
    has_part = part == "test" or f"mean_train_{metrics[0]}" in res
    split = "fold" if part == "test" else "fold_train"
    got = scored(sklearn_material.store, name)
    k_splits = n_splits(res)
    expected = {}
    for i in range(len(res["params"]) if has_part else 0):
        step = int(res["iter"][i]) if "iter" in res else None
        for m in metrics:
            for k in range(k_splits):
                key = (f.tracked.trial_id_of(i), split, stored_metric(f.tracked.search_cv, m), k, step)
                expected[key] = float(res[f"split{k}_{part}_{m}"][i])
    assert {k: v for k, v in got.items() if k[1] == split} == expected


@pytest.mark.parametrize("name", FLAT)
def test_mean_std_rank_and_value(sklearn_material, name):
    f, res, trials, _ = _ctx(sklearn_material, name)
    refit = f.tracked.search_cv.refit
    value_metric = refit if isinstance(refit, str) else "score"
    for i in range(len(res["params"])):
        t = trials[f.tracked.trial_id_of(i)]
        assert t.state == "complete", f"row {i}"
        assert t.value == res[f"mean_test_{value_metric}"][i], f"row {i}"
        for m in metrics_of(res):
            for stat in ("mean_test", "std_test", "mean_train"):
                if f"{stat}_{m}" in res:
                    assert t.metrics[f"{stat}_{m}"] == res[f"{stat}_{m}"][i], f"row {i} {stat}_{m}"
    for m in metrics_of(res):
        # ranks recomputed from the stored means, as scikit-learn ranks them
        means = np.array([trials[f.tracked.trial_id_of(i)].metrics[f"mean_test_{m}"]
                          for i in range(len(res["params"]))])
        assert rankdata(-means, method="min").tolist() == res[f"rank_test_{m}"].tolist()


@pytest.mark.parametrize("name", NAMES)
def test_refit_best(sklearn_material, name):
    f, _, trials, rec = _ctx(sklearn_material, name)
    cv = f.tracked.search_cv
    fin = rec.finished
    assert fin["best_index"] == cv.best_index_
    assert fin["best_trial_id"] == f.tracked.trial_id_of(cv.best_index_)
    assert fin["best_score"] == cv.best_score_
    assert set(fin["best_params"]) == set(cv.best_params_)
    for k, v in cv.best_params_.items():
        if not hasattr(v, "fit"):  # an estimator is described as JSON, not compared here
            assert fin["best_params"][k] == expected_param(v), k
    best = trials[fin["best_trial_id"]]
    assert best.params == {k: expected_param(v) for k, v in cv.best_params_.items()}
    if name in FLAT:
        assert best.value == cv.best_score_


@pytest.mark.parametrize("name", HALVING)
def test_halving_rungs(sklearn_material, name):
    """Each iteration a report of the candidate (step=iter, resource=n_resources);
    the candidates of the last iteration complete with its score, the others
    end pruned at their last iteration."""
    f, res, trials, _ = _ctx(sklearn_material, name)
    cv = f.tracked.search_cv
    last_iter = int(res["iter"].max())
    rows_of = {}
    for i in range(len(res["params"])):
        rows_of.setdefault(f.tracked.trial_id_of(i), []).append(i)
    for tid, rows in rows_of.items():
        t = trials[tid]
        assert t.reports == {int(res["iter"][i]): float(res["mean_test_score"][i]) for i in rows}
        top = max(rows, key=lambda i: res["iter"][i])
        if res["iter"][top] == last_iter:
            assert (t.state, t.value) == ("complete", float(res["mean_test_score"][top]))
        else:
            assert (t.state, t.last_step) == ("pruned", int(res["iter"][top]))
    assert [sum(1 for i in range(len(res["iter"])) if res["iter"][i] == it)
            for it in range(last_iter + 1)] == list(cv.n_candidates_)


def test_nested_cv_equals_the_loop_written_out(sklearn_material):
    m = sklearn_material
    by_hand = m.nested_by_hand
    assert m.nested.outer_scores.tolist() == [score for _, score in by_hand]
    outer = read_search(m.store, "nested-iris")
    assert sorted(t.value for t in outer.trials) == sorted(score for _, score in by_hand)
    for k, (inner, _) in enumerate(by_hand):
        rec = read_search(m.store, f"nested-iris/outer-{k}")
        res = inner.cv_results_
        got = {tuple(sorted(t.params.items())): t.value for t in rec.trials}
        want = {tuple(sorted((p, expected_param(v)) for p, v in res["params"][i].items())):
                float(res["mean_test_score"][i]) for i in range(len(res["params"]))}
        assert got == want, f"outer fold {k}"
        assert m.nested.best_params[k] == inner.best_params_
