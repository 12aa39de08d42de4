"""The write API (search / trial / track) and the read API (connect / trials)."""

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pytest

import hptrack
from hptrack._files.wal import read_log


def q(store, sql, as_of=None):
    return hptrack.connect(store, as_of=as_of).sql(sql).fetchall()


def test_trial_round_trip(tmp_path):
    with hptrack.search("rf", strategy="grid", metric="f1", space={"d": [3, 5]}, seed=7,
                        store=tmp_path) as s:
        with s.trial({"max_depth": 5, "lr": 0.1, "crit": "gini", "bootstrap": True,
                      "cap": None, "n": np.int64(3)}) as t:
            t.report(1, 0.80, lr=0.01, train_loss=0.5)
            t.report(2, 0.82, resource=100, lr=0.005)
            t.score(0.83, split="fold", fold=0, metric="f1")
            t.score(0.79, split="test")
            t.complete(0.85, test_f1=0.79)
    (name, strategy, metric, seed, n), = q(tmp_path, "SELECT name, strategy, metric, seed, n_trials FROM searches")
    assert (name, strategy, metric, seed, n) == ("rf", "grid", "f1", 7, 1)
    (state, value, last_step, n_reports, metrics), = q(
        tmp_path, "SELECT state, value, last_step, n_reports, metrics FROM trials")
    assert (state, value, last_step, n_reports) == ("complete", 0.85, 2, 2)
    assert json.loads(metrics) == {"test_f1": 0.79}
    reports = q(tmp_path, "SELECT step, resource, value, metrics->>'lr' FROM reports ORDER BY step")
    assert reports == [(1, None, 0.80, "0.01"), (2, 100.0, 0.82, "0.005")]
    scores = q(tmp_path, "SELECT split, fold, metric, value FROM scores ORDER BY split")
    assert scores == [("fold", 0, "f1", 0.83), ("test", None, "value", 0.79)]
    df = hptrack.trials("rf", store=tmp_path)
    row = df.row(0, named=True)
    assert row["max_depth"] == 5 and row["lr"] == 0.1 and row["crit"] == "gini"
    assert row["bootstrap"] is True and row["cap"] is None and row["n"] == 3
    assert str(df.schema["max_depth"]) == "Int64"


def test_exception_records_failed_and_reraises(tmp_path):
    s = hptrack.search("fails", store=tmp_path)
    with pytest.raises(ZeroDivisionError):
        with s.trial({"a": 1}):
            1 / 0  # noqa: B018  (the expression raises ZeroDivisionError: the failure under test)
    (state, error), = q(tmp_path, "SELECT state, error FROM trials")
    assert state == "failed" and error == "division by zero"
    (payload,), = q(tmp_path, "SELECT payload FROM events WHERE type = 'trial_failed'")
    info = json.loads(payload)
    assert info["error_type"] == "ZeroDivisionError" and "1 / 0" in info["traceback"]


def test_pruned_in_context_manager_and_decorator(tmp_path):
    s = hptrack.search("prunes", store=tmp_path)
    with s.trial({"a": 1}) as t:
        t.report(3, 0.5)
        raise hptrack.Pruned()           # swallowed: the search goes on

    @hptrack.track("prunes", store=tmp_path)
    def objective(a):
        raise hptrack.Pruned()

    with pytest.raises(hptrack.Pruned):
        objective(3)
    rows = q(tmp_path, "SELECT state, last_step FROM trials ORDER BY trial_number")
    assert rows == [("pruned", 3), ("pruned", None)]  # Optuna's TrialPruned: in tests/optuna


@pytest.mark.parametrize("bad, reason", [
    (float("nan"), "nan"), (float("inf"), "inf"), (None, "None"), ("0.5", "str"),
    (np.array([0.1, 0.2]), "ndarray"),
])
def test_bad_objective_value_is_failed_trial(tmp_path, bad, reason):
    @hptrack.track("bad", store=tmp_path)
    def objective(x):
        return bad

    objective(1)
    (state, error), = q(tmp_path, "SELECT state, error FROM trials")
    assert state == "failed" and reason in error


def test_decorator_params_and_metrics(tmp_path):
    @hptrack.track("svm", strategy="random", direction="minimize", store=tmp_path)
    def objective(C, gamma=0.1, **extra):
        return {"value": C * gamma, "train_loss": 0.25}

    assert objective(2.0, depth=4) == {"value": 0.2, "train_loss": 0.25}
    df = hptrack.trials("svm", store=tmp_path)
    assert df["C"].to_list() == [2.0] and df["gamma"].to_list() == [0.1] and df["depth"].to_list() == [4]
    (direction, strategy), = q(tmp_path, "SELECT direction, strategy FROM searches")
    assert (direction, strategy) == ("minimize", "random")
    (metrics,), = q(tmp_path, "SELECT metrics FROM trials")
    assert json.loads(metrics) == {"train_loss": 0.25}
    assert objective.search().name == "svm"


def test_trial_left_without_ending_and_double_complete(tmp_path):
    s = hptrack.search("misuse", store=tmp_path)
    with s.trial({"a": 1}):
        pass
    t = s.trial({"a": 2})
    t.complete(0.5)
    with pytest.raises(RuntimeError, match="already complete"):
        t.complete(0.6)
    rows = q(tmp_path, "SELECT state, value, error FROM trials ORDER BY trial_number")
    assert rows[0][0] == "failed" and "without complete()" in rows[0][2]
    assert rows[1][:2] == ("complete", 0.5)
    assert q(tmp_path, "SELECT count(*) FROM events WHERE type = 'trial_completed'") == [(1,)]


