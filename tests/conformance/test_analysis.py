"""The analysis against independent computations on real material: Optuna's own
evaluators and ``study.best_trials``, and statistics recomputed by hand (numpy,
scipy) from ``cv_results_`` and ``study.trials``.

Some of these check contracts that other helpers of issue 14 are adding
(``Diagnosis.test_train_ratio``, ``hptrack.analysis.pareto``); they fail until
that work is merged."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import scipy.stats as sps
from optuna.importance import FanovaImportanceEvaluator, get_param_importances

import hptrack.analysis

from .analysis_material import COMPARE_TRIALS, IMPORTANCE, SAMPLERS, SEEDS

# --- importance ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(IMPORTANCE))
def test_importance_top_param_agrees_with_optuna_fanova(analysis_material, name):
    study = analysis_material.studies[name]
    theirs = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    ours = hptrack.analysis.importance(name, store=analysis_material.store, seed=0)
    dominant = IMPORTANCE[name][1]
    assert next(iter(theirs)) == dominant, f"Optuna's fANOVA ranks {theirs}: the material is not dominated"
    assert ours["param"].to_list()[0] == dominant, ours
    assert set(ours["param"]) == set(theirs)
    assert ours["importance"].to_list() == sorted(ours["importance"].to_list(), reverse=True)


# --- corrected resampled t-test -----------------------------------------------------------

def _fold_matrix(results, metric):
    k = sum(1 for key in results if key.startswith("split") and key.endswith(f"_test_{metric}"))
    return np.array([[results[f"split{j}_test_{metric}"][i] for j in range(k)]
                     for i in range(len(results["params"]))])


def _tied_by_hand(m, ratio, alpha=0.05):
    """Nadeau-Bengio against the best mean: t = mean(d) / sqrt((1/J + ratio) var(d)), J-1 dof."""
    best = int(np.argmax(m.mean(axis=1)))
    j = m.shape[1]
    tied = set()
    for i in range(len(m)):
        if i == best:
            continue
        d = m[best] - m[i]
        var = d.var(ddof=1)
        if var == 0:
            p = 1.0 if d.mean() == 0 else 0.0
        else:
            t = d.mean() / np.sqrt((1 / j + ratio) * var)
            p = 2 * sps.t.sf(abs(t), j - 1)
        if p >= alpha:
            tied.add(i)
    return best, tied


def _true_ratio(splitter, X, y):
    """n_test / n_train of the splitter's own splits (their mean)."""
    return float(np.mean([len(te) / len(tr) for tr, te in splitter.split(X, y)]))


def test_corrected_ttest_under_repeated_stratified_kfold(sklearn_material):
    """3 folds x 2 repeats: J = 6 resamples, but each tests on a third and trains on
    two thirds (ratio 1/2, not the 1/(J-1) = 1/5 of 6-fold CV)."""
    f = sklearn_material.fitted["rskf-svc-iris"]
    res = f.cv_results
    m = _fold_matrix(res, "score")
    ratio = _true_ratio(f.tracked.search_cv.cv, f.X, f.y)
    assert ratio == 0.5
    best, tied = _tied_by_hand(m, ratio)
    _, tied_naive = _tied_by_hand(m, 1 / (m.shape[1] - 1))
    assert tied != tied_naive, "the material does not tell the true ratio from 1/(J-1)"
    d = hptrack.analysis.diagnose("rskf-svc-iris", store=sklearn_material.store)
    assert d.n_folds == 6
    assert d.best_trial_id == f.tracked.trial_id_of(best)
    assert set(d.tied_trial_ids) == {f.tracked.trial_id_of(i) for i in tied}
    assert d.test_train_ratio == pytest.approx(ratio)


def _bbc_by_hand(m, n_boot=1000, seed=0):
    """BBC-CV over folds (Tsamardinos et al. 2018), with diagnose's resampling seed."""
    n = m.shape[1]
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    oob = []
    for idx in draws:
        out = np.setdiff1d(np.arange(n), idx)
        if len(out):
            oob.append(m[int(np.argmax(m[:, idx].mean(axis=1))), out].mean())
    return float(np.mean(oob))


