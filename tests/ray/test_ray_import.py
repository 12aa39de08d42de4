"""hptrack.ray.import_results / `hptrack import-ray` on folders written by real Ray Tune runs.

Skipped when ray[tune] is not installed (``pip install hptrack[ray]``): the
folders are made by running Tuner here. The trainables and the local Ray
instance are test_ray's.
"""

import json
import os
import shutil

import pytest

pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'ray[tune]' or "
                    "hptrack[ray]); the test runs Ray Tune to make its result folders")

from click.testing import CliRunner
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from test_ray import local_ray, pbt_trainable, quadratic  # noqa: F401

import hptrack
import hptrack.ray as hray
from hptrack.analysis.population import lineage, schedule
from hptrack.cli.main import cli
from hptrack.ray._import import flat_params


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


@pytest.fixture(scope="module")
def pbt_run(local_ray, tmp_path_factory):  # noqa: F811
    """A finished PBT experiment folder: 4 members, 6 steps, exploits every 2."""
    root = tmp_path_factory.mktemp("ray")
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": tune.uniform(0.001, 1.0)},
                                  quantile_fraction=0.5, resample_probability=0.0,
                                  synch=True, metric="score", mode="max")
    results = tune.Tuner(pbt_trainable,
                         param_space={"lr": tune.grid_search([0.01, 0.02, 0.5, 1.0]),
                                      "opt": {"mom": 0.9}},
                         tune_config=tune.TuneConfig(scheduler=pbt, reuse_actors=True),
                         run_config=tune.RunConfig(name="pbt", storage_path=str(root),
                                                   verbose=0)).fit()
    assert not results.errors and pbt._num_perturbations > 0
    return str(root / "pbt"), results


def test_pbt_folder_imports_results_and_forks(pbt_run, tmp_path):
    folder, results = pbt_run
    store = str(tmp_path / "store")
    res = hray.import_results(folder, store=store, metric="score", mode="max")
    assert res.name == "ray-pbt" and res.written == res.trials and res.running == 0
    (strategy, direction, metric, n_trials), = q(
        store, "SELECT strategy, direction, metric, n_trials FROM searches WHERE name = 'ray-pbt'")
    assert (strategy, direction, metric) == ("pbt", "maximize", "score")

    # one trial per member plus one per exploit, every exploit of pbt_global.txt a fork
    records = lines(os.path.join(folder, "pbt_global.txt"))
    assert res.forks == len(records) and n_trials == 4 + len(records)
    forks = lineage("ray-pbt", store=store)
    assert forks.height == len(records)
    assert sorted(json.dumps(flat_params(r[5]), sort_keys=True) for r in records) == sorted(
        json.dumps(f, sort_keys=True) for f in forks["params_after"].to_list())
    assert all(f["opt/mom"] == 0.9 for f in forks["params_after"].to_list())

    # every result line of every member is a report, in the hptrack trial that ran it,
    # with Ray's value, step and (whole-second) time
    got = q(store, "SELECT trial_id, step, value, epoch_us(ts) FROM reports ORDER BY ts, step")
    want = []
    for sub in sorted(os.listdir(folder)):
        if os.path.isfile(os.path.join(folder, sub, "result.json")):
            want += [(r["trial_id"], r["training_iteration"], r["score"], r["timestamp"] * 10**6)
                     for r in lines(os.path.join(folder, sub, "result.json"))]
    assert len(got) == len(want)
    assert sorted(g[1:] for g in got) == sorted(w[1:] for w in want)
    first = dict(q(store, "SELECT trial_id, min(step) FROM reports GROUP BY ALL"))
    for f in forks.iter_rows(named=True):
        # a child resumes after the parent's step it copied, at a perturbation boundary
        assert f["step"] % 2 == 0 and f["parent_score"] is not None
        assert first.get(f["trial_id"], f["step"] + 1) == f["step"] + 1

    # members end as Ray says: 4 complete with Ray's final scores, the replaced ones pruned
    states = dict(q(store, "SELECT state, count(*) FROM trials GROUP BY ALL"))
    assert states == {"complete": 4, "pruned": len(records)}
    finals = sorted(v for (v,) in q(store, "SELECT value FROM trials WHERE state = 'complete'"))
    assert finals == sorted(r.metrics["score"] for r in results)
    for f in forks.iter_rows(named=True):
        (state,), = q(store, "SELECT state FROM trials WHERE trial_id = ?", [f["replaced_trial_id"]])
        assert state == "pruned"
    sched = schedule("ray-pbt", store=store)
    assert sched["from_step"][0] == 0 and sched.height >= 1
    assert hptrack.verify(store).ok

    # importing again writes nothing
    n_events = q(store, "SELECT count(*) FROM events")
    again = hray.import_results(folder, store=store, metric="score", mode="max")
    assert again.written == 0 and q(store, "SELECT count(*) FROM events") == n_events


