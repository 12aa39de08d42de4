"""The write API integrations build on: Search.fork and multi-objective Trial.complete.

Each is checked by reading the store back through the views and through the
analyses that use what they write (lineage, schedule, the values column), not
by looking at the rows they append."""

from __future__ import annotations

import math

import pytest

import hptrack
from hptrack.analysis import lineage, schedule


def test_fork_records_the_lineage_and_schedule_read_back(tmp_path):
    with hptrack.search("pbt-by-hand", strategy="pbt", direction="maximize", store=tmp_path) as s:
        a = s.trial({"lr": 0.1})
        b = s.trial({"lr": 0.01})
        a.report(4, 0.9)
        b.report(4, 0.5)
        b.prune(4)
        child = s.fork(a, {"lr": 0.08}, step=4, parent_score=0.9, replaced_trial_id=b.trial_id,
                       replaced_score=0.5, params_before=a.params)
        assert child.state == "running" and child.params == {"lr": 0.08} and child.number == 2
        child.report(8, 0.95)
        child.complete(0.95)
        a.complete(0.9)
    forks = lineage("pbt-by-hand", store=tmp_path)
    assert forks.height == 1
    row = forks.row(0, named=True)
    assert (row["trial_id"], row["parent_trial_id"], row["step"]) == (child.trial_id, a.trial_id, 4)
    assert (row["parent_score"], row["replaced_trial_id"], row["replaced_score"]) == (0.9, b.trial_id, 0.5)
    assert row["params_before"] == {"lr": 0.1} and row["params_after"] == {"lr": 0.08}
    # the best member's schedule: the parent's params until the fork, then its own
    sched = schedule("pbt-by-hand", store=tmp_path)
    assert sched["trial_id"].to_list() == [a.trial_id, child.trial_id]
    assert sched["from_step"].to_list() == [0, 5] and sched["lr"].to_list() == [0.1, 0.08]
    t = hptrack.trials("pbt-by-hand", store=tmp_path).sort("trial_number")
    assert t["state"].to_list() == ["complete", "pruned", "complete"]


def test_fork_of_an_id_with_an_importers_id_and_time(tmp_path):
    from datetime import datetime, timezone

    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    with hptrack.search("imported-pbt", store=tmp_path) as s:
        a = s.trial({"x": 1})
        a.complete(1.0)
        c = s.fork(a.trial_id, {"x": 2}, step=3, trial_id="ray-7-1", trial_number=7, ts=when)
        c.complete(2.0)
    forks = lineage("imported-pbt", store=tmp_path)
    assert forks["trial_id"].to_list() == ["ray-7-1"]
    assert forks["ts"][0] == when
    con = hptrack.connect(tmp_path)
    row = con.sql("SELECT recorded_number, started_at FROM trials WHERE trial_id = 'ray-7-1'").fetchall()
    assert row == [(7, when)]


def test_fork_refuses_what_is_not_a_parent(tmp_path):
    with hptrack.search("bad-forks", store=tmp_path) as s:
        with pytest.raises(TypeError, match="fork parent must be a Trial or a trial id"):
            s.fork(None, {"x": 1}, step=1)
        with pytest.raises(ValueError, match="parent trial_id"):
            s.fork("../../etc", {"x": 1}, step=1)
        with pytest.raises(TypeError, match="fork step"):
            s.fork("abc", {"x": 1}, step="three")
        with pytest.raises(Exception, match="JSON|serializable"):
            s.fork("abc", {"x": 1}, step=1, parent_score=object())
    # nothing was written by the refused calls
    assert hptrack.trials("bad-forks", store=tmp_path).height == 0


def test_complete_with_values_is_what_the_views_and_pareto_read(tmp_path):
    with hptrack.search("mo", directions=["maximize", "minimize"], store=tmp_path) as s:
        for i, (acc, cost) in enumerate([(0.9, 3.0), (0.8, 1.0), (0.7, 2.0)]):
            s.trial({"i": i}).complete(values=[acc, cost], wall=0.5)
    t = hptrack.trials("mo", store=tmp_path).sort("trial_number")
    assert t["value"].to_list() == [0.9, 0.8, 0.7]
    assert t["value_0"].to_list() == [0.9, 0.8, 0.7] and t["value_1"].to_list() == [3.0, 1.0, 2.0]
    front = hptrack.analysis.pareto("mo", store=tmp_path).front
    assert sorted(front["trial_number"].to_list()) == [0, 1]  # (0.7, 2.0) is dominated by (0.8, 1.0)


def test_complete_values_edge_cases(tmp_path):
    with hptrack.search("mo-edges", store=tmp_path) as s:
        one = s.trial({"i": 0})
        one.complete(values=[0.5])          # one objective: a plain value
        nan = s.trial({"i": 1})
        nan.complete(values=[0.5, math.nan])
        t = s.trial({"i": 2})
        with pytest.raises(TypeError, match="value or values, not both"):
            t.complete(1.0, values=[1.0, 2.0])
        with pytest.raises(TypeError, match="non-empty list of numbers"):
            t.complete(values=[])
        with pytest.raises(TypeError, match="non-empty list of numbers"):
            t.complete(values="ab")
        t.complete(values=(1.0, 2.0))
    df = hptrack.trials("mo-edges", store=tmp_path).sort("trial_number")
    assert df["state"].to_list() == ["complete", "failed", "complete"]
    assert df["value"].to_list()[0] == 0.5
    con = hptrack.connect(tmp_path)
    reason = con.sql("SELECT error FROM trials WHERE trial_number = 1").fetchall()[0][0]
    assert reason == "objective values contain nan"
