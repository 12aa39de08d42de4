"""Conformance on real Optuna studies: for every objective pattern and every way in
(``@hptrack.track``, ``hptrack.optuna.Callback``, ``hptrack.optuna.import_study``),
the recorded history equals ``study.trials``, trial by trial."""

from __future__ import annotations

import json
import math

import optuna
import polars as pl
import pytest

from .optuna_material import PATHS, PATTERNS, SQLITE, STATE
from .readback import read_search, trials_frame

CASES = [pytest.param(p.name, path, id=f"{p.name}-{path}") for p in PATTERNS
         for path in PATHS + (("import-sqlite",) if p.name in SQLITE else ())]


def _pair(material, name, path):
    """(Optuna's trials, the store's trials by Optuna number, the run)."""
    ran = material.ran[name]
    rec = read_search(material.stores[path], name)
    by_number = {}
    for t in rec.trials:
        assert t.recorded_number not in by_number, f"Optuna trial {t.recorded_number} recorded twice"
        by_number[t.recorded_number] = t
    return ran.reference(path), by_number, ran


def test_material_covers_every_case(optuna_material):
    """The material exercises what it claims: pruned, failed, multi-objective,
    enqueued trials and user attrs are all there, so no check below is vacuous."""
    states = {name: {ft.state for ft in r.trials} for name, r in optuna_material.ran.items()}
    for name in ("median-sgd-digits", "hyperband-sgd-digits", "sha-sgd-digits"):
        assert optuna.trial.TrialState.PRUNED in states[name], f"{name}: its pruner pruned nothing"
    fails = [ft for ft in optuna_material.ran["failures-cancer"].trials
             if ft.state == optuna.trial.TrialState.FAIL]
    assert len(fails) >= 2 and optuna.trial.TrialState.COMPLETE in states["failures-cancer"]
    assert any(ft.params["mode"] == "nan" and math.isnan(ft.intermediate_values[0]) for ft in fails)
    assert any(ft.params["mode"] == "raise" for ft in fails)
    enq = optuna_material.ran["enqueue-iris"].trials
    assert enq[0].params == {"C": 1.0, "kernel": "rbf"} and enq[0].user_attrs == {"source": "baseline"}
    cond = optuna_material.ran["conditional-iris"].trials
    assert {ft.params["classifier"] for ft in cond} == {"SVC", "RandomForest"}


@pytest.mark.parametrize("name,path", CASES)
def test_same_trials_states_and_values(optuna_material, name, path):
    ref, rec, _ = _pair(optuna_material, name, path)
    assert sorted(rec) == [ft.number for ft in ref]
    for ft in ref:
        t = rec[ft.number]
        assert t.state == STATE[ft.state], f"trial {ft.number}"
        if ft.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == ft.values[0], f"trial {ft.number}"
            if len(ft.values) > 1:
                assert t.values == ft.values, f"trial {ft.number}"
        else:
            assert t.value is None or t.value == ft.value, f"trial {ft.number}: {t.value} vs {ft.value}"
        if ft.state == optuna.trial.TrialState.PRUNED:
            assert t.last_step == ft.last_step, f"trial {ft.number}"


@pytest.mark.parametrize("name,path", CASES)
def test_params_value_and_type(optuna_material, name, path):
    ref, rec, _ = _pair(optuna_material, name, path)
    for ft in ref:
        got = rec[ft.number].params
        assert got == ft.params, f"trial {ft.number}"
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in ft.params.items()}, \
            f"trial {ft.number}"


@pytest.mark.parametrize("name,path", CASES)
def test_distributions(optuna_material, name, path):
    ref, rec, _ = _pair(optuna_material, name, path)
    for ft in ref:
        want = {k: json.loads(optuna.distributions.distribution_to_json(d))
                for k, d in ft.distributions.items()}
        assert rec[ft.number].distributions == want, f"trial {ft.number}"


def _nan_as_text(values: dict) -> dict:
    """NaN never equals itself: compare it as a marker."""
    return {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@pytest.mark.parametrize("name,path", CASES)
def test_intermediate_values(optuna_material, name, path):
    ref, rec, _ = _pair(optuna_material, name, path)
    for ft in ref:
        assert _nan_as_text(rec[ft.number].reports) == _nan_as_text(ft.intermediate_values), \
            f"trial {ft.number}"


@pytest.mark.parametrize("name,path", CASES)
def test_times_to_the_microsecond_in_utc(optuna_material, name, path):
    ref, rec, ran = _pair(optuna_material, name, path)
    for ft in ref:
        start, complete = ran.utc[ft.number]
        t = rec[ft.number]
        assert t.started_at == start, f"trial {ft.number}"
        if path == "decorator":
            # the decorator ends the trial when the objective returns; Optuna dates
            # its end a little later, in tell
            assert start <= t.finished_at <= complete, f"trial {ft.number}"
        else:
            assert t.finished_at == complete, f"trial {ft.number}"


@pytest.mark.parametrize("name,path", CASES)
def test_user_attrs(optuna_material, name, path):
    ref, rec, _ = _pair(optuna_material, name, path)
    for ft in ref:
        assert rec[ft.number].user_attrs == ft.user_attrs, f"trial {ft.number}"


@pytest.mark.parametrize("name,path", [c for c in CASES if c.values[1] in ("decorator", "import")])
def test_trials_table(optuna_material, name, path):
    """``hptrack.trials()``: one row per Optuna trial, numbered as Optuna numbers
    them, one column per param holding its values."""
    ref, rec, _ = _pair(optuna_material, name, path)
    frame = trials_frame(optuna_material.stores[path], name)
    numbers = {t.trial_id: n for n, t in rec.items()}
    assert frame.height == len(ref)
    assert [numbers[i] for i in frame["trial_id"]] == frame["trial_number"].to_list()
    by_number = {ft.number: ft for ft in ref}
    names = {k for ft in ref for k in ft.params}
    for row in frame.iter_rows(named=True):
        ft = by_number[row["trial_number"]]
        assert row["state"] == STATE[ft.state], f"trial {ft.number}"
        if ft.state == optuna.trial.TrialState.COMPLETE:
            assert row["value"] == ft.values[0], f"trial {ft.number}"
        for k in names:
            want = ft.params.get(k)
            got = row[k]
            if isinstance(want, float) and isinstance(got, float):
                assert got == want or (math.isnan(got) and math.isnan(want))
            elif frame.schema[k] == pl.String and want is not None:
                # a param of mixed kinds (None, "sqrt", 0.5) is a String column
                assert got == str(want), f"trial {ft.number} param {k}"
            else:
                assert got == want, f"trial {ft.number} param {k}"


@pytest.mark.parametrize("name,path", CASES)
def test_search_row(optuna_material, name, path):
    ref, _, ran = _pair(optuna_material, name, path)
    s = read_search(optuna_material.stores[path], name)
    directions = list(ran.pattern.directions)
    assert s.row["direction"] == directions[0]
    if len(directions) > 1:
        assert s.payload["directions"] == directions
    counts = {state: sum(STATE[ft.state] == state for ft in ref)
              for state in ("complete", "pruned", "failed")}
    assert (s.row["n_trials"], s.row["n_complete"], s.row["n_pruned"], s.row["n_failed"],
            s.row["n_running"]) == (len(ref), counts["complete"], counts["pruned"], counts["failed"], 0)
