"""hptrack.ray.Callback on real Ray Tune runs (a local Ray instance).

Skipped when ray[tune] is not installed (``pip install hptrack[ray]``).
"""

import json
import os
import sys

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[tune]' or "
                          "hptrack[ray])")
tune = pytest.importorskip("ray.tune", reason="ray is installed without tune "
                           "(pip install 'ray[tune]')")

from ray.tune.schedulers import PopulationBasedTraining  # noqa: E402

import hptrack  # noqa: E402
import hptrack.ray as hray  # noqa: E402
from hptrack.analysis.population import lineage, schedule  # noqa: E402

# Ray's workers cannot import this test module by name: ship its functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def quadratic(config):
    """Three iterations of a made-up loss; x == 3 raises."""
    if config["x"] == 3:
        raise ValueError("x = 3 diverges")
    for i in range(1, 4):
        tune.report({"loss": (config["x"] - 1) ** 2 + 1.0 / i, "extra": i * 10})


def test_trials_results_and_errors(tmp_path):
    store = str(tmp_path / "store")
    cb = hray.Callback("ray-grid", metric="loss", mode="min", store=store)
    tuner = tune.Tuner(quadratic, param_space={"x": tune.grid_search([0, 1, 2, 3]), "opt": {"lr": 0.1}},
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(callbacks=[cb], storage_path=str(tmp_path / "ray"),
                                                 verbose=0, failure_config=tune.FailureConfig(fail_fast=False)))
    results = tuner.fit()
    assert len(results) == 4 and len(results.errors) == 1

    rows = q(store, "SELECT t.trial_id, t.state, t.value, t.n_reports FROM trials t "
                    "JOIN searches s USING (search_id) WHERE s.name = 'ray-grid'")
    assert len(rows) == 4
    by_x = {}
    for tid, state, value, n_reports in rows:
        params = dict(q(store, "SELECT name, value FROM params WHERE trial_id = ?", [tid]))
        assert params["opt/lr"] == "0.1"
        by_x[int(params["x"])] = (tid, state, value, n_reports)
    for r in results:
        if r.error is not None:
            continue
        tid, state, value, n_reports = by_x[r.config["x"]]
        assert state == "complete" and value == r.metrics["loss"] and n_reports == 3
        reports = q(store, "SELECT step, value, metrics FROM reports WHERE trial_id = ? ORDER BY step",
                    [tid])
        hist = r.metrics_dataframe
        assert [s for s, _, _ in reports] == list(hist["training_iteration"])
        assert [v for _, v, _ in reports] == list(hist["loss"])
        assert [json.loads(m)["extra"] for _, _, m in reports] == [10.0, 20.0, 30.0]
    tid, state, value, n_reports = by_x[3]
    assert state == "failed" and value is None and n_reports == 0
    (error,), = q(store, "SELECT error FROM trials WHERE trial_id = ?", [tid])
    assert "x = 3 diverges" in error
    (direction, metric), = q(store, "SELECT direction, metric FROM searches WHERE name = 'ray-grid'")
    assert (direction, metric) == ("minimize", "loss")


def pbt_trainable(config):
    """A member whose score grows by lr per step, checkpointing its state each step."""
    import tempfile

    from ray.tune import Checkpoint

    score, step = 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
            score, step = state["score"], state["step"]
    while step < 6:
        step += 1
        score += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"score": score, "step": step}, f)
            tune.report({"score": score}, checkpoint=Checkpoint.from_directory(d))


