"""Objective misbehaviour: each case has one defined outcome, and the search goes on.

The outcomes are the table "Objective misbehaviour" in schemas/README.md. Every
case is run through ``with s.trial(...)`` and, where it applies, through
``@hptrack.track``; after it, a normal trial must complete and be recorded.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import hptrack


class Floaty:
    """Has __float__ but is not a numbers.Real (like a framework's scalar tensor)."""

    def __float__(self):
        return 0.5


def trials_of(store, name):
    con = hptrack.connect(store)
    return con.sql(
        "SELECT t.trial_number, t.state, t.value, t.error, t.last_step, t.n_reports, e.payload "
        "FROM trials t JOIN searches s USING (search_id) "
        "LEFT JOIN events e ON e.trial_id = t.trial_id AND e.type = 'trial_failed' "
        "WHERE s.name = ? ORDER BY t.trial_number", params=[name]).fetchall()


def assert_goes_on(store, name, s=None, objective=None):
    """A normal trial after the misbehaviour completes and is recorded."""
    if objective is not None:
        assert objective(0.25) in (0.25, {"value": 0.25})
    else:
        with s.trial({"x": 0.25}) as t:
            t.complete(0.25)
    last = trials_of(store, name)[-1]
    assert last[1:3] == ("complete", 0.25)


# --- returned / completed values ----------------------------------------------------

# value -> (state, value, error) recorded
VALUE_CASES = [
    pytest.param(float("nan"), ("failed", None, "objective value is nan"), id="nan"),
    pytest.param(float("inf"), ("failed", None, "objective value is inf"), id="inf"),
    pytest.param(-float("inf"), ("failed", None, "objective value is -inf"), id="-inf"),
    pytest.param(np.float64("nan"), ("failed", None, "objective value is np.float64(nan)"), id="np.nan"),
    pytest.param(None, ("failed", None, "objective value is None"), id="None"),
    pytest.param("0.5", ("failed", None, "objective value is a str, not a number"), id="str"),
    pytest.param([0.5], ("failed", None, "objective value is a list, not a number"), id="list"),
    pytest.param(np.array([0.5, 0.6]), ("failed", None, "objective value is a ndarray, not a number"),
                 id="array"),
    pytest.param(np.array(0.5), ("failed", None, "objective value is a ndarray, not a number"),
                 id="0-d-array"),
    pytest.param(Floaty(), ("failed", None, "objective value is a Floaty, not a number"), id="__float__"),
    pytest.param(Decimal("0.5"), ("failed", None, "objective value is a Decimal, not a number"), id="Decimal"),
    pytest.param(True, ("failed", None, "objective value is True"), id="bool"),
    pytest.param(np.float32(0.1), ("complete", float(np.float32(0.1)), None), id="np.float32"),
    pytest.param(np.float16(0.5), ("complete", 0.5, None), id="np.float16"),
    pytest.param(np.float64(0.75), ("complete", 0.75, None), id="np.float64"),
    pytest.param(np.int64(3), ("complete", 3.0, None), id="np.int64"),
    pytest.param(7, ("complete", 7.0, None), id="int"),
    pytest.param(Fraction(1, 4), ("complete", 0.25, None), id="Fraction"),
]


@pytest.mark.parametrize("value, outcome", VALUE_CASES)
def test_complete_value_with_context_manager(tmp_path, value, outcome):
    s = hptrack.search("cm", store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.complete(value)  # never raises: a bad value ends the trial as failed
    assert t.state == outcome[0]
    (number, state, v, error, *_), = trials_of(tmp_path, "cm")
    assert (state, v, error) == outcome
    if state == "failed":
        info = json.loads(trials_of(tmp_path, "cm")[0][-1])
        assert info == {"error_type": None, "error": outcome[2], "traceback": None}
    assert_goes_on(tmp_path, "cm", s)


@pytest.mark.parametrize("value, outcome", VALUE_CASES)
@pytest.mark.parametrize("as_dict", [False, True], ids=["plain", "dict"])
def test_returned_value_with_track(tmp_path, value, outcome, as_dict):
    @hptrack.track("tracked", store=tmp_path)
    def objective(x):
        if x == 0.25:
            return {"value": x} if as_dict else x
        return {"value": value, "extra": 1} if as_dict else value

    result = objective(1)  # returned unchanged, never raises
    assert result is value or (as_dict and result["value"] is value)
    (number, state, v, error, *_), = trials_of(tmp_path, "tracked")
    assert (state, v, error) == outcome
    if as_dict and state == "complete":
        (metrics,), = hptrack.connect(tmp_path).sql("SELECT metrics FROM trials").fetchall()
        assert json.loads(metrics) == {"extra": 1}
    assert_goes_on(tmp_path, "tracked", objective=objective)


def test_dict_without_value_fails(tmp_path):
    @hptrack.track("nodict", store=tmp_path)
    def objective(x):
        return {"value": x} if x == 0.25 else {"score": 0.9}

    assert objective(1) == {"score": 0.9}
    (_, state, v, error, *_), = trials_of(tmp_path, "nodict")
    assert (state, v, error) == ("failed", None, "objective returned a dict without a 'value' key")
    assert_goes_on(tmp_path, "nodict", objective=objective)


# --- exceptions ------------------------------------------------------------------

def test_exception_in_objective_is_recorded_and_reraised(tmp_path):
    s = hptrack.search("raise-cm", store=tmp_path)
    with pytest.raises(ValueError, match="bad C"):
        with s.trial({"C": -1}):
            raise ValueError("bad C")

    @hptrack.track("raise-track", store=tmp_path)
    def objective(x):
        if x != 0.25:
            raise ValueError("bad C")
        return x

    with pytest.raises(ValueError, match="bad C"):
        objective(-1)
    for name in ("raise-cm", "raise-track"):
        (_, state, v, error, _, _, payload), = trials_of(tmp_path, name)
        assert (state, v, error) == ("failed", None, "bad C")
        info = json.loads(payload)
        assert info["error_type"] == "ValueError" and info["error"] == "bad C"
        assert info["traceback"].startswith("Traceback (most recent call last):")
        assert 'raise ValueError("bad C")' in info["traceback"]
        assert info["traceback"].rstrip().endswith("ValueError: bad C")
    assert_goes_on(tmp_path, "raise-cm", s)
    assert_goes_on(tmp_path, "raise-track", objective=objective)


@pytest.mark.parametrize("how", ["context", "track"])
def test_keyboard_interrupt_is_recorded_as_failed_and_reraised(tmp_path, how):
    s = hptrack.search("ki", store=tmp_path)

    @hptrack.track("ki", store=tmp_path)
    def objective(x):
        if x != 0.25:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        if how == "context":
            with s.trial({"x": 1}):
                raise KeyboardInterrupt
        else:
            objective(1)
    (_, state, v, error, _, _, payload), = trials_of(tmp_path, "ki")
    assert (state, v, error) == ("failed", None, "")
    assert json.loads(payload)["error_type"] == "KeyboardInterrupt"
    assert_goes_on(tmp_path, "ki", s if how == "context" else None,
                   objective if how == "track" else None)


def test_pruned_inside_trial(tmp_path):
    """hptrack.Pruned is recorded as pruned at its step and swallowed by the
    context manager; @track records it and re-raises it (the caller's loop decides)."""
    s = hptrack.search("pruned", store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.report(3, 0.1)
        raise _pruned_at(3)

    @hptrack.track("pruned-track", store=tmp_path)
    def objective(x):
        if x != 0.25:
            raise _pruned_at(2)
        return x

    with pytest.raises(hptrack.Pruned):
        objective(1)
    assert trials_of(tmp_path, "pruned")[0][1:5] == ("pruned", None, None, 3)
    assert trials_of(tmp_path, "pruned-track")[0][1:5] == ("pruned", None, None, 2)
    assert_goes_on(tmp_path, "pruned", s)
    assert_goes_on(tmp_path, "pruned-track", objective=objective)


def _pruned_at(step):
    """hptrack.Pruned carries its step as an attribute (``exc.step``), if any."""
    exc = hptrack.Pruned(f"pruned at step {step}")
    exc.step = step
    return exc


# --- trials used wrongly ---------------------------------------------------------

def test_context_left_without_complete_is_failed(tmp_path):
    s = hptrack.search("left", store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.report(1, 0.5)
    assert t.state == "failed"
    (_, state, v, error, last_step, n_reports, _), = trials_of(tmp_path, "left")
    assert (state, v, last_step, n_reports) == ("failed", None, 1, 1)
    assert error == "trial context exited without complete(), fail() or prune()"
    assert_goes_on(tmp_path, "left", s)


def test_trial_never_ended_outside_a_context_stays_running(tmp_path):
    """Without a context manager nothing can notice the trial was abandoned:
    it stays 'running' in the views (also after the writer seals at exit)."""
    s = hptrack.search("abandoned", store=tmp_path)
    s.trial({"x": 1}).report(1, 0.5)
    s.writer.close()
    assert trials_of(tmp_path, "abandoned")[0][1:6] == ("running", None, None, 1, 1)
    assert_goes_on(tmp_path, "abandoned", s)


@pytest.mark.parametrize("second", ["complete", "fail", "prune", "report", "score"])
@pytest.mark.parametrize("first", ["complete", "fail", "prune"])
def test_ended_trial_refuses_more(tmp_path, first, second):
    """Completing twice, reporting or pruning after the end: RuntimeError, and
    only the first ending is recorded."""
    s = hptrack.search("twice", store=tmp_path)
    ends = {"complete": lambda t: t.complete(0.9), "fail": lambda t: t.fail("stop"),
            "prune": lambda t: t.prune(4), "report": lambda t: t.report(9, 0.1),
            "score": lambda t: t.score(0.1)}
    with s.trial({"x": 1}) as t:
        ends[first](t)
        with pytest.raises(RuntimeError, match="is already"):
            ends[second](t)
    state = {"complete": "complete", "fail": "failed", "prune": "pruned"}[first]
    assert t.state == state
    (_, got_state, v, error, last_step, n_reports, _), = trials_of(tmp_path, "twice")
    assert got_state == state and n_reports == 0
    assert v == (0.9 if first == "complete" else None)
    assert last_step == (4 if first == "prune" else None)
    con = hptrack.connect(tmp_path)
    (n_events,), = con.sql("SELECT count(*) FROM events WHERE trial_id = ?", params=[t.trial_id]).fetchall()
    assert n_events == 2  # trial_started and the first ending only
    assert_goes_on(tmp_path, "twice", s)


def test_reports_with_decreasing_and_repeated_steps_are_kept_as_given(tmp_path):
    """Events are facts: every report is stored as given, in order; last_step is
    the largest step, and the views agree."""
    s = hptrack.search("steps", store=tmp_path)
    steps = [5, 3, 3, 7, 1, 7]
    with s.trial({"x": 1}) as t:
        for i, step in enumerate(steps):
            t.report(step, i / 10)
        t.complete(0.9)
    for _phase in ("log", "parquet"):  # read from the live log, then (after seal) from Parquet
        con = hptrack.connect(tmp_path)
        got = con.sql("SELECT step, value FROM reports ORDER BY ts, value").fetchall()
        assert got == [(step, i / 10) for i, step in enumerate(steps)]
        (last_step, n_reports), = con.sql("SELECT last_step, n_reports FROM trials").fetchall()
        (max_step, n), = con.sql("SELECT max(step), count(*) FROM reports").fetchall()
        assert last_step == max_step == 7 and n_reports == n == 6
        df = hptrack.trials("steps", con=con)
        assert df["last_step"][0] == 7
        s.writer.seal()
    assert_goes_on(tmp_path, "steps", s)


def test_prune_step_wins_over_reports_for_last_step(tmp_path):
    s = hptrack.search("prune-step", store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.report(10, 0.5)
        t.prune(2)  # the step the pruner gave, even if smaller than a report's
    assert trials_of(tmp_path, "prune-step")[0][1:6] == ("pruned", None, None, 2, 1)
    assert_goes_on(tmp_path, "prune-step", s)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.5", [1.0], np.array([1.0])])
def test_bad_report_values(tmp_path, bad):
    """report(): NaN and inf are stored (a diverging loss is a fact worth keeping);
    None, strings and arrays are refused with TypeError naming the value."""
    s = hptrack.search("bad-report", store=tmp_path)
    with s.trial({"x": 1}) as t:
        if isinstance(bad, float):
            t.report(1, bad)
        else:
            with pytest.raises(TypeError, match="value must be a number"):
                t.report(1, bad)
        t.complete(0.5)
    con = hptrack.connect(tmp_path)
    got = con.sql("SELECT value FROM reports").fetchall()
    if isinstance(bad, float):
        assert len(got) == 1 and (got[0][0] == bad or (math.isnan(bad) and math.isnan(got[0][0])))
    else:
        assert got == []
    assert trials_of(tmp_path, "bad-report")[0][1:3] == ("complete", 0.5)
    assert_goes_on(tmp_path, "bad-report", s)


def test_nan_metrics_are_stored_and_readable(tmp_path):
    """NaN/inf in extra metrics are written as JSON NaN/Infinity, which DuckDB reads."""
    s = hptrack.search("nan-metrics", store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.report(1, 0.5, loss=float("nan"))
        t.complete(0.5, loss=float("inf"))
    con = hptrack.connect(tmp_path)
    (m,), = con.sql("SELECT metrics FROM trials").fetchall()
    assert m == '{"loss":Infinity}'
    (r,), = con.sql("SELECT metrics FROM reports").fetchall()
    assert r == '{"loss":NaN}'
    assert_goes_on(tmp_path, "nan-metrics", s)


# --- known core bugs ---------------------------------------------------------------

def test_unstorable_metric_does_not_leave_trial_running(tmp_path):
    s = hptrack.search("bad-metric", store=tmp_path)
    with pytest.raises((TypeError, ValueError)):
        with s.trial({"x": 1}) as t:
            t.complete(0.5, model=object())
    s.writer.flush()  # the trial's events reach the log even though it never ended
    assert trials_of(tmp_path, "bad-metric")[0][1] != "running"


def test_huge_int_objective_is_failed_not_running(tmp_path):
    @hptrack.track("huge", store=tmp_path)
    def objective(x):
        return 10**400

    objective(1)
    objective.search().writer.flush()
    assert trials_of(tmp_path, "huge")[0][1] == "failed"
