"""Statistics for overfitting diagnostics and strategy comparison, as plain
functions on numpy arrays so that each can be checked against a published
worked example.

Conventions: score matrices are "higher is better" (negate errors first).
A fold-score matrix has one row per configuration and one column per fold.

- :func:`corrected_ttest`: Nadeau & Bengio (2003) corrected resampled t-test.
- :func:`bbc_cv`: bootstrap bias-corrected CV (Tsamardinos et al. 2018).
- :func:`tibshirani_bias`: Tibshirani & Tibshirani (2009) bias of the best CV score.
- :func:`friedman`, :func:`nemenyi_cd`, :func:`wilcoxon_holm`: Demsar (2006).
- :func:`rank_stability`, :func:`bootstrap_ci`, :func:`bootstrap_band`,
  :func:`expected_max_normal`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as sps

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from numpy.typing import ArrayLike

__all__ = [
    "BBC",
    "Friedman",
    "TTest",
    "bbc_cv",
    "bootstrap_band",
    "bootstrap_ci",
    "corrected_ttest",
    "expected_max_normal",
    "friedman",
    "friedman_from_ranks",
    "holm",
    "kendall_tau_of_order",
    "mean_ranks",
    "nemenyi_cd",
    "nemenyi_q",
    "pvalues_vs_best",
    "rank_stability",
    "tibshirani_bias",
    "tied_with_best",
    "wilcoxon_holm",
]


def _matrix(scores, name: str = "scores") -> np.ndarray:
    a = np.asarray(scores, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


# --- Nadeau & Bengio ---------------------------------------------------------------------
@dataclass(frozen=True)
class TTest:
    statistic: float
    pvalue: float
    df: int
    mean_diff: float


def corrected_ttest(a: ArrayLike, b: ArrayLike, test_train_ratio: float | None = None,
                    alternative: str = "two-sided") -> TTest:
    """Corrected resampled t-test of ``a - b`` over J paired resamples (folds).

    The folds share training data, so the differences are correlated and the
    plain t-test is far too liberal. Nadeau & Bengio (2003) inflate the
    variance: ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d, ddof=1))``
    with J-1 degrees of freedom. ``test_train_ratio`` defaults to 1/(J-1),
    the ratio of k-fold CV with k = J.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError("corrected_ttest needs two paired 1-D arrays of at least 2 folds")
    j = len(d)
    ratio = 1.0 / (j - 1) if test_train_ratio is None else float(test_train_ratio)
    mean, var = float(d.mean()), float(d.var(ddof=1))
    denom = np.sqrt((1.0 / j + ratio) * var)
    df = j - 1
    if denom == 0:
        # identical differences on every fold: no spread to test against
        t = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
    else:
        t = mean / denom
    if alternative == "two-sided":
        p = 2 * sps.t.sf(abs(t), df)
    elif alternative == "greater":
        p = sps.t.sf(t, df)
    elif alternative == "less":
        p = sps.t.cdf(t, df)
    else:
        raise ValueError("alternative must be 'two-sided', 'greater' or 'less'")
    return TTest(float(t), float(min(1.0, p)), df, mean)


def pvalues_vs_best(fold_scores: ArrayLike, test_train_ratio: float | None = None,
                    best: int | None = None) -> np.ndarray:
    """Two-sided p-value of the corrected t-test of each configuration against
    the best (highest mean, or row ``best``); NaN for the best itself."""
    s = _matrix(fold_scores, "fold_scores")
    if s.shape[1] < 2:
        raise ValueError("need at least 2 folds to test ties")
    best = int(np.argmax(s.mean(axis=1))) if best is None else best
    p = np.full(len(s), np.nan)
    for i in range(len(s)):
        if i != best:
            p[i] = corrected_ttest(s[best], s[i], test_train_ratio).pvalue
    return p


def tied_with_best(fold_scores: ArrayLike, alpha: float = 0.05, test_train_ratio: float | None = None,
                   best: int | None = None) -> np.ndarray:
    """Boolean mask of the configurations whose corrected t-test against the
    best (highest mean) is not significant at ``alpha`` (two-sided). The best
    itself is False."""
    p = pvalues_vs_best(fold_scores, test_train_ratio, best)
    return np.nan_to_num(p, nan=-1.0) >= alpha


# --- BBC-CV ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BBC:
    estimate: float      # bias-corrected performance of the selected configuration
    best: float          # the plain best mean score (what the search reports)
    bias: float          # best - estimate: how optimistic the plain best is
    ci: tuple            # 95% percentile interval of the out-of-bag estimates
    n_boot: int          # resamples used (those with an empty out-of-bag set are skipped)