def test_unsupported_param_is_a_clear_type_error(tmp_path):
    s = hptrack.search("types", store=tmp_path)
    with pytest.raises(TypeError, match="param 'layers'"):
        s.trial({"layers": [64, 32]})
    with pytest.raises(ValueError, match="strategy 'annealing'"):
        hptrack.search("x", strategy="annealing", store=tmp_path)


def test_reopening_a_search_appends(tmp_path):
    for i in range(2):
        with hptrack.search("again", store=tmp_path) as s:
            with s.trial({"i": i}) as t:
                t.complete(i)
    assert q(tmp_path, "SELECT count(*), count(DISTINCT search_id) FROM trials") == [(2, 1)]
    assert q(tmp_path, "SELECT n_trials FROM searches") == [(2,)]


def test_as_of_returns_past_state(tmp_path):
    s = hptrack.search("history", store=tmp_path)
    first = s.trial({"i": 0})
    first.complete(0.1)
    second = s.trial({"i": 1})
    second.report(1, 0.3)
    time.sleep(0.01)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)
    second.complete(0.9)
    s.trial({"i": 2}).complete(0.5)
    assert q(tmp_path, "SELECT trial_number, state FROM trials ORDER BY 1", as_of=middle) == [
        (0, "complete"), (1, "running")]
    assert q(tmp_path, "SELECT trial_number, state FROM trials ORDER BY 1") == [
        (0, "complete"), (1, "complete"), (2, "complete")]
    old = hptrack.trials("history", store=tmp_path, as_of=middle.isoformat())
    assert old["state"].to_list() == ["complete", "running"]
    assert q(tmp_path, "SELECT count(*) FROM searches", as_of="2000-01-01") == [(0,)]


def test_complete_returns_with_events_in_the_log(tmp_path):
    """durability='trial': the trial's events are in an fsynced log record when complete() returns."""
    w = hptrack.Writer(tmp_path, flush_interval=3600)  # no background flush can help
    s = hptrack.search("durable", store=tmp_path)
    s.writer = w
    t = s.trial({"a": 1})
    t.report(1, 0.5)
    t.complete(0.7)
    rows = [r for p in w.store.wal_files() for r in read_log(p).rows]
    types = [r[2] for r in rows if r[4] == t.trial_id]
    assert types == ["trial_started", "trial_reported", "trial_completed"]
    w.close()


def test_batch_durability_flushes_by_time_and_at_exit(tmp_path):
    code = (
        "import hptrack, time\n"
        f"s = hptrack.search('b', durability='batch', store={str(tmp_path)!r})\n"
        "for i in range(50):\n"
        "    s.trial({'i': i}).complete(i)\n"
        "time.sleep(1.6)\n"
        "print(len(hptrack.Store(s.writer.store).wal_files()), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"     # the background flush wrote the log while running
    store = hptrack.Store(tmp_path)
    assert store.wal_files() == []       # exit sealed it into Parquet
    assert len(store.segment_files()) == 1
    assert q(tmp_path, "SELECT count(*), sum(value) FROM trials") == [(50, sum(range(50)))]


def test_default_store_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HPTRACK_STORE", str(tmp_path / "envstore"))
    code = "import hptrack\nhptrack.search('e').trial({'a': 1}).complete(1.0)\n"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy(), cwd=tmp_path)
    assert not (tmp_path / ".hptrack").exists()
    assert q(tmp_path / "envstore", "SELECT count(*) FROM trials") == [(1,)]


def test_values_round_trip_exactly(tmp_path):
    s = hptrack.search("exact", store=tmp_path)
    values = [0.1 + 0.2, -0.0, 1e-308, 123456789.123456789]
    for v in values:
        t = s.trial({"big": 2**60 + 1})
        t.report(0, float("nan"))
        t.complete(v)
    got = [r[0] for r in q(tmp_path, "SELECT value FROM trials ORDER BY trial_number")]
    assert got == values and math.copysign(1, got[1]) == -1
    assert hptrack.trials("exact", store=tmp_path)["big"].to_list() == [2**60 + 1] * 4
    (nan,), = q(tmp_path, "SELECT value FROM reports LIMIT 1")
    assert math.isnan(nan)


def test_score_trial_records_a_score_on_an_ended_trial(tmp_path):
    s = hptrack.search("scored", store=tmp_path)
    t = s.trial({"a": 1})
    t.complete(0.9)
    hptrack.score_trial(s.search_id, t.trial_id, 0.87, split="test", metric="f1", store=tmp_path,
                        n_samples=143)
    rows = q(tmp_path, "SELECT split, metric, value, payload->>'n_samples' FROM scores")
    assert rows == [("test", "f1", 0.87, "143")]
    with pytest.raises(hptrack.InvalidEvent, match="'value'"):
        hptrack.score_trial(s.search_id, t.trial_id, "high", store=tmp_path)


def test_track_finish_then_call_again_reopens(tmp_path):
    @hptrack.track("plain-finish", store=tmp_path)
    def f(x):
        return x * 2.0

    for x in range(3):
        f(x)
    assert f.finish() is True and f.finish() is False
    sql = "SELECT n_trials, finished_at IS NOT NULL FROM searches"
    assert q(tmp_path, sql) == [(3, True)]
    f(3)  # the same objective goes on: it opens the search again, quietly
    hptrack.Writer.for_store(str(tmp_path)).flush()
    assert q(tmp_path, sql) == [(4, False)]
    f.finish()
    assert q(tmp_path, sql) == [(4, True)]
