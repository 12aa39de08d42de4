"""Functional ANOVA over a tree-ensemble surrogate (Hutter, Hoos, Leyton-Brown 2014).

The input is a design matrix already mapped onto the unit cube (see
analysis/source.py): each param's measure is uniform on [0, 1], so a tree's
leaves are axis-aligned boxes whose volume is their probability, and a tree's
marginals are exact sums over boxes (no sampling over the param space).

Choices made for accuracy at realistic trial counts (checked on Ishigami,
tests/test_sensitivity.py):

- The decomposed function is the *ensemble mean*, not each tree: marginals
  are linear in the function, so the ensemble's marginal is the mean of its
  trees' marginals, computed exactly on the union of their split points. The
  per-tree average of the paper (and Optuna) counts every tree's own bootstrap
  and split noise as high-order interaction.
- The default surrogate is a bag of gradient-boosted shallow trees
  (``surrogate="boosting"``). A fully grown random forest (``"forest"``, the
  paper's surrogate) smears every main effect: its deep leaves stretch across
  dimensions they were never split on, and with 2,000 trials in 5-d that
  shrinks Ishigami's x2 effect from 0.44 to about 0.37. Boosted depth-4 trees
  fit additive structure and low-order interactions almost exactly.
- The ensemble's total variance is not linear in its trees; it is integrated
  on a scrambled Sobol point set, the one approximation in the estimator.
- Spread ("std") is over the ensemble's members: bootstrap refits for
  boosting (20 by default), disjoint sub-forests for the forest.

Every per-leaf sum is a range update on a sorted grid, done with a difference
array and a cumulative sum (2-d for pairs): O(leaves + grid) per param or pair.
A pair's grid is capped at 256 cells per axis (box edges snapped to the
nearest cut; on Ishigami the x1-x3 fraction moves by < 0.001 against the
exact grid).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

SURROGATES = ("boosting", "forest")
# 20 bootstrap refits of 100 rounds each: enough refits for a percentile interval and a
# stability share (analysis/sensitivity.py), at about the cost of the former 5 x 300
BOOSTING_MEMBERS = 20
BOOSTING_TREES = 100
BOOSTING_RATE = 0.1
FOREST_MEMBERS = 8
MAX_THREADS = 4      # boosting members fitted at once (at most the machine's cores)
THREADS_FROM = 1000  # trials from which they are (2x faster on 2 cores at 3,000 trials, slower at 300)
# the total variance is integrated on 2^15 Sobol points, 2^12 below this many trials: a small
# fit's surrogate is coarse, and there predicting 2,000 trees on 2^15 points cost more than
# fitting them (on Ishigami and additive fits of 20-600 trials the fractions moved by < 0.001)
FEW_POINTS_BELOW = 1000


@dataclass
class Ensemble:
    """Leaves of all members as boxes. ``weight`` is the leaf's contribution to
    its member's prediction (leaf value x tree weight); members are averaged."""

    lo: np.ndarray          # (n_leaves, d)
    hi: np.ndarray          # (n_leaves, d)
    weight: np.ndarray      # (n_leaves,)
    member: np.ndarray      # (n_leaves,) member index
    n_members: int
    predict: list           # per member: callable X -> predictions


