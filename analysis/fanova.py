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


def tree_boxes(tree: Any, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, value) of the leaves of one fitted sklearn tree, as boxes in [0, 1]^d.

    Level by level, vectorised: a Python loop per node would cost more than
    the whole decomposition on deep trees.
    """
    t = tree.tree_
    left, right = t.children_left, t.children_right
    lo = np.zeros((t.node_count, d))
    hi = np.ones((t.node_count, d))
    frontier = np.array([0])
    while frontier.size:
        internal = frontier[left[frontier] >= 0]
        if not internal.size:
            break
        f = t.feature[internal]
        thr = np.clip(t.threshold[internal], 0.0, 1.0)
        lc, rc = left[internal], right[internal]
        for child in (lc, rc):
            lo[child] = lo[internal]
            hi[child] = hi[internal]
        hi[lc, f] = np.minimum(hi[lc, f], thr)
        lo[rc, f] = np.maximum(lo[rc, f], thr)
        frontier = np.concatenate([lc, rc])
    leaves = np.flatnonzero(left < 0)
    return lo[leaves], hi[leaves], t.value[leaves].reshape(len(leaves), -1)[:, 0]


def fit(X: np.ndarray, y: np.ndarray, *, surrogate: str = "boosting", n_trees: int | None = None,
        n_members: int | None = None, seed: int = 0,
        min_samples_leaf: int | None = None, progress: Any = None) -> Ensemble:
    """Fit the surrogate ensemble on X in [0, 1]^d and return its leaves."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    X = np.asarray(X, float)
    y = np.asarray(y, float)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    los, his, ws, ms = [], [], [], []
    predict: list = []      # per member: a callable X -> predictions

    def add(m, trees, scale) -> None:
        for est in trees:
            lo, hi, v = tree_boxes(est, d)
            los.append(lo)
            his.append(hi)
            ws.append(v * scale)
            ms.append(np.full(len(v), m))

    if surrogate == "boosting":
        n_members = n_members or BOOSTING_MEMBERS
        n_trees = n_trees or BOOSTING_TREES
        # each boosting round sees at most ~3,000 trials: rounds are what fitting
        # costs, and past that size more rows per round no longer change the fit
        subsample = min(0.8, max(0.2, 3000 / n))
        # a few trials per leaf smooths the fit, but a tiny search needs every split it can get
        leaf = min_samples_leaf or max(1, min(3, n // 50))
        # bootstrap refits: their spread is the uncertainty from the trials we happened to run;
        # every member's rows and seed drawn first, in order, so fitting them at once changes nothing
        draws = [(rng.integers(0, n, n) if n_members > 1 else np.arange(n), int(rng.integers(2**31)))
                 for _ in range(n_members)]

        def fit_member(draw):
            idx, random_state = draw
            model = GradientBoostingRegressor(
                n_estimators=n_trees, max_depth=4, learning_rate=BOOSTING_RATE, subsample=subsample,
                min_samples_leaf=leaf, random_state=random_state)
            with _unchecked():
                return model.fit(X[idx], y[idx])

        # sklearn builds a tree without the GIL: members of a large search fit side by side on
        # the machine's cores (a small one's trees are mostly Python, which threads only slow)
        # (and not in a worker thread: sklearn fits a small tree there at half the speed)
        threads = min(len(draws), os.cpu_count() or 1, MAX_THREADS) if n >= THREADS_FROM else 1
        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        try:
            for m, model in enumerate(pool.map(fit_member, draws) if pool else map(fit_member, draws)):
                add(m, model.estimators_[:, 0], model.learning_rate)
                predict.append(functools.partial(_predict, model))
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


def _predict(model: Any, X: np.ndarray) -> np.ndarray:
    with _unchecked():
        return model.predict(X)


def qmc_points(d: int, seed: int, log2_n: int = 15) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.Sobol(d, scramble=True, seed=seed).random_base2(log2_n)


def total_variance(ens: Ensemble, points: np.ndarray) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """(ensemble variance, ensemble mean, per-member variances, per-member means) over the cube."""
    preds = np.stack([p(points) for p in ens.predict])
    mean_pred = preds.mean(axis=0)
    return mean_pred.var(), mean_pred.mean(), preds.var(axis=1), preds.mean(axis=1)


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