def test_running_experiment_imported_twice_ends_as_one_import(pbt_run, tmp_path):
    # a copy of the folder as it was mid-run: three results per member, the exploits
    # made until then, every member RUNNING
    folder, _ = pbt_run
    early = str(tmp_path / "early")
    shutil.copytree(folder, early, ignore=shutil.ignore_patterns("checkpoint_*", "pbt_policy_*"))
    (state_file,) = [os.path.join(early, f) for f in os.listdir(early)
                     if f.startswith("experiment_state-")]
    with open(state_file) as f:
        state = json.load(f)
    for entry in state["trial_data"]:
        t = json.loads(entry[0])
        t["status"] = "RUNNING"
        entry[0] = json.dumps(t)
        result_json = os.path.join(early, t["relative_logdir"], "result.json")
        with open(result_json) as f:
            head = [x for x in f if json.loads(x)["training_iteration"] <= 3]
        with open(result_json, "w") as f:
            f.writelines(head)
    with open(state_file, "w") as f:
        json.dump(state, f)
    with open(os.path.join(early, "pbt_global.txt")) as f:
        made = [x for x in f if json.loads(x)[2] <= 2]
    with open(os.path.join(early, "pbt_global.txt"), "w") as f:
        f.writelines(made)

    both, once = str(tmp_path / "both"), str(tmp_path / "once")
    first = hray.import_results(early, "pbt", both, metric="score", mode="max")
    assert first.running == 4 and first.forks == len(made)
    (finished, running), = q(both, "SELECT finished_at, n_running FROM searches")
    assert finished is None and running == 4
    hray.import_results(folder, "pbt", both, metric="score", mode="max")
    hray.import_results(folder, "pbt", once, metric="score", mode="max")
    sql = "SELECT trial_id, state, value, n_reports, last_step FROM trials ORDER BY trial_id"
    assert q(both, sql) == q(once, sql)
    assert q(both, "SELECT count(*) FROM reports") == q(once, "SELECT count(*) FROM reports")
    (finished,), = q(both, "SELECT finished_at FROM searches")
    assert finished is not None


def test_errors_metric_and_params_of_a_grid_run(local_ray, tmp_path):  # noqa: F811
    tune.Tuner(quadratic, param_space={"x": tune.grid_search([0, 1, 2, 3]), "opt": {"lr": 0.1}},
               tune_config=tune.TuneConfig(metric="loss", mode="min"),
               run_config=tune.RunConfig(name="grid", storage_path=str(tmp_path / "ray"), verbose=0,
                                         failure_config=tune.FailureConfig(fail_fast=False))).fit()
    folder, store = str(tmp_path / "ray" / "grid"), str(tmp_path / "store")
    with pytest.raises(ValueError, match="mode"):
        hray.import_results(folder, store=store)
    # the metric comes from the experiment state (TuneConfig(metric="loss"))
    res = hray.import_results(folder, "grid", store, mode="min")
    (strategy, direction, metric), = q(store, "SELECT strategy, direction, metric FROM searches")
    assert (strategy, direction, metric, res.forks) == ("random", "minimize", "loss", 0)
    rows = q(store, "SELECT p.value_num, t.state, t.value, t.error, t.n_reports, "
                    "t.metrics ->> 'best' FROM trials t JOIN params p USING (trial_id) "
                    "WHERE p.name = 'x' ORDER BY 1")
    for x, state, value, error, n, best in rows:
        if x == 3:
            assert state == "failed" and "x = 3 diverges" in error and n == 0
        else:  # the last of 3 reports: (x-1)^2 + 1/3; the best (min) is the same here
            assert state == "complete" and n == 3
            assert value == pytest.approx((x - 1) ** 2 + 1 / 3) == float(best)
    assert len(rows) == 4
    assert {n for (n,) in q(store, "SELECT DISTINCT name FROM params")} == {"x", "opt/lr"}
    assert flat_params({"opt": {"lr": 0.1}}) == {"opt/lr": 0.1}


def test_cli_import_ray(pbt_run, tmp_path):
    folder, _ = pbt_run
    store = str(tmp_path / "store")
    run = CliRunner().invoke
    r = run(cli, ["--store", store, "import-ray", folder, "--name", "p", "--mode", "max",
                  "--metric", "score", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["name"] == "p" and out["written"] == out["trials"] > 4
    r = run(cli, ["--store", store, "import-ray", folder, "--name", "p", "--mode", "max",
                  "--metric", "score"])
    assert r.exit_code == 0 and "nothing new" in r.output
    r = run(cli, ["--store", store, "import-ray", os.path.dirname(folder), "--mode", "max"])
    assert r.exit_code == 1 and "experiments in it: pbt" in r.output
