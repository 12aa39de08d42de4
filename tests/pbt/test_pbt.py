"""hptrack.pbt: population based training on digits, its lineage and schedules rebuilt
from events."""

import json
import os
import random

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

import hptrack
from hptrack.analysis.population import lineage, schedule
from hptrack.pbt import PBT, SklearnPartialFit, _explore

X, Y = load_digits(return_X_y=True)
X = X / 16.0
SPACE = {"learning_rate_init": ("log", 1e-4, 1e-1), "alpha": ("log", 1e-6, 1e-1)}


def adapter():
    return SklearnPartialFit(MLPClassifier(hidden_layer_sizes=(32,)), X[:1000], Y[:1000],
                             X[1000:1400], Y[1000:1400], classes=np.unique(Y))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("pbt"))
    result = PBT(adapter(), SPACE, name="pbt-digits", population=6, ready=2, rounds=6,
                 quantile=0.34, workers=2, seed=1, store=store).run()
    return store, result


def test_population_and_states(run):
    store, result = run
    con = hptrack.connect(store)
    states = dict(con.sql("SELECT state, count(*) FROM trials GROUP BY state").fetchall())
    assert result.n_forks >= 3
    assert states == {"complete": 6, "pruned": result.n_forks}
    (strategy, payload), = con.sql("SELECT strategy, payload FROM searches").fetchall()
    assert strategy == "pbt" and json.loads(payload)["pbt"]["population"] == 6
    # members were trained in worker processes, not here
    pids = {int(p) for (p,) in con.sql("SELECT metrics->>'worker_pid' FROM reports").fetchall()}
    assert pids and os.getpid() not in pids
    # the returned best is the best complete trial
    best = con.sql("SELECT trial_id, value FROM trials WHERE state = 'complete' "
                   "ORDER BY value DESC LIMIT 1").fetchall()[0]
    assert best[1] == result.best_score and result.best_model.score(X[1000:1400], Y[1000:1400]) \
        == result.best_score


def test_lineage_is_a_valid_forest(run):
    store, result = run
    con = hptrack.connect(store)
    lin = lineage("pbt-digits", store=store)
    assert lin.height == result.n_forks
    started = dict(con.sql("SELECT trial_id, started_at FROM trials").fetchall())
    finished = {t: (s, f, step) for t, s, f, step in con.sql(
        "SELECT trial_id, state, finished_at, last_step FROM trials").fetchall()}
    reports = {(t, s): v for t, s, v in con.sql("SELECT trial_id, step, value FROM reports").fetchall()}
    children = lin["trial_id"].to_list()
    assert len(set(children)) == len(children), "a trial was forked twice"
    for row in lin.iter_rows(named=True):
        parent, child = row["parent_trial_id"], row["trial_id"]
        assert parent in started and child in started
        assert started[parent] < row["ts"] and started[child] <= row["ts"]
        # the parent had a better score at fork time, as its own report says
        assert row["parent_score"] > row["replaced_score"]
        assert reports[(parent, row["step"])] == row["parent_score"]
        assert reports[(row["replaced_trial_id"], row["step"])] == row["replaced_score"]
        # the replaced member stopped there
        assert finished[row["replaced_trial_id"]][0] == "pruned"
        assert finished[row["replaced_trial_id"]][2] == row["step"]
        # explore: every param perturbed x0.8/x1.2 (clipped) or resampled
        for name in row["params_before"]:
            after = row["params_after"][name]
            lo, hi = SPACE[name][1:]
            assert lo <= after <= hi
    # no cycles: following parents always ends at an original member
    parent_of = dict(zip(lin["trial_id"], lin["parent_trial_id"]))
    for t in started:
        seen = set()
        while t in parent_of:
            assert t not in seen
            seen.add(t)
            t = parent_of[t]


def test_exploit_copied_the_weights_in_the_run(run):
    store, _ = run
    rows = hptrack.connect(store).sql(
        "SELECT payload FROM events WHERE type = 'trial_forked'").fetchall()
    for (payload,) in rows:
        p = json.loads(payload)
        # the child, evaluated right after the copy, scores what its parent scored
        assert p["copied_score"] == p["parent_score"]


