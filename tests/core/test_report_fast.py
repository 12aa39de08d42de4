"""The fast paths of ``hptrack report`` (issue #16) against the slow obvious computations
they replace, on randomised inputs: every one must give the same answer, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from hptrack.analysis import stats as S

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _same(a, b) -> bool:
    """Equal as floats, NaN equal to NaN (bit-level equality for the numbers that are not NaN)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# a k x B matrix whose values often tie (a few levels), sometimes NaN
_levels = st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 1e-300, np.nan])
_columns = st.integers(2, 7).flatmap(lambda k: st.lists(
    st.lists(st.one_of(_levels, st.floats(-1e6, 1e6)), min_size=k, max_size=k), min_size=1, max_size=12))


def _scipy_taus(y):
    """The slow obvious computation: one scipy call per column."""
    ref = -np.arange(y.shape[0], dtype=float)
    return np.array([sps.kendalltau(ref, y[:, b]).statistic for b in range(y.shape[1])])


@FAST
@given(_columns)
def test_kendall_tau_of_order_is_scipys_kendalltau_per_column(cols):
    y = np.array(cols, float).T                        # k x B
    assert _same(S.kendall_tau_of_order(y), _scipy_taus(y))


@FAST
@given(st.integers(1, 8), st.integers(2, 6), st.integers(1, 200), st.integers(0, 3), st.integers(1, 6),
       st.booleans())
def test_rank_stability_equals_the_per_resample_scipy_loop(c, n, n_boot, seed, top_k, ties):
    rng = np.random.default_rng(seed + 10 * c + 100 * n)
    m = rng.choice([0.7, 0.8, 0.9], size=(c, n)) if ties else rng.normal(0.8, 0.05, size=(c, n))
    fast = S.rank_stability(m, n_boot=n_boot, seed=seed, top_k=top_k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "kendall_tau_of_order", _scipy_taus)
        slow = S.rank_stability(m, n_boot=n_boot, seed=seed, top_k=top_k)
    assert _same(fast, slow)
