"""hptrack.analysis.stats against hand-computed and published worked examples."""

import numpy as np
import pytest
from scipy import stats as sps

from hptrack.analysis import stats as S

# A tiny fold-score matrix: 3 configurations x 4 folds, higher is better.
TINY = np.array([
    [0.9, 0.5, 0.8, 0.6],   # mean 0.700 (the plain best)
    [0.6, 0.7, 0.6, 0.7],   # mean 0.650
    [0.5, 0.9, 0.5, 0.8],   # mean 0.675
])


def test_corrected_ttest_by_hand():
    # d = c0 - c1 = [0.3, -0.2, 0.2, -0.1]; mean 0.05; var(ddof=1) = 0.17 / 3
    # corrected: t = 0.05 / sqrt((1/4 + 1/3) * 0.17/3) = 0.27501, df = 3
    r = S.corrected_ttest(TINY[0], TINY[1])
    assert r.mean_diff == pytest.approx(0.05)
    assert r.df == 3
    assert r.statistic == pytest.approx(0.05 / np.sqrt((1 / 4 + 1 / 3) * 0.17 / 3))
    assert r.statistic == pytest.approx(0.27501, abs=1e-5)
    assert r.pvalue == pytest.approx(2 * sps.t.sf(0.27501, 3), abs=1e-5)
    # the uncorrected resampled t-test would claim more: t = 0.05/sqrt(0.17/3/4) = 0.42008
    plain = sps.ttest_rel(TINY[0], TINY[1])
    assert plain.statistic == pytest.approx(0.42008, abs=1e-5) and plain.pvalue < r.pvalue
    # an explicit n_test/n_train ratio (e.g. 80/20 holdout repeated 4 times)
    r2 = S.corrected_ttest(TINY[0], TINY[1], test_train_ratio=0.25)
    assert r2.statistic == pytest.approx(0.05 / np.sqrt(0.5 * 0.17 / 3))
    assert S.corrected_ttest(TINY[0], TINY[1], alternative="greater").pvalue == pytest.approx(r.pvalue / 2)


def test_corrected_ttest_degenerate():
    assert S.corrected_ttest([1, 1, 1], [1, 1, 1]).pvalue == 1.0
    assert S.corrected_ttest([2, 2, 2], [1, 1, 1]).pvalue == 0.0
    with pytest.raises(ValueError):
        S.corrected_ttest([1], [2])


def test_bbc_cv_by_hand():
    boots = [
        [0, 0, 2, 2],  # in-bag means .85 .60 .50 -> c0; out of bag folds 1,3: (.5+.6)/2 = .55
        [1, 1, 3, 3],  # .55 .70 .85 -> c2; out of bag folds 0,2: (.5+.5)/2 = .50
        [0, 1, 2, 3],  # nothing out of bag: skipped
        [1, 2, 3, 3],  # .625 .675 .75 -> c2; out of bag fold 0: .50
    ]
    r = S.bbc_cv(TINY, indices=boots)
    assert r.n_boot == 3
    assert r.best == pytest.approx(0.70)
    assert r.estimate == pytest.approx((0.55 + 0.50 + 0.50) / 3)
    assert r.bias == pytest.approx(0.70 - 1.55 / 3)


def test_tibshirani_bias_by_hand():
    # fold maxima .9 .9 .8 .8 minus the mean-best c0 (.9 .5 .8 .6) -> 0, .4, 0, .2
    assert S.tibshirani_bias(TINY) == pytest.approx(0.15)
    # a configuration best on every fold has no bias
    assert S.tibshirani_bias(np.vstack([TINY, TINY.max(axis=0) + 0.1])) == 0.0


def test_expected_max_normal_values():
    assert S.expected_max_normal(1) == pytest.approx(0.0, abs=1e-9)
    assert S.expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi))
    assert S.expected_max_normal(10) == pytest.approx(1.54, abs=0.005)
    assert S.expected_max_normal(50) == pytest.approx(2.25, abs=0.005)


@pytest.mark.parametrize("k, expected", [(10, 1.54), (50, 2.25)])
def test_winners_curse_where_theory_puts_it(k, expected):
    # K tied configurations, 5 folds of noise with sd sigma: the CV mean has sd
    # s = sigma/sqrt(5), and the best observed mean overshoots the truth by about
    # s * E[max of K normals]. BBC-CV's bias estimate recovers that overshoot.
    rng = np.random.default_rng(k)
    sigma, folds, reps = 0.02, 5, 400
    s = sigma / np.sqrt(folds)
    fold = rng.normal(0.8, sigma, size=(reps, k, folds))
    overshoot = (fold.mean(axis=2).max(axis=1) - 0.8) / s
    # sd of the maximum is < 0.6, so over 400 reps the mean is within ~0.03 (1 SE)
    assert overshoot.mean() == pytest.approx(expected, abs=0.09)
    bias = np.array([S.bbc_cv(fold[r], n_boot=200, seed=r).bias for r in range(120)]) / s
    assert bias.mean() == pytest.approx(expected, rel=0.15)
    # the Tibshirani estimate is positive too, and in the same range (it overestimates)
    tib = np.mean([S.tibshirani_bias(fold[r]) for r in range(120)]) / s
    assert expected * 0.8 < tib < expected * 1.6