def test_schedule_of_the_best_member_is_rebuilt_from_events(run):
    store, result = run
    con = hptrack.connect(store)
    best = schedule("pbt-digits", store=store)
    assert best["trial_id"][-1] == result.best_trial_id
    last = best.row(-1, named=True)
    assert {k: last[k] for k in SPACE} == result.best_params
    # every member alive at the end: stretches are contiguous and cover all steps,
    # and each stretch's params are those the member reported while training
    forked_live = 0
    for (tid,) in con.sql("SELECT trial_id FROM trials WHERE state = 'complete'").fetchall():
        sched = schedule("pbt-digits", tid, store=store)
        assert sched["from_step"][0] == 0 and sched["to_step"][-1] is None
        assert sched["from_step"][1:].to_list() == sched["to_step"][:-1].to_list()
        forked_live += sched.height > 1
        for row in sched.iter_rows(named=True):
            for (metrics,) in con.sql("SELECT metrics FROM reports WHERE trial_id = ?",
                                      params=[row["trial_id"]]).fetchall():
                m = json.loads(metrics)
                assert {k: m[k] for k in SPACE} == {k: row[k] for k in SPACE}
    assert forked_live >= 1


def test_exploit_copies_weights_and_explore_changes_the_optimizer():
    ad = adapter()
    parent = ad.train(ad.create({"learning_rate_init": 0.01, "alpha": 1e-4}, 0),
                      {"learning_rate_init": 0.01, "alpha": 1e-4}, 3)
    child_params = {"learning_rate_init": 0.05, "alpha": 1e-3}
    child = ad.set_state(ad.create(child_params, 7), ad.get_state(parent))
    np.testing.assert_array_equal(child.predict_proba(X[1400:]), parent.predict_proba(X[1400:]))
    # a real copy: training the child leaves the parent alone
    before = [c.copy() for c in parent.coefs_]
    ad.train(child, child_params, 1)
    assert child._optimizer.learning_rate_init == 0.05  # the new lr reaches the optimizer
    for a, b in zip(before, parent.coefs_):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(child.coefs_[0], parent.coefs_[0])


def test_explore_perturbs_or_resamples():
    rng = random.Random(0)
    space = {"lr": ("log", 1e-4, 1.0), "n": ("int", 1, 100), "act": ["relu", "tanh"]}
    params = {"lr": 0.01, "n": 50, "act": "relu"}
    seen = set()
    for _ in range(200):
        new, how = _explore(params, space, rng, (0.8, 1.2), 0.25)
        for name in ("lr", "n"):
            if how[name] == "x0.8":
                assert new[name] == pytest.approx(params[name] * 0.8)
            elif how[name] == "x1.2":
                assert new[name] == pytest.approx(params[name] * 1.2)
            else:
                assert how[name] == "resampled"
                lo, hi = space[name][1:]
                assert lo <= new[name] <= hi
        assert isinstance(new["n"], int) and new["act"] in ("relu", "tanh")
        seen.update(how.values())
    assert {"x0.8", "x1.2", "resampled", "kept"} <= seen


class Quadratic:
    """A toy model for the protocol: state x walks to 3 with step size lr; loss (x-3)^2."""

    def create(self, params, seed):
        return {"x": 0.0}

    def train(self, model, params, steps):
        for _ in range(steps):
            model["x"] += params["lr"] * 2 * (3 - model["x"])
        return model

    def evaluate(self, model):
        return (model["x"] - 3) ** 2

    def get_state(self, model):
        return dict(model)

    def set_state(self, model, state):
        model.update(state)
        return model


def test_minimize_with_any_model_in_process(tmp_path):
    store = str(tmp_path)
    result = PBT(Quadratic(), {"lr": ("float", 0.001, 0.2)}, name="quad", direction="minimize",
                 population=4, ready=1, rounds=8, quantile=0.25, workers=0, seed=3,
                 store=store).run()
    lin = lineage("quad", store=store)
    assert lin.height == result.n_forks > 0
    assert (lin["parent_score"] < lin["replaced_score"]).all()  # lower is better here
    best = hptrack.connect(store).sql(
        "SELECT min(value) FROM trials WHERE state = 'complete'").fetchall()[0][0]
    assert result.best_score == best


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="population"):
        PBT(Quadratic(), {}, name="x", population=1)
    with pytest.raises(ValueError, match="quantile"):
        PBT(Quadratic(), {}, name="x", quantile=0.9)