def bbc_cv(scores: ArrayLike, n_boot: int = 1000, seed: int = 0, indices: Any = None) -> BBC:
    """Bootstrap bias-corrected CV (Tsamardinos, Greasidou & Borboudakis 2018).

    ``scores`` is configurations x evaluation units, higher is better. The
    paper's units are out-of-sample predictions; with only fold-level scores
    the units are folds. Each bootstrap draws units with replacement, picks the
    configuration with the best in-bag mean and scores it on the out-of-bag
    units; the estimate is the mean of those out-of-bag scores. Selection and
    evaluation never see the same unit, so the winner's curse is removed.
    ``indices`` (in-bag index arrays, one row of equal length per resample) replaces
    the random draws.
    """
    s = _matrix(scores)
    n = s.shape[1]
    if indices is None:
        rng = np.random.default_rng(seed)
        indices = rng.integers(0, n, size=(n_boot, n))
    indices = np.asarray(indices, dtype=int)
    if indices.ndim != 2:
        raise ValueError(f"indices must be resamples x draws (rows of one length), got shape {indices.shape}")
    out = np.ones((len(indices), n), dtype=bool)
    out[np.arange(len(indices))[:, None], indices] = False
    # the winner of each resample's in-bag units; in chunks (configurations x resamples x units can be large)
    chosen = np.concatenate([np.argmax(s[:, indices[b:b + 64]].mean(axis=2), axis=0)
                             for b in range(0, len(indices), 64)] or [np.zeros(0, int)])
    oob_scores = [s[c, o].mean() for c, o in zip(chosen, out) if o.any()]
    best = float(s.mean(axis=1).max())
    if not oob_scores:
        raise ValueError("every bootstrap sample held all units; nothing out of bag")
    oob = np.asarray(oob_scores)
    est = float(oob.mean())
    return BBC(est, best, best - est, tuple(np.quantile(oob, [0.025, 0.975]).tolist()), len(oob))


def tibshirani_bias(scores: ArrayLike) -> float:
    """Tibshirani & Tibshirani (2009): bias of the best CV score, from the folds.

    With e_k(c) the score of configuration c on fold k (higher is better), c*
    the configuration with the best mean and c_k the best on fold k, the bias is
    ``mean_k [e_k(c_k) - e_k(c*)]`` (>= 0). Cheap, no resampling.
    """
    s = _matrix(scores)
    best = int(np.argmax(s.mean(axis=1)))
    return float(np.mean(s.max(axis=0) - s[best]))


# --- Friedman, Nemenyi, Wilcoxon-Holm ----------------------------------------------------
@dataclass(frozen=True)
class Friedman:
    chi2: float
    chi2_pvalue: float
    f: float              # Iman & Davenport's F, less conservative than chi2
    f_pvalue: float
    mean_ranks: np.ndarray  # 1 = best
    n: int
    k: int


def mean_ranks(scores: ArrayLike) -> np.ndarray:
    """Average rank of each column over the rows (1 = highest score; ties share ranks)."""
    s = _matrix(scores)
    return sps.rankdata(-s, axis=1).mean(axis=0)


def friedman_from_ranks(ranks: ArrayLike, n: int, tie_correction: float = 1.0) -> Friedman:
    """Friedman chi-square and Iman-Davenport F from mean ranks (Demsar 2006, eq. 1-2)."""
    r = np.asarray(ranks, dtype=float)
    k = len(r)
    if k < 2 or n < 2:
        raise ValueError("Friedman's test needs at least 2 methods and 2 tasks")
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(r ** 2) - k * (k + 1) ** 2 / 4.0)
    chi2 = float(chi2 / tie_correction) if tie_correction > 0 else 0.0
    p_chi2 = float(sps.chi2.sf(chi2, k - 1))
    denom = n * (k - 1) - chi2
    if denom <= 0:
        # every row ranks the methods the same way: F is infinite, and its
        # F-distribution p-value (0) would overstate the evidence for small n.
        # The exact chance of that under the null is (1/k!)^(n-1).
        f, p_f = float("inf"), float(math.factorial(k) ** -(n - 1.0))
    else:
        f = (n - 1) * chi2 / denom
        p_f = float(sps.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return Friedman(chi2, p_chi2, float(f), p_f, r, int(n), k)


def friedman(scores: ArrayLike) -> Friedman:
    """Friedman test on an N-tasks x k-methods matrix, higher is better.

    Ties within a row share ranks and the statistic gets the usual tie
    correction (as scipy.stats.friedmanchisquare); without ties it is exactly
    Demsar's formula.
    """
    s = _matrix(scores)
    n, k = s.shape
    ranks = sps.rankdata(-s, axis=1)
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts ** 3 - counts))
    correction = 1.0 - ties / (k ** 3 - k) / n if k > 1 else 1.0
    return friedman_from_ranks(ranks.mean(axis=0), n, correction)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test: the studentized range
    quantile for k groups and infinite df, divided by sqrt(2)."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks (Demsar 2006): q_alpha sqrt(k(k+1)/(6N))."""
    if k < 2 or n < 1:
        raise ValueError("nemenyi_cd needs k >= 2 methods and n >= 1 tasks")
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, (m - i) * p[j])
        adj[j] = min(1.0, running)
    return adj


