"""PED-ANOVA (Watanabe, Bansal, Hutter, IJCAI 2023): how much each param matters for
reaching the best trials.

A param's importance is the Pearson divergence between its distribution among the top
``quantile`` of trials and among all of them, each a Parzen estimate on a grid, scaled
by quantile^2. It needs no surrogate fit (microseconds per param), and it answers a
different question from fANOVA: not how much of the objective's variance over the whole
space a param explains, but how differently the best trials chose it.

This is what Optuna 5's ``PedAnovaImportanceEvaluator()`` (its default importance)
computes, on hptrack's design (analysis/source.py): the same cut (the quantile of
``-value`` when maximising, ties kept), the same grids (50 steps; fewer for ints and
log-ints; log params on the log scale; a cell per category of the space, taken or
not), the same Scott's-rule Parzen estimator with one prior kernel, and a conditional
param split into its active regime and the inactive one (which counts for nothing).
tests/optuna/test_ped_anova.py checks it against Optuna's evaluator on real and random
studies. One difference: a float with a ``step`` is gridded as a continuous float
(hptrack's design keeps no step).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hptrack.analysis.source import Design, Param

QUANTILE = 0.1        # Optuna's target_quantile: importance for reaching the top 10%
N_STEPS = 50          # grid cells of a continuous param
PRIOR_WEIGHT = 1.0
MIN_IN_REGIME = 2     # trials a regime (active / inactive) needs to count
SIGMA_MIN = 0.5 / 1.64


def ped_anova(d: Design, quantile: float = QUANTILE, rows: np.ndarray | None = None) -> np.ndarray:
    """Each param's PED-ANOVA importance (in ``d.params`` order), on the trials ``rows``
    (indices, repeats allowed: a bootstrap sample; default every trial)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    if d.direction not in ("maximize", "minimize"):
        raise ValueError("PED-ANOVA compares the best trials with the rest, so it needs the direction: "
                         "pass direction='maximize' or 'minimize'")
    X, y = (d.X, d.y) if rows is None else (d.X[rows], d.y[rows])
    out = np.zeros(len(d.params))
    n = len(y)
    if n <= 1:
        return out
    loss = -y if d.direction == "maximize" else y
    k = int(math.ceil(quantile * n)) - 1
    top = loss <= np.partition(loss, k)[k]
    for j, p in enumerate(d.params):
        u = X[:, j]
        active = u < 1.0 - p.missing if p.missing > 0 else np.ones(n, bool)
        n_active, n_top_active = int(active.sum()), int((top & active).sum())
        if n_active < MIN_IN_REGIME or not n_top_active or _single(p):
            continue
        cells, size = _cells(p, u[active] / (1.0 - p.missing))
        categorical = p.kind in ("categorical", "bool")
        pdf_top = _parzen(np.bincount(cells[top[active]], minlength=size), categorical) + 1e-12
        pdf_all = _parzen(np.bincount(cells, minlength=size), categorical) + 1e-12
        divergence = float(pdf_all @ ((pdf_top / pdf_all - 1) ** 2))
        alpha, beta = n_top_active / int(top.sum()), n_active / n
        out[j] = alpha ** 2 / beta * divergence
    return out * (top.sum() / n) ** 2


def _single(p: Param) -> bool:
    if p.kind in ("categorical", "bool"):
        return _n_choices(p) <= 1
    return p.low == p.high


def _n_choices(p: Param) -> int:
    # the space's categories, those no trial took included: each has a cell of the grid
    return max(len(p.categories), p.choices)


def _cells(p: Param, u: np.ndarray) -> tuple[np.ndarray, int]:
    """Grid cell of each active trial (``u`` its unit coordinate, the missing cell taken
    out), and the number of cells: Optuna's grid, on the values the coordinates stand for."""
    if p.kind in ("categorical", "bool"):
        k = len(p.categories)   # the observed ones; the cells after them are never taken
        return np.minimum((u * k).astype(int), k - 1), _n_choices(p)
    assert p.low is not None and p.high is not None  # a numeric param has its range
    low, high = p.low, p.high          # log10 of the range for a log param
    steps = N_STEPS
    if p.kind == "int" and not p.log:
        # source.py gives each integer an equal cell: its offset from low is exact
        x = low + np.rint(u * (high - low + 1) - 0.5)
        steps = min(round(high - low) + 1, N_STEPS)
    elif p.kind == "int":
        # the ints themselves, on the natural-log grid of powers of two Optuna uses
        lo_int, hi_int = round(10 ** low), round(10 ** high)
        x = np.log(np.rint(10 ** (low + u * (high - low))))
        low, high = math.log(lo_int), math.log(hi_int)
        steps = min(int(np.ceil(np.log(hi_int - lo_int + 1) / np.log(2))) + 1, N_STEPS)
    else:
        x = low + u * (high - low)     # linear in the analysed scale, as Optuna's ln scale is
    step_size = (high - low) / (steps - 1)
    cells = np.ceil((x - low) / step_size - 0.5).astype(int)   # a midpoint goes to the lower cell
    return np.clip(cells, 0, steps - 1), steps


def _parzen(counts: np.ndarray, categorical: bool) -> np.ndarray:
    """The pdf on the grid of a Parzen estimator of cells observed ``counts`` times,
    one kernel per observed cell (weighted by its count) and a prior kernel."""
    from scipy.special import ndtr

    size = len(counts)
    obs = np.flatnonzero(counts)
    w = counts[obs].astype(float)
    mix = np.append(w, PRIOR_WEIGHT)
    mix /= mix.sum()
    if categorical:
        kernels = np.full((len(obs) + 1, size), PRIOR_WEIGHT / (len(obs) + 1))
        kernels[np.arange(len(obs)), obs] += 1
        kernels /= kernels.sum(axis=1, keepdims=True)
        return mix @ kernels
    total, cum = w.sum(), np.cumsum(w)
    mean = obs @ w / total
    sigma = math.sqrt(((obs - mean) ** 2 @ w) / max(1.0, total - 1))
    q1 = np.searchsorted(cum, total // 4, side="left")
    q3 = np.searchsorted(cum, total * 3 // 4, side="right")
    iqr = obs[min(len(obs) - 1, q3)] - obs[q1]
    sigma = 1.059 * min(iqr / 1.34, sigma) * total ** -0.2
    mu = np.append(obs, (size - 1) / 2.0)
    sd = np.append(np.full(len(obs), max(sigma, SIGMA_MIN)), float(size))
    grid = np.arange(size)[:, None]
    mass = ndtr((grid + 0.5 - mu) / sd) - ndtr((grid - 0.5 - mu) / sd)
    norm = ndtr((size - 0.5 - mu) / sd) - ndtr((-0.5 - mu) / sd)
    return (mass / norm) @ mix