def test_ties_and_bbc_from_cv_results(sklearn_material):
    """GridSearchCV with 4 stratified folds, refit on f1: the diagnostics read
    the refit metric's split scores; recomputed here from cv_results_."""
    f = sklearn_material.fitted["grid-multimetric-cancer"]
    res = f.cv_results
    m = _fold_matrix(res, "f1")
    ratio = _true_ratio(f.tracked.search_cv.cv, f.X, f.y)
    best, tied = _tied_by_hand(m, ratio)
    d = hptrack.analysis.diagnose("grid-multimetric-cancer", store=sklearn_material.store)
    assert d.metric == "f1" and d.n_folds == 4 and d.n_configs == len(res["params"])
    assert d.best_trial_id == f.tracked.trial_id_of(best)
    assert d.best_cv == pytest.approx(res["mean_test_f1"].max(), abs=1e-12)
    assert d.best_cv_se == pytest.approx(m[best].std(ddof=1) / np.sqrt(4))
    assert set(d.tied_trial_ids) == {f.tracked.trial_id_of(i) for i in tied}
    assert d.tibshirani_bias == pytest.approx(float(np.mean(m.max(axis=0) - m[best])))
    estimate = _bbc_by_hand(m)
    assert d.corrected_best == pytest.approx(estimate)
    assert d.optimistic_bias == pytest.approx(m.mean(axis=1).max() - estimate)


def test_nested_estimate_from_the_loop_written_out(sklearn_material):
    scores = [s for _, s in sklearn_material.nested_by_hand]
    d = hptrack.analysis.diagnose("nested-iris", store=sklearn_material.store)
    assert d.nested is not None
    flat = [v for v in d.nested.values() if isinstance(v, float)]
    assert float(np.mean(scores)) in [pytest.approx(v) for v in flat], d.nested


# --- Pareto front ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nsga2-wine", "motpe-cancer"])
@pytest.mark.parametrize("path", ["decorator", "import"])
def test_pareto_front_is_optunas_best_trials(optuna_material, name, path):
    ran = optuna_material.ran[name]
    study = optuna.create_study(directions=list(ran.pattern.directions))
    study.add_trials(ran.trials)
    want = {t.number for t in study.best_trials}
    got = hptrack.analysis.pareto(name, store=optuna_material.stores[path])
    assert set(got.front["trial_number"].to_list()) == want


# --- compare: Friedman ------------------------------------------------------------------------

def test_compare_friedman_equals_scipy_on_the_same_blocks(analysis_material):
    """Blocks are seeds, one column per strategy; each cell the best value within
    the common budget (15 trials), read from study.trials."""
    names = analysis_material.compare_names
    r = hptrack.analysis.compare(list(names.values()), store=analysis_material.store, by="trials")
    assert r.by == "trials" and r.horizon == COMPARE_TRIALS
    strategies = r.tests["strategies"]
    assert sorted(strategies) == sorted(SAMPLERS)
    blocks = np.array([[min(t.value for t in analysis_material.studies[names[(s, seed)]].trials[:COMPARE_TRIALS])
                        for s in strategies] for seed in SEEDS])
    chi2, p = sps.friedmanchisquare(*blocks.T)
    assert r.tests["n_blocks"] == len(SEEDS)
    assert r.tests["friedman"]["chi2"] == pytest.approx(chi2)
    assert r.tests["friedman"]["p"] == pytest.approx(p)
    ranks = sps.rankdata(blocks, axis=1).mean(axis=0)   # minimize: the lowest value ranks 1
    assert list(r.tests["friedman"]["mean_ranks"].values()) == pytest.approx(ranks.tolist())
    per = {row["search"]: row["final_best"] for row in r.per_search.iter_rows(named=True)}
    for name in names.values():
        assert per[name] == analysis_material.studies[name].best_value