def wilcoxon_holm(scores: ArrayLike, names: list[str] | None = None, alpha: float = 0.05) -> list[dict]:
    """Pairwise Wilcoxon signed-rank tests between the columns of an N x k
    matrix (higher is better), Holm-corrected. One dict per pair with
    ``a, b, mean_diff (a - b), statistic, pvalue, p_holm, significant``."""
    s = _matrix(scores)
    k = s.shape[1]
    names = list(names) if names is not None else [str(i) for i in range(k)]
    rows: list[dict[str, Any]] = []
    for i, j in itertools.combinations(range(k), 2):
        d = s[:, i] - s[:, j]
        if np.all(d == 0):
            stat, p = 0.0, 1.0  # scipy refuses all-zero differences; there is nothing to see
        else:
            res = sps.wilcoxon(s[:, i], s[:, j], zero_method="wilcox")
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"a": names[i], "b": names[j], "mean_diff": float(d.mean()),
                     "statistic": stat, "pvalue": p})
    for row, adj in zip(rows, holm([r["pvalue"] for r in rows]) if rows else []):
        row["p_holm"] = float(adj)
        row["significant"] = bool(adj < alpha)
    return rows


# --- resampling ----------------------------------------------------------------------------
def rank_stability(fold_scores: ArrayLike, n_boot: int = 1000, seed: int = 0, top_k: int = 5) -> tuple[float, float]:
    """(probability that the best configuration stays best, mean Kendall tau of
    the top-k) over bootstrap resamples of the folds. The tau compares the
    original order of the top-k with their order in each resample."""
    s = _matrix(fold_scores, "fold_scores")
    c, n = s.shape
    means = s.mean(axis=1)
    best = int(np.argmax(means))
    top = np.argsort(-means, kind="stable")[:min(top_k, c)]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot_means = s[:, idx].mean(axis=2)            # configs x n_boot
    stays = float(np.mean(np.argmax(boot_means, axis=0) == best))
    if len(top) < 2 or n_boot < 1:
        return stays, float("nan")
    taus = kendall_tau_of_order(boot_means[top])   # the original order, best first, against each resample
    return stays, float(np.mean(np.where(np.isnan(taus), 0.0, taus)))


def kendall_tau_of_order(y: ArrayLike) -> np.ndarray:
    """Kendall's tau-b between the order 0, 1, ..., k-1 (first = largest) and
    each column of the k x B matrix ``y``: ``scipy.stats.kendalltau(-arange(k),
    y[:, b]).statistic`` for every b at once (the same floating-point operations
    on the same integer counts, so the same bits; NaN where scipy gives NaN: every
    value tied, or a NaN among them). A thousand scipy calls took 0.4 s."""
    y = np.asarray(y, dtype=float)
    k = y.shape[0]
    i, j = np.triu_indices(k, 1)             # the pairs i < j, ranked i before j
    dis = (y[i] < y[j]).sum(axis=0)          # the resample ranks them the other way
    ytie = (y[i] == y[j]).sum(axis=0)
    tot = k * (k - 1) // 2
    con_minus_dis = tot - ytie - 2 * dis     # no ties in the order, none joint
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = con_minus_dis / np.sqrt(tot) / np.sqrt(tot - ytie)
    tau = np.minimum(1.0, np.maximum(-1.0, tau))
    return np.where((ytie == tot) | np.isnan(y).any(axis=0), np.nan, tau)


def bootstrap_ci(x: ArrayLike, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0, stat: Callable[[np.ndarray],
                 float] = np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over a 1-D sample."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_band(matrix: ArrayLike, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile bootstrap band of the mean, column by column, of a
    runs x axis-points matrix (NaN = no value yet, ignored). Returns (mean, lo, hi)."""
    m = np.asarray(matrix, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, m.shape[1]))
    with np.errstate(all="ignore"), _quiet():
        mean = np.nanmean(m, axis=0)
        for start in range(0, n_boot, 64):  # in chunks: runs x points x n_boot can be large
            stop = min(n_boot, start + 64)
            idx = rng.integers(0, m.shape[0], size=(stop - start, m.shape[0]))
            boots[start:stop] = np.nanmean(m[idx], axis=1)
        lo, hi = np.nanquantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    return mean, lo, hi


@contextlib.contextmanager
def _quiet():
    # all-NaN columns (no run has a value yet at that point) are expected, not news
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def expected_max_normal(k: int) -> float:
    """E[max of k independent standard normals] (1.539 for k=10, 2.249 for k=50):
    how many noise standard deviations the best of k tied configurations looks
    better than it is."""
    from scipy.integrate import quad

    if k < 1:
        raise ValueError("k must be >= 1")

    def f(x):
        return x * k * sps.norm.pdf(x) * sps.norm.cdf(x) ** (k - 1)

    return float(quad(f, -12, 12, limit=200)[0])