def forest_boxes(trees: Sequence[Any], d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, value, tree) of the leaves of many fitted sklearn trees, as boxes in [0, 1]^d,
    ``tree`` the index of each leaf's tree, leaves in tree order then node order.

    All trees' nodes in one array (children offset), walked level by level together and
    vectorised: a Python loop per node, or per tree, would cost more than the whole
    decomposition (2,000 small trees per search).
    """
    ts = [t.tree_ for t in trees]
    counts = np.array([t.node_count for t in ts])
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def joined(attr, offset):
        parts = [getattr(t, attr) for t in ts]
        if offset:  # child ids become ids in the joined array; a leaf's -1 stays -1
            parts = [np.where(a >= 0, a + o, -1) for a, o in zip(parts, start)]
        return np.concatenate(parts)

    left, right = joined("children_left", True), joined("children_right", True)
    feature, threshold = joined("feature", False), joined("threshold", False)
    value = np.concatenate([t.value.reshape(t.node_count, -1)[:, 0] for t in ts])
    lo = np.zeros((len(left), d))
    hi = np.ones((len(left), d))
    frontier = start
    while frontier.size:
        internal = frontier[left[frontier] >= 0]
        if not internal.size:
            break
        f = feature[internal]
        thr = np.clip(threshold[internal], 0.0, 1.0)
        lc, rc = left[internal], right[internal]
        for child in (lc, rc):
            lo[child] = lo[internal]
            hi[child] = hi[internal]
        hi[lc, f] = np.minimum(hi[lc, f], thr)
        lo[rc, f] = np.maximum(lo[rc, f], thr)
        frontier = np.concatenate([lc, rc])
    leaves = np.flatnonzero(left < 0)
    return lo[leaves], hi[leaves], value[leaves], np.searchsorted(start, leaves, side="right") - 1


def fit(X: np.ndarray, y: np.ndarray, *, surrogate: str = "boosting", n_trees: int | None = None,
        n_members: int | None = None, seed: int = 0,
        min_samples_leaf: int | None = None, progress: Any = None) -> Ensemble:
    """Fit the surrogate ensemble on X in [0, 1]^d and return its leaves."""
    from sklearn.ensemble import RandomForestRegressor

    X = np.asarray(X, float)
    y = np.asarray(y, float)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    los, his, ws, ms = [], [], [], []
    predict: list = []      # per member: a callable X -> predictions

    def add(m, trees, scale) -> None:
        lo, hi, v, _ = forest_boxes(trees, d)
        los.append(lo)
        his.append(hi)
        ws.append(v * scale)
        ms.append(np.full(len(v), m))

    if surrogate == "boosting":
        n_members = n_members or BOOSTING_MEMBERS
        rounds = n_trees or BOOSTING_TREES
        # each boosting round sees at most ~3,000 trials: rounds are what fitting
        # costs, and past that size more rows per round no longer change the fit
        subsample = min(0.8, max(0.2, 3000 / n))
        # a few trials per leaf smooths the fit, but a tiny search needs every split it can get
        leaf = min_samples_leaf or max(1, min(3, n // 50))
        # bootstrap refits: their spread is the uncertainty from the trials we happened to run;
        # every member's rows and seed drawn first, in order, so fitting them at once changes nothing
        draws = [(rng.integers(0, n, n) if n_members > 1 else np.arange(n), int(rng.integers(2**31)))
                 for _ in range(n_members)]

        X32 = np.ascontiguousarray(X, np.float32)  # what sklearn's trees split on

        def fit_member(draw):
            idx, random_state = draw
            with _unchecked():
                return boost(X32[idx], y[idx], n_trees=rounds, subsample=subsample,
                             min_samples_leaf=leaf, seed=random_state)

        # sklearn builds a tree without the GIL: members of a large search fit side by side on
        # the machine's cores (a small one's trees are mostly Python, which threads only slow)
        # (and not in a worker thread: sklearn fits a small tree there at half the speed)
        threads = min(len(draws), os.cpu_count() or 1, MAX_THREADS) if n >= THREADS_FROM else 1
        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        try:
            for m, (start, trees) in enumerate(pool.map(fit_member, draws) if pool else map(fit_member, draws)):
                add(m, trees, BOOSTING_RATE)
                predict.append(functools.partial(_predict, start, trees))
                if progress:
                    progress(1)
        finally:
            if pool is not None:
                pool.shutdown()
    elif surrogate == "forest":
        n_members = n_members or FOREST_MEMBERS
        n_trees = max(n_trees or 64, n_members)
        model = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_samples_leaf or 3,
                                      random_state=int(rng.integers(2**31)))
        model.fit(X, y)
        groups = np.array_split(np.arange(n_trees), n_members)
        for m, g in enumerate(groups):
            trees = [model.estimators_[i] for i in g]
            add(m, trees, 1.0 / len(trees))
            predict.append(lambda Z, trees=trees: np.mean([t.predict(Z) for t in trees], axis=0))
        if progress:
            progress(n_members)
    else:
        raise ValueError(f"surrogate {surrogate!r} is not one of {', '.join(SURROGATES)}")
    return Ensemble(np.concatenate(los), np.concatenate(his), np.concatenate(ws),
                    np.concatenate(ms), n_members, predict)


def _unchecked() -> Any:
    """sklearn without its input and parameter checks: the design is finite and in [0, 1]
    and the settings are ours, and checking them took a third of a small search's fit
    (2,000 trees). The fitted trees and the predictions are the same."""
    from sklearn import config_context

    return config_context(skip_parameter_validation=True, assume_finite=True)


def boost(X: np.ndarray, y: np.ndarray, *, n_trees: int = BOOSTING_TREES, subsample: float = 1.0,
          min_samples_leaf: int = 1, seed: int = 0) -> tuple[float, list]:
    """(start, trees): least-squares gradient boosting of depth-4 trees, X float32.

    What sklearn's GradientBoostingRegressor(loss="squared_error", max_depth=4) fits: start
    at the mean, then each round a squared-error tree on the residuals of a random
    ``subsample`` of the rows, its leaf values the residual means, added at BOOSTING_RATE.
    Written out with sklearn's public tree so each round skips the input checks
    (``check_input=False``), which cost small searches 4x the trees themselves. Two
    differences, neither in what is fitted: the subsample is of rows (sklearn zeroes the
    weights of the others, which still count toward ``min_samples_leaf``), and it is drawn
    from numpy's generator. tests/core/test_report_fast.py checks it against
    GradientBoostingRegressor.
    """
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(seed)
    # one generator for every tree's tie-breaking: a seed per tree would build a Mersenne
    # Twister per tree, which took longer than fitting the tree
    trees_state = np.random.RandomState(int(rng.integers(2**31)))
    n = len(y)
    in_bag = max(1, int(subsample * n))
    start = float(y.mean())
    fitted = np.full(n, start)
    trees = []
    for _ in range(n_trees):
        rows = np.sort(rng.permutation(n)[:in_bag]) if in_bag < n else slice(None)
        tree = DecisionTreeRegressor(criterion="squared_error", max_depth=4, min_samples_leaf=min_samples_leaf,
                                     random_state=trees_state)
        tree.fit(X[rows], (y - fitted)[rows], check_input=False)
        fitted += BOOSTING_RATE * _tree_predict(tree, X)
        trees.append(tree)
    return start, trees


def _tree_predict(tree: Any, X32: np.ndarray) -> np.ndarray:
    # the fitted tree's own predict (tree_ is its public structure): the estimator's
    # predict checks that it is fitted and wraps the result, 4x the cost on a small search
    return tree.tree_.predict(X32).reshape(len(X32), -1)[:, 0]


def _predict(start: float, trees: list, X: np.ndarray) -> np.ndarray:
    X32 = np.ascontiguousarray(X, np.float32)
    with _unchecked():
        return start + BOOSTING_RATE * np.sum([_tree_predict(t, X32) for t in trees], axis=0)


def qmc_points(d: int, seed: int, log2_n: int = 15) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.Sobol(d, scramble=True, seed=seed).random_base2(log2_n)


def variance_points(d: int, seed: int, n_trials: int) -> np.ndarray:
    """The Sobol points total_variance integrates on, for a fit of n_trials trials."""
    return qmc_points(d, seed, 12 if n_trials < FEW_POINTS_BELOW else 15)


def total_variance(ens: Ensemble, points: np.ndarray) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """(ensemble variance, ensemble mean, per-member variances, per-member means) over the cube."""
    preds = np.stack([p(points) for p in ens.predict])
    mean_pred = preds.mean(axis=0)
    return mean_pred.var(), mean_pred.mean(), preds.var(axis=1), preds.mean(axis=1)


def total_effects(ens: Ensemble, seed: int, log2_n: int = 12) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray]:
    """(ensemble E_j, per-member E_j, ensemble V, per-member V): E_j = E[(f(A) - f(A_B^j))^2] / 2,
    the variance that param j carries alone *and in every interaction* (Sobol's total
    effect times V), by Jansen's estimator on a scrambled Sobol set: A and B the two halves
    of 2d-dimensional points, A_B^j A with column j from B. It is 0 exactly when f does not
    depend on param j, so a small E_j / V is the test for fixing a param (a small main
    effect is not: a param can act only through interactions)."""
    d = ens.lo.shape[1]
    ab = qmc_points(2 * d, seed, log2_n)
    A, B = ab[:, :d], ab[:, d:]
    fA = np.stack([p(A) for p in ens.predict])
    mem_e = np.zeros((ens.n_members, d))
    ens_e = np.zeros(d)
    for j in range(d):
        AB = A.copy()
        AB[:, j] = B[:, j]
        diff = fA - np.stack([p(AB) for p in ens.predict])
        mem_e[:, j] = (diff ** 2).mean(axis=1) / 2
        ens_e[j] = (diff.mean(axis=0) ** 2).mean() / 2
    return ens_e, mem_e, fA.mean(axis=0).var(), fA.var(axis=1)


def _rest_volume(lengths, exclude) -> np.ndarray:
    keep = np.ones(lengths.shape[1], bool)
    keep[list(exclude)] = False
    return lengths[:, keep].prod(axis=1)


def cut_grid(ens: Ensemble, j: int, max_cells: int | None = None) -> np.ndarray:
    """Sorted cut points of param j over all leaves, with 0 and 1; at most
    max_cells cells (quantiles of the cuts, so the grid stays dense where the
    trees split) when a pair's 2-d grid would otherwise be too large."""
    cuts = np.unique(np.concatenate([[0.0, 1.0], ens.lo[:, j], ens.hi[:, j]]))
    if max_cells and len(cuts) - 1 > max_cells:
        inner = np.quantile(cuts, np.linspace(0, 1, max_cells + 1))
        cuts = np.unique(np.concatenate([[0.0, 1.0], inner]))
    return cuts