def test_pbt_exploit_explore_recorded_as_forks(tmp_path):
    store = str(tmp_path / "store")
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": tune.uniform(0.001, 1.0)},
                                  quantile_fraction=0.5, resample_probability=0.0,
                                  synch=True, metric="score", mode="max")
    cb = hray.Callback("ray-pbt", scheduler=pbt, store=store)
    tuner = tune.Tuner(pbt_trainable,
                       param_space={"lr": tune.grid_search([0.01, 0.02, 0.5, 1.0])},
                       tune_config=tune.TuneConfig(scheduler=pbt, reuse_actors=True),
                       run_config=tune.RunConfig(callbacks=[cb], storage_path=str(tmp_path / "ray"),
                                                 verbose=0))
    results = tuner.fit()
    records = lines(os.path.join(results.experiment_path, "pbt_global.txt"))
    assert not results.errors and records

    (sid, strategy, direction), = q(store, "SELECT search_id, strategy, direction FROM searches "
                                           "WHERE name = 'ray-pbt'")
    assert (strategy, direction) == ("pbt", "maximize")
    forks = lineage("ray-pbt", store=store)
    assert forks.height == len(records)
    states = dict(q(store, "SELECT state, count(*) FROM trials WHERE search_id = ? GROUP BY ALL", [sid]))
    # every fork replaced a member: 4 members alive at the end, one pruned trial per fork
    assert states == {"complete": 4, "pruned": forks.height}
    trials = {tid: (state, value, last) for tid, state, value, last in q(
        store, "SELECT trial_id, state, value, last_step FROM trials WHERE search_id = ?", [sid])}
    for f in forks.iter_rows(named=True):
        assert trials[f["replaced_trial_id"]][0] == "pruned"
        assert f["parent_score"] >= f["replaced_score"]  # Ray exploits ties too
        # Ray explores by perturbing lr by 0.8 or 1.2 (resample_probability=0)
        ratio = f["params_after"]["lr"] / f["params_before"]["lr"]
        assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2)
        # the child resumes from the parent's step
        assert f["step"] % 2 == 0
    # Ray's record does not say how each value changed (Ray's private explore step did)
    (explore,), = q(store, "SELECT DISTINCT payload ->> 'explore' FROM events "
                           "WHERE type = 'trial_forked' AND search_id = ?", [sid])
    assert explore is None
    # the final members are complete with Ray's final scores
    finals = sorted(v for s, v, _ in trials.values() if s == "complete")
    assert finals == sorted(r.metrics["score"] for r in results)
    # and the schedule of the best one walks back through its forks to step 0
    sched = schedule("ray-pbt", store=store)
    assert sched["from_step"][0] == 0 and sched.height >= 1
    assert hptrack.verify(store).ok


def test_asha_stopped_trials_are_pruned(tmp_path):
    from ray.tune.schedulers import ASHAScheduler

    store = str(tmp_path / "store")

    def climb(config):
        for i in range(1, 10):
            tune.report({"acc": config["rate"] * i})

    asha = ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1,
                         reduction_factor=3, metric="acc", mode="max")
    cb = hray.Callback("ray-asha", scheduler=asha, store=store)
    results = tune.Tuner(climb, param_space={"rate": tune.grid_search([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])},
                         tune_config=tune.TuneConfig(scheduler=asha, max_concurrent_trials=2,
                                                     reuse_actors=True),
                         run_config=tune.RunConfig(callbacks=[cb], storage_path=str(tmp_path / "ray"),
                                                   verbose=0)).fit()
    assert not results.errors
    its = {r.config["rate"]: r.metrics["training_iteration"] for r in results}
    rows = q(store, "SELECT p.value_num, t.state, t.last_step, t.value FROM trials t "
                    "JOIN params p USING (trial_id) JOIN searches s ON s.search_id = t.search_id "
                    "WHERE s.name = 'ray-asha' AND p.name = 'rate'")
    assert len(rows) == 6
    for rate, state, last_step, value in rows:
        # ran to the budget: complete with Ray's last value; stopped early: pruned there
        if its[rate] == 9:
            assert state == "complete" and value == pytest.approx(rate * 9)
        else:
            assert state == "pruned" and last_step == its[rate] and value is None
    assert {s for _, s, _, _ in rows} == {"complete", "pruned"}


def test_callback_pickles_without_its_run_state_and_leaves_the_scheduler_alone(tmp_path):
    # the Tuner saves its run config with the callback and the scheduler inside
    pbt = PopulationBasedTraining(metric="score", mode="max",
                                  hyperparam_mutations={"lr": tune.uniform(0.0, 1.0)})
    before = dict(vars(pbt))
    cb = hray.Callback("pickled", scheduler=pbt, store=str(tmp_path))
    cb.setup()
    cb._open()
    assert vars(pbt) == before  # nothing patched into the user's scheduler
    cb2 = ray.cloudpickle.loads(ray.cloudpickle.dumps(cb))
    assert cb2.search is None and cb2.name == "pickled" and cb2.metric == "score"
    assert cb2.mode == "max"
    cb.on_experiment_end([])
