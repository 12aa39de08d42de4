"""hptrack.analysis.refine and hptrack refine on synthetic histories recorded through the API.

The property test draws histories (a log-scaled float, a linear float, an int, a
categorical; random objective, direction, size and top share) and checks the rules
against the trials themselves: each refined range lies within the recorded one and
holds every top trial, the recorded scale is kept, integers stay integers, exactly the
categories absent from the top trials are dropped, and the printed code builds the
object's own distributions.
"""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hptrack
from hptrack.analysis import refine
from hptrack.analysis.refinement import PAD
from hptrack.cli.main import cli

SPACE = {"lr": {"low": 1e-5, "high": 1.0, "log": True}, "shift": {"low": -3.0, "high": 5.0},
         "depth": {"low": 1, "high": 12}, "opt": ["sgd", "adam", "rmsprop", "lbfgs"]}


def record(store, n, seed, direction="maximize", name=None):
    """A search of n trials on SPACE; returns (name, rows: [(params, value)] in trial order)."""
    rng = np.random.default_rng(seed)
    name = name or f"s-{uuid.uuid4().hex[:8]}"
    w = rng.normal(size=4)
    rows = []
    with hptrack.search(name, strategy="random", direction=direction, space=SPACE, store=store,
                        durability="batch") as s:
        for _ in range(n):
            p = {"lr": float(10 ** rng.uniform(-5, 0)), "shift": float(rng.uniform(-3, 5)),
                 "depth": int(rng.integers(1, 13)), "opt": str(rng.choice(SPACE["opt"]))}
            v = (w[0] * -(math.log10(p["lr"]) + 2.5) ** 2 + w[1] * p["shift"] + w[2] * p["depth"]
                 + w[3] * SPACE["opt"].index(p["opt"]) + rng.normal(scale=0.1))
            with s.trial(p) as t:
                t.complete(float(v))
            rows.append((p, float(v)))
    return name, rows


def top_rows(rows, direction, top):
    k = max(2, math.ceil(top * len(rows)))
    order = sorted(range(len(rows)), key=lambda i: -rows[i][1] if direction == "maximize" else rows[i][1])
    return [rows[i][0] for i in order[:k]]


def same_distribution(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return a == b
    return (a.dist.name, a.args, a.kwds) == (b.dist.name, b.args, b.kwds)


class Trial:
    """Records what Optuna code asks of a trial."""

    def __init__(self):
        self.asked = {}

    def suggest_float(self, name, low, high, *, log=False):
        self.asked[name] = ("float", low, high, log)
        return low

    def suggest_int(self, name, low, high, *, log=False):
        self.asked[name] = ("int", low, high, log)
        return low

    def suggest_categorical(self, name, choices):
        self.asked[name] = ("categorical", choices)
        return choices[0]


def check_code(r):
    """The printed code builds what the object says, for scikit-learn and for Optuna."""
    scope: dict = {}
    exec(r.sklearn_code(), scope)
    built, expected = scope["param_distributions"], r.param_distributions()
    assert list(built) == list(expected)
    for name in expected:
        assert same_distribution(built[name], expected[name]), name
    exec(r.optuna_code(), scope)
    trial = Trial()
    params = scope["suggest_params"](trial)
    for p in r.params:
        if p.decision == "fixed":
            assert params[p.name] == p.value and p.name not in trial.asked
        elif p.decision == "choices":
            assert trial.asked[p.name] == ("categorical", p.categories)
        else:
            assert trial.asked[p.name] == (p.kind, p.low, p.high, p.log)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("refine")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(8, 40), seed=st.integers(0, 2**16), direction=st.sampled_from(["maximize", "minimize"]),
       top=st.sampled_from([0.1, 0.2, 0.25, 0.5]))
