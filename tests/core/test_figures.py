"""The report's figure specs: the robust value axis against numpy, outlier marking, axis kinds,
top-k colours, and a page whose names and values are hostile HTML."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hptrack
from hptrack.analysis.report import figures

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), st.floats(0, 1))
def test_quantile_is_numpys_linear_quantile(values, q):
    v = sorted(values)
    assert figures._quantile(v, q) == pytest.approx(float(np.quantile(v, q)), rel=1e-9, abs=1e-9)


def _reference_range(values):
    """The axis by the obvious computation: numpy quartiles, 3 IQR, 5% padding; None when
    the quartiles coincide or every value is in it."""
    v = np.asarray(values, float)
    q1, q3 = np.quantile(v, [0.25, 0.75])
    if q3 - q1 <= 0:
        return None
    lo, hi = max(v.min(), q1 - 3 * (q3 - q1)), min(v.max(), q3 + 3 * (q3 - q1))
    pad = 0.05 * (hi - lo or 1.0)
    if v.min() >= lo - pad and v.max() <= hi + pad:
        return None
    return lo - pad, hi + pad


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=8, max_size=60), st.lists(finite, max_size=3))
def test_robust_range_is_the_reference_and_leaves_out_only_far_values(bulk, extra):
    values = bulk + [x * 1e3 for x in extra]
    got, want = figures.robust(values), _reference_range(values)
    if want is None:
        assert got is None
        return
    assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
    q1, q3 = np.quantile(values, [0.25, 0.75])
    outside = [x for x in values if x < got[0] or x > got[1]]
    assert outside and all(x < q1 - 3 * (q3 - q1) or x > q3 + 3 * (q3 - q1) for x in outside)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=8, max_size=40, unique=True), st.floats(1e7, 1e9))
def test_clamp_moves_outliers_onto_the_edge_and_loses_no_trial(values, far):
    # distinct values: the quartiles differ (with a zero IQR there is no bulk and no clamp)
    ys = values + [far, -far]
    trials = list(range(len(ys)))
    rng = figures.robust(ys)
    traces = figures.clamp(figures.points(trials, ys, trials), rng)
    assert rng is not None and len(traces) == 2
    inside, marked = traces
    drawn = {n for n, y in zip(inside["customdata"], inside["y"]) if y is not None}
    assert drawn | set(marked["customdata"]) == set(trials) and not drawn & set(marked["customdata"])
    assert set(marked["y"]) <= {rng[0], rng[1]} and len(trials) - 2 in marked["customdata"]
    assert marked["marker"]["symbol"][marked["customdata"].index(len(ys) - 2)] == "triangle-up"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-5, 5).map(float)), min_size=1, max_size=80),
       st.sampled_from(["maximize", "minimize"]))
def test_the_compressed_best_so_far_is_the_full_step_line(values, direction):
    """running_best against numpy's accumulate; changes() keeps the same step line: at every
    trial the last kept point at or before it has the full line's value."""
    best = figures.running_best(values, direction)
    known = np.array([np.nan if v is None else v for v in values])
    fill = -np.inf if direction == "maximize" else np.inf
    acc = (np.maximum if direction == "maximize" else np.minimum).accumulate(np.where(np.isnan(known), fill, known))
    assert [None if not np.isfinite(a) else a for a in acc] == best
    xs = list(range(len(values)))
    kx, ky = figures.changes(xs, best)
    assert kx[0] == 0 and kx[-1] == len(values) - 1 and len(kx) <= len(xs)
    for x in xs:
        k = max(i for i, v in enumerate(kx) if v <= x)
        assert ky[k] == best[x]


def test_rank_colours_mark_exactly_the_top_k():
    rng = np.random.default_rng(0)
    v = rng.normal(size=40).tolist()
    for higher in (True, False):
        c = figures._rank_colors(v, higher)
        top = sorted(range(40), key=lambda i: v[i], reverse=higher)[:figures.TOP_K]
        assert sorted(i for i, x in enumerate(c) if x == 1.0) == sorted(top)
        rest = sorted((i for i in range(40) if i not in top), key=lambda i: v[i], reverse=higher)
        assert all(c[a] >= c[b] for a, b in zip(rest, rest[1:]))    # better -> darker


class _S:
    """What param_axis reads of a SearchReport."""

    def __init__(self, trials, space):
        self.trials, self.space = trials, space


def test_axis_kinds_follow_the_space_and_the_values():
    df = pl.DataFrame({"lr": [1e-4, 3e-3, 0.2, 0.05, 1e-3, 0.01, 0.3], "depth": [1, 2, 3, 2, 1, 3, 2],
                       "kind": ["a", "b", "a", "c", "b", "a", "c"], "C": [0.01, 0.1, 1.0, 10.0, 0.1, 1.0, 10.0],
                       "frac": [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]})
    s = _S(df, {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "C": {"low": 0.01, "high": 10.0},
                "frac": {"low": 0.1, "high": 0.4}, "kind": {"categories": ["c", "b", "a"]}})
    a = {p: figures.param_axis(s, p) for p in df.columns}
    assert a["lr"]["log"] and a["lr"]["kind"] == "continuous"
    assert a["depth"]["kind"] == "discrete" and not a["depth"]["log"] and a["depth"]["values"] == [1, 2, 3]
    assert a["kind"] == {"kind": "categorical", "log": False, "categories": ["c", "b", "a"]}  # the space's order
    assert a["C"]["kind"] == "discrete" and a["C"]["log"]       # a grid over 3 decades
    assert a["frac"]["kind"] == "continuous" and not a["frac"]["log"]
    assert figures.x_axis("lr", a["lr"])["type"] == "log"
    assert figures.x_axis("kind", a["kind"])["type"] == "category"
    assert figures.x_axis("depth", a["depth"])["tickvals"] == [1, 2, 3]


HOSTILE = "</script><img src=x onerror=\"window.pwned=1\"><b>"


def test_hostile_names_and_values_stay_text(tmp_path):
    """A search, a metric, a param and its values made of HTML: the data block parses, nothing
    runs, the table shows the literal text."""
    from browser import opened, rendered

    store = str(tmp_path / "store")
    space = {"lr": {"low": 1e-12, "high": 1.0, "log": True}}
    with hptrack.search(HOSTILE, strategy="random", metric=HOSTILE, store=store, space=space) as s:
        for i in range(10):
            # a param named like a table column, and a log param only some trials have
            params = {HOSTILE: [HOSTILE, "b"][i % 2], "x": i / 10, "fold_mean": i,
                      **({"lr": 10.0 ** -(i + 1)} if i % 2 else {})}
            with s.trial(params) as t:
                for k in range(3):
                    t.score(float(i % 4) + k / 10, split="fold", fold=k)
                t.complete(float(i % 4))
    html = tmp_path / "r.html"
    hptrack.report(store=store, html=html, quiet=True, progress=False)
    text = html.read_text()
    block = re.search(r"<script type='application/json' id='hp-data'>(.*?)</script>", text, re.S).group(1)
    assert "<" not in block and json.loads(block)["tables"][0]["name"] == HOSTILE
    with opened(html) as page:
        dialogs: list = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        assert page.errors == [] and page.evaluate("window.pwned") is None and not dialogs
        assert page.locator("img").count() == 0
        cells = page.eval_on_selector_all(".trials tbody td", "ts => ts.map(t => t.textContent)")
        assert HOSTILE in cells
        heads = page.eval_on_selector_all(".trials thead th", "ts => ts.map(t => t.textContent)")
        assert HOSTILE in heads and "fold_mean" in heads and "cv fold_mean" in heads
        assert all(n > 0 for n in rendered(page).values())