def test_demsar_table6_from_printed_ranks():
    # Demsar (2006), JMLR 7, section 3.2.4: four methods on 14 data sets
    r = S.friedman_from_ranks([3.143, 2.000, 2.893, 1.964], n=14)
    assert r.chi2 == pytest.approx(9.28, abs=0.005)
    assert r.f == pytest.approx(3.69, abs=0.005)
    # critical F(3, 39) at 0.05 is 2.85: the null is rejected
    assert sps.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.01) and r.f_pvalue < 0.05
    assert S.nemenyi_q(4, 0.05) == pytest.approx(2.569, abs=0.001)
    assert S.nemenyi_cd(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)
    assert S.nemenyi_q(2, 0.05) == pytest.approx(1.960, abs=0.001)  # Demsar's table 5a
    assert S.nemenyi_q(10, 0.10) == pytest.approx(2.920, abs=0.001)


def test_friedman_matrix_matches_scipy_including_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=(12, 4)) + [0, 1, 2, 3], 1)  # rounding makes ties
    r = S.friedman(scores)
    ref = sps.friedmanchisquare(*scores.T)
    assert r.chi2 == pytest.approx(ref.statistic)
    assert r.chi2_pvalue == pytest.approx(ref.pvalue)
    assert r.mean_ranks.sum() == pytest.approx(4 * 5 / 2)
    assert np.argmin(r.mean_ranks) == 3  # highest scores -> rank 1
    assert r.f == pytest.approx((12 - 1) * r.chi2 / (12 * 3 - r.chi2))


def test_holm_and_wilcoxon_holm():
    assert S.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 3)) * 0.1 + [0.0, 0.0, 0.5]
    rows = {(r["a"], r["b"]): r for r in S.wilcoxon_holm(scores, names=["a", "b", "c"])}
    assert rows[("a", "c")]["significant"] and rows[("b", "c")]["significant"]
    assert not rows[("a", "b")]["significant"]
    assert rows[("a", "c")]["mean_diff"] < 0
    p = sps.wilcoxon(scores[:, 0], scores[:, 2]).pvalue
    assert rows[("a", "c")]["pvalue"] == pytest.approx(p)
    assert rows[("a", "c")]["p_holm"] >= rows[("a", "c")]["pvalue"]
    same = S.wilcoxon_holm(np.ones((5, 2)))
    assert same[0]["pvalue"] == 1.0 and not same[0]["significant"]


def test_rank_stability_and_ties():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, size=(20, 5))
    # bootstrap means share ~63% of their folds with the original, so even pure
    # noise keeps its winner often; a real winner keeps it always
    stays, tau = S.rank_stability(noise, n_boot=400)
    assert stays < 0.7 and tau < 0.6
    clear = noise.copy()
    clear[7] += 0.2
    stays, _ = S.rank_stability(clear, n_boot=400)
    assert stays == 1.0
    assert S.tied_with_best(clear).sum() == 0
    assert S.tied_with_best(noise).sum() >= 15


def test_bootstrap_helpers():
    x = np.arange(100.0)
    lo, hi = S.bootstrap_ci(x, n_boot=500)
    assert lo < 49.5 < hi and hi - lo < 25
    m = np.array([[1.0, np.nan, 3.0], [3.0, np.nan, 5.0]])
    mean, lo, hi = S.bootstrap_band(m, n_boot=200)
    assert mean[0] == 2.0 and np.isnan(mean[1]) and lo[2] >= 3.0 and hi[2] <= 5.0


def test_friedman_perfect_agreement_is_not_overstated():
    # two tasks, two methods, the same winner twice: chance 1/2 under the null
    r = S.friedman([[1.0, 0.0], [1.0, 0.0]])
    assert r.f == float("inf") and r.f_pvalue == pytest.approx(0.5)
    r = S.friedman(np.tile([3.0, 2.0, 1.0], (6, 1)))
    assert r.f_pvalue == pytest.approx(6.0 ** -5) and r.chi2 == pytest.approx(12.0)