def test_refined_space_holds_the_top_trials_within_the_recorded_space(store, n, seed, direction, top):
    name, rows = record(store, n, seed, direction)
    r = refine(name, store, top=top)
    tops = top_rows(rows, direction, top)
    assert r.n_complete == n and r.n_top == len(tops) and r.direction == direction
    for p in r.params:
        got = [t[p.name] for t in tops]
        if p.name == "opt":
            offered = SPACE["opt"]
            kept = [c for c in offered if c in got]
            if p.decision == "fixed":
                assert p.value in got
            else:
                assert p.decision == "choices" and p.categories == kept
            assert [d["category"] for d in p.dropped] == [c for c in offered if c not in got]
            assert all(d["n_top"] == 0 and d["n_trials"] == sum(q["opt"] == d["category"] for q, _ in rows)
                       for d in p.dropped)
            continue
        hint = SPACE[p.name]
        assert (p.was_low, p.was_high) == (hint["low"], hint["high"])
        assert p.log is (p.name == "lr")
        if p.decision == "fixed":
            assert hint["low"] <= p.value <= hint["high"]
            continue
        assert hint["low"] <= p.low <= min(got) and max(got) <= p.high <= hint["high"]
        assert p.low < p.high
        # each bound reaches the nearest trial beyond the top trials (the optimum may lie
        # anywhere in that gap), or further when PAD of their span does, and no further
        # (plus rounding outward to 3 significant digits): nothing else, such as the main
        # effect's best point, widens it
        values = [q[p.name] for q, _ in rows]
        near_lo = max([v for v in values if v < min(got)], default=hint["low"])
        near_hi = min([v for v in values if v > max(got)], default=hint["high"])
        assert p.low <= near_lo and p.high >= near_hi
        f = np.log10 if p.log else float
        span = f(max(got)) - f(min(got))
        if span > 0 and p.kind != "int":
            slack = 0.0045 if p.log else 0.01 * max(abs(near_lo), abs(near_hi), abs(min(got)), abs(max(got)))
            assert f(p.low) >= min(f(near_lo), f(min(got)) - PAD * span) - slack
            assert f(p.high) <= max(f(near_hi), f(max(got)) + PAD * span) + slack
        if p.kind == "int":
            assert isinstance(p.low, int) and isinstance(p.high, int)
    check_code(r)


def test_unimportant_param_is_fixed_at_the_best_value(store):
    name, rows = record(store, 40, 7)
    r = refine(name, store)
    best = max(rows, key=lambda row: row[1])[0]
    for p in r.params:
        # the total effect decides, not the first-order importance
        fixed_as_unimportant = p.total < r.fix_below and p.total_low < r.fix_below / 5
        assert fixed_as_unimportant == ("fixed at the best trial's value" in p.why)
        assert p.importance <= p.total + 0.02    # alone is part of alone-and-with-others
        if fixed_as_unimportant:
            assert p.decision == "fixed"
            assert p.value == (float(f"{best[p.name]:.3g}") if isinstance(best[p.name], float) else best[p.name])
    none = refine(name, store, fix_below=0.0)
    assert not any("fixed at the best" in p.why for p in none.params)


def test_log_scale_from_the_spread_when_nothing_is_recorded():
    import polars as pl

    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-6, 0, 30)
    table = pl.DataFrame({"lr": lr, "x": rng.uniform(0, 1, 30), "value": -np.abs(np.log10(lr) + 3)})
    r = refine(table, direction="maximize")
    assert r["lr"].log and r["lr"].decision == "range" and not r["x"].log
    assert r["lr"].sklearn().startswith("loguniform(")


def test_errors_name_the_problem_and_the_fix(store):
    few, _ = record(store, 5, 1)
    with pytest.raises(ValueError, match=r"has 5 complete trial\(s\).*at least 8.*run more trials"):
        refine(few, store)
    with pytest.raises(hptrack.errors.SearchNotFound, match="no search named 'nope'"):
        refine("nope", store)
    with pytest.raises(ValueError, match=r"top must be a share"):
        refine(few, store, top=0)
    with hptrack.search("mo", directions=["minimize", "maximize"], store=store) as s:
        for i in range(10):
            with s.trial({"x": float(i)}) as t:
                t.complete(values=[float(i), float(-i)])
    with pytest.raises(ValueError, match=r"2 objectives.*objective=0\.\.1"):
        refine("mo", store)
    assert refine("mo", store, objective=1).direction == "maximize"


def run(*args, store):
    return CliRunner().invoke(cli, ["--store", str(store), *args])


def test_cli_mirrors_the_library(store):
    name, _ = record(store, 24, 3, name="cli-search")
    r = refine(name, store)
    both = run("refine", name, store=store)
    assert both.exit_code == 0, both.output
    assert r.sklearn_code() in both.stdout and r.optuna_code() in both.stdout
    only = run("refine", name, "--for", "sklearn", "--top", "0.5", store=store)
    assert "param_distributions" in only.stdout and "suggest_params" not in only.stdout
    assert refine(name, store, top=0.5).sklearn_code() in only.stdout
    data = json.loads(run("refine", name, "--format", "json", store=store).stdout)
    assert data["sklearn_code"] == r.sklearn_code() and [p["name"] for p in data["params"]] == \
        [p.name for p in r.params]
    csv = run("refine", name, "--format", "csv", store=store).stdout.splitlines()
    assert csv[0].startswith("param,kind,decision,space") and len(csv) == 1 + len(r.params)
    bad = run("refine", "nope", store=store)
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: no search named 'nope'")
    assert "Examples:" in run("refine", "--help", store=store).stdout


def test_repr_is_one_line(store):
    name, _ = record(store, 12, 5)
    text = repr(refine(name, store))
    assert text.startswith(f"<Refinement {name!r}: from top 3 of 12 complete trials") and "\n" not in text
