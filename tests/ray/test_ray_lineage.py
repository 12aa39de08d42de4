"""PBT lineage from Ray Tune's public interface: what hptrack.ray.Callback records live
equals what hptrack.ray.import_results reads from the same experiment folder, equals
Ray's own pbt_global.txt; and it still does when the scheduler's private names are gone.

Skipped when ray[tune] is not installed. The trainable and the local Ray are test_ray's.
"""

import json
import os
import re
import sys
import warnings
from collections import defaultdict

import pytest

pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'ray[tune]' or "
                    "hptrack[ray])")

from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from test_ray import lines, local_ray, pbt_trainable  # noqa: F401

import hptrack
import hptrack.ray as hray
from hptrack.analysis.population import lineage
from hptrack.ray._import import flat_params

SPACE = {"lr": tune.grid_search([0.01, 0.02, 0.5, 1.0]), "opt": {"mom": 0.9}}
PBT = {"time_attr": "training_iteration", "perturbation_interval": 2,
           "hyperparam_mutations": {"lr": tune.uniform(0.001, 1.0)}, "quantile_fraction": 0.5,
           "resample_probability": 0.0, "synch": True, "metric": "score", "mode": "max"}


def run(pbt, cb, root):
    results = tune.Tuner(pbt_trainable, param_space=SPACE,
                         tune_config=tune.TuneConfig(scheduler=pbt, reuse_actors=True),
                         run_config=tune.RunConfig(name="pbt", callbacks=[cb], verbose=0,
                                                   storage_path=str(root))).fit()
    assert not results.errors
    return results.experiment_path


def keyed(store, name):
    """The lineage with each hptrack trial named by (Ray trial id, forks of it before):
    the ids differ between a live run and an import, the structure must not."""
    forks = lineage(name, store=store).to_dicts()
    payload = {tid: json.loads(p) for tid, p in hptrack.connect(store).sql(
        "SELECT trial_id, payload FROM events WHERE type = 'trial_forked'").fetchall()}
    by_ray = defaultdict(list)
    for f in forks:
        by_ray[payload[f["trial_id"]]["ray_trial_id"]].append(f)
    key = {f["trial_id"]: (rid, k) for rid, fs in by_ray.items()
           for k, f in enumerate(sorted(fs, key=lambda f: (f["step"], f["ts"])), 1)}
    out = []
    for f in forks:
        p = payload[f["trial_id"]]
        out.append((key[f["trial_id"]],
                    key.get(f["parent_trial_id"], (p["ray_parent_trial_id"], 0)),
                    key.get(f["replaced_trial_id"], (p["ray_trial_id"], 0)),
                    f["step"], f["parent_score"], f["replaced_score"],
                    json.dumps(f["params_before"], sort_keys=True),
                    json.dumps(f["params_after"], sort_keys=True)))
    return sorted(out)


def ray_records(folder):
    """pbt_global.txt as (target, parent, parent config, new config), with Ray trial ids
    for the tags (a trial folder is <trainable>_<id>_<original tag>_<date>)."""
    tags = {}
    for sub in os.listdir(folder):
        m = re.search(r"_([0-9a-f]{5}_\d{5})_(.+)_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$", sub)
        if m:
            tags[m.group(2)] = m.group(1)
    return sorted((tags[t], tags[p], json.dumps(flat_params(pc), sort_keys=True),
                   json.dumps(flat_params(nc), sort_keys=True))
                  for t, p, _, _, pc, nc in lines(os.path.join(folder, "pbt_global.txt")))


def as_records(rows):
    return sorted((child[0], parent[0], before, after)
                  for child, parent, _, _, _, _, before, after in rows)


def test_live_lineage_equals_imported_and_pbt_global(tmp_path):
    live, imported = str(tmp_path / "live"), str(tmp_path / "imported")
    pbt = PopulationBasedTraining(**PBT)
    folder = run(pbt, hray.Callback("pbt", scheduler=pbt, store=live), tmp_path / "ray")
    hray.import_results(folder, "pbt", imported, metric="score", mode="max")

    got = keyed(live, "pbt")
    assert got and got == keyed(imported, "pbt")
    assert as_records(got) == ray_records(folder)
    for child, parent, replaced, step, parent_score, replaced_score, _, _ in got:
        assert child[0] == replaced[0] != parent[0] and child[1] == replaced[1] + 1
        assert step % 2 == 0 and parent_score >= replaced_score
    # the replaced score is the one PBT ranked: the replaced trial's last report
    last = {tid: (step, value) for tid, step, value in hptrack.connect(live).sql(
        "SELECT trial_id, step, value FROM reports QUALIFY row_number() OVER "
        "(PARTITION BY trial_id ORDER BY step DESC) = 1").fetchall()}
    for f in lineage("pbt", store=live).iter_rows(named=True):
        assert last[f["replaced_trial_id"]][1] == f["replaced_score"]
    # the trials end the same way too: the members complete, the replaced ones pruned
    sql = "SELECT state, value, n_reports, last_step FROM trials ORDER BY ALL"
    assert hptrack.connect(live).sql(sql).fetchall() == hptrack.connect(imported).sql(sql).fetchall()
    assert hptrack.verify(live).ok


touched = []  # (private name, function of hptrack that asked for it)


class SealedPBT(PopulationBasedTraining):
    """Ray's PBT, except that its private attributes do not exist for hptrack's code
    (as after a Ray release that renames them); Ray's own code sees them as usual."""

    def __getattribute__(self, name):
        if name.startswith("_") and not name.startswith("__"):
            caller = sys._getframe(1)
            if caller.f_globals.get("__name__", "").startswith("hptrack"):
                touched.append((name, caller.f_code.co_name))
                raise AttributeError(name)
        return super().__getattribute__(name)


def test_no_private_scheduler_name_is_needed(tmp_path):
    store = str(tmp_path / "store")
    touched.clear()
    pbt = SealedPBT(**PBT)
    cb = hray.Callback("sealed", scheduler=pbt, store=store, metric="score", mode="max")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = run(pbt, cb, tmp_path / "ray")
    # the whole lineage is recorded, from Ray's public record of it
    got = keyed(store, "sealed")
    assert got and as_records(got) == ray_records(folder)
    # only the settings reader asked (Ray has no public accessor for them); they are
    # unknown, said once
    assert touched and {fn for _, fn in touched} == {"_setting"}
    mine = [w for w in caught if "hptrack.ray" in str(w.message)]
    assert len(mine) == 1 and "SealedPBT" in str(mine[0].message)
    (settings,), = hptrack.connect(store).sql(
        "SELECT payload ->> 'pbt' FROM events WHERE type = 'search_started'").fetchall()
    assert json.loads(settings)["perturbation_interval"] is None