def _index(grid, x):
    # nearest cut point: exact when x is on the grid, snapped on a coarsened one
    i = np.searchsorted(grid, x)
    i = np.clip(i, 1, len(grid) - 1)
    return np.where(np.abs(grid[i - 1] - x) <= np.abs(grid[i] - x), i - 1, i)


def main_effect(ens: Ensemble, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid, f): marginal of param j per member, f[m, k] on cell [grid[k], grid[k+1]),
    without the member's constant (variances and shapes do not need it)."""
    grid = cut_grid(ens, j)
    K = len(grid) - 1
    w = ens.weight * _rest_volume(ens.hi - ens.lo, [j])
    diff = np.zeros((ens.n_members, K + 1))
    np.add.at(diff, (ens.member, _index(grid, ens.lo[:, j])), w)
    np.add.at(diff, (ens.member, _index(grid, ens.hi[:, j])), -w)
    return grid, np.cumsum(diff, axis=1)[:, :K]


def pair_effect(ens: Ensemble, j: int, k: int, max_cells: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid_j, grid_k, f): joint marginal of params j, k per member, shape (M, Kj, Kk)."""
    gj, gk = cut_grid(ens, j, max_cells), cut_grid(ens, k, max_cells)
    Kj, Kk = len(gj) - 1, len(gk) - 1
    w = ens.weight * _rest_volume(ens.hi - ens.lo, [j, k])
    aj, bj = _index(gj, ens.lo[:, j]), _index(gj, ens.hi[:, j])
    ak, bk = _index(gk, ens.lo[:, k]), _index(gk, ens.hi[:, k])
    diff = np.zeros((ens.n_members, Kj + 1, Kk + 1))
    m = ens.member
    np.add.at(diff, (m, aj, ak), w)
    np.add.at(diff, (m, bj, ak), -w)
    np.add.at(diff, (m, aj, bk), -w)
    np.add.at(diff, (m, bj, bk), w)
    return gj, gk, diff.cumsum(axis=1).cumsum(axis=2)[:, :Kj, :Kk]


def _var(f, cell_weights):
    """Variance of f over its trailing axes, cells weighted by their volume."""
    axes = tuple(range(1, f.ndim))
    mean = (f * cell_weights).sum(axis=axes, keepdims=True)
    return ((f - mean) ** 2 * cell_weights).sum(axis=axes)


def main_variances(ens: Ensemble) -> tuple[np.ndarray, np.ndarray]:
    """(ensemble V_j, per-member V_j) for every param: arrays (d,), (M, d)."""
    d = ens.lo.shape[1]
    ens_v, mem_v = np.zeros(d), np.zeros((ens.n_members, d))
    for j in range(d):
        grid, f = main_effect(ens, j)
        w = np.diff(grid)
        ens_v[j] = _var(f.mean(axis=0, keepdims=True), w)[0]
        mem_v[:, j] = _var(f, w)
    return ens_v, mem_v


def pair_variances(ens: Ensemble, j: int, k: int, max_cells: int = 256) -> tuple[Any, np.ndarray]:
    """(ensemble V_jk, per-member V_jk): the pure interaction, the joint
    marginal's variance minus both main effects (all on the same grid)."""
    gj, gk, f = pair_effect(ens, j, k, max_cells)
    wj, wk = np.diff(gj), np.diff(gk)
    W = np.outer(wj, wk)

    def pure(f):
        fj = (f * wk).sum(axis=2) / wk.sum()
        fk = (f * wj[:, None]).sum(axis=1) / wj.sum()
        return _var(f, W) - _var(fj, wj) - _var(fk, wk)

    return pure(f.mean(axis=0, keepdims=True))[0], pure(f)
