"""Report benchmark: ``hptrack report`` on many searches and on one huge search,
beside Optuna's own visualisation of the same trials.

Run it on purpose (not part of the test suite; building the stores takes minutes)::

    .venv/bin/python benchmarks/bench_report.py                    # both stores
    .venv/bin/python benchmarks/bench_report.py --only many        # or: --only big
    .venv/bin/python benchmarks/bench_report.py --skip-optuna      # hptrack only
    .venv/bin/python benchmarks/bench_report.py --keep /tmp/bench  # build once, reuse

Two stores (targets of issue #16, on a 2-core machine, HTML write included):

* ``many``: 200 searches of 10-50 trials each (target: report under 15 s).
  Strategies grid/random/tpe/bayes/halving; 150 of them share one of 30 tasks
  (so every group is compared), 50 have none; params float, log-float, int and
  categorical; a third are sklearn-like (5 fold scores per trial, a test score
  on the winner), a third report intermediate values (some pruned); about 3%
  of trials fail. Written with the public write API (``hptrack.search``,
  ``durability="batch"``; ``hptrack.score_trial`` for the test scores).
* ``tiny``: the issue's own case, 200 searches of 2 trials each (no importance
  to fit: what is left is the cost of reading; it had not finished in 300 s).
* ``big``: one Optuna study of 100,000 trials (``optuna.trial.create_trial`` +
  ``study.add_trials``; a tenth report 3 intermediate values, some pruned or
  failed), imported with ``hptrack.optuna.import_study`` (target: report under 10 s).

Timed: ``hptrack report --html`` end to end (a fresh subprocess, as a user runs
it): with ``--jobs 1 --no-cache`` (every importance fitted in that process), with an
empty importance cache (fitted in a worker per core, the first report of a store), and
once more (the fits read back: every later report of searches that did not change);
the library ``hptrack.analysis.report.report(..., html=..., quiet=True)`` (in this
process, its imports already loaded, empty cache), and Optuna's visualisation of
the same trials: ``plot_optimization_history``, ``plot_param_importances``,
``plot_parallel_coordinate``, ``plot_intermediate_values`` and ``plot_slice``
per study, every figure written to one HTML file (plotly.js once). Each Optuna
plot of the big study runs in a child process stopped after ``--optuna-timeout``
seconds (its fANOVA importance on 100,000 trials takes far longer): such a time
prints as ``>`` the limit and its ratio as a lower bound.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import numpy as np

N_SEARCHES = 200
N_BIG = 100_000
STRATEGIES = ("grid", "random", "tpe", "bayes", "halving")
KINDS = ("a", "b", "c")
SPACE = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "dropout": {"low": 0.0, "high": 0.5},
         "depth": {"low": 1, "high": 10}, "kind": list(KINDS)}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLOTS = ("plot_optimization_history", "plot_param_importances", "plot_parallel_coordinate",
         "plot_intermediate_values", "plot_slice")


# --- the trials, one plain description for both hptrack and Optuna ------------------------
def _objective(p, rng):
    """A smooth score in (0, 1): mostly lr and depth, a little dropout and kind."""
    lr = math.log10(p["lr"])
    v = 0.9 - 0.04 * (lr + 2.5) ** 2 - 0.004 * (p["depth"] - 6) ** 2 - 0.1 * (p["dropout"] - 0.2) ** 2
    return float(v + {"a": 0.0, "b": 0.01, "c": -0.01}[p["kind"]] + rng.normal(0, 0.005))


def _params(rng):
    return {"lr": float(10 ** rng.uniform(-4, -1)), "dropout": float(rng.uniform(0, 0.5)),
            "depth": int(rng.integers(1, 11)), "kind": str(rng.choice(KINDS))}


def many_searches(seed=0, trials=(10, 50)):
    """200 search descriptions (``trials``: the range of their sizes): dicts with
    the search's settings and its trials."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(N_SEARCHES):
        task = f"task-{i // 5}" if i < 150 else None
        sklearn_like, reports = i % 3 == 0, i % 3 == 1
        direction = "minimize" if (i // 5) % 4 == 3 else "maximize"
        s = {"name": f"s{i:03d}", "strategy": STRATEGIES[i % 5], "direction": direction,
             "metric": "loss" if direction == "minimize" else "acc", "seed": i // 5, "task": task,
             "sklearn": sklearn_like, "trials": []}
        t = T0 + timedelta(hours=i)
        for _ in range(int(rng.integers(trials[0], trials[1] + 1))):
            p = _params(rng)
            v = _objective(p, rng)
            v = 1 - v if direction == "minimize" else v
            tr = {"params": p, "value": v, "state": "complete", "start": t, "reports": [], "folds": []}
            if reports:
                tr["reports"] = [(k, v - 0.05 * (2 - k)) for k in range(3)]
                if rng.random() < 0.15:
                    tr["state"], tr["reports"] = "pruned", tr["reports"][:2]
            if sklearn_like:
                tr["folds"] = [float(v + rng.normal(0, 0.01)) for _ in range(5)]
            if rng.random() < 0.03:
                tr["state"], tr["folds"] = "failed", []
            t += timedelta(seconds=float(rng.uniform(1, 30)))
            tr["end"] = t
            s["trials"].append(tr)
        out.append(s)
    return out


def big_study(seed=0):
    """The 100,000-trial Optuna study (in memory)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5),
            "depth": IntDistribution(1, 10), "kind": CategoricalDistribution(list(KINDS))}
    trials = []
    for n in range(N_BIG):
        p = _params(rng)
        v = _objective(p, rng)
        state, inter = TrialState.COMPLETE, {}
        if n % 10 == 0:
            inter = {k: v - 0.05 * (2 - k) for k in range(3)}
            if rng.random() < 0.2:
                state, inter = TrialState.PRUNED, {0: inter[0], 1: inter[1]}
        if rng.random() < 0.01:
            state, inter = TrialState.FAIL, {}
        trials.append(create_trial(params=p, distributions=dist, intermediate_values=inter, state=state,
                                   value=v if state == TrialState.COMPLETE else None))
    study = optuna.create_study(study_name="big", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.add_trials(trials)
    return study


def optuna_studies(searches):
    """One in-memory Optuna study per search description, with the same trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5),
            "depth": IntDistribution(1, 10), "kind": CategoricalDistribution(list(KINDS))}
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    studies = []
    for s in searches:
        study = optuna.create_study(study_name=s["name"], direction=s["direction"])
        study.add_trials([create_trial(params=t["params"], distributions=dist, state=states[t["state"]],
                                       intermediate_values=dict(t["reports"]),
                                       value=t["value"] if t["state"] == "complete" else None)
                          for t in s["trials"]])
        studies.append(study)
    return studies


# --- writing the stores ---------------------------------------------------------------------
def write_many(store, searches):
    import hptrack

    for s in searches:
        attrs = {"task": s["task"]} if s["task"] else {}
        best = None
        with hptrack.search(s["name"], strategy=s["strategy"], direction=s["direction"], metric=s["metric"],
                            space=SPACE, seed=s["seed"], store=store, durability="batch", quiet=True,
                            ts=s["trials"][0]["start"], **attrs) as h:
            for tr in s["trials"]:
                t = h.trial(tr["params"], ts=tr["start"])
                for step, v in tr["reports"]:
                    t.report(step, v, ts=tr["end"])
                for k, v in enumerate(tr["folds"]):
                    t.score(v, split="fold", fold=k, metric=s["metric"], ts=tr["end"], n_train=400, n_test=100)
                if tr["state"] == "complete":
                    t.complete(tr["value"], ts=tr["end"])
                    sign = 1 if s["direction"] == "maximize" else -1
                    if best is None or sign * tr["value"] > sign * best[1]:
                        best = (t.trial_id, tr["value"])
                elif tr["state"] == "pruned":
                    t.prune(len(tr["reports"]) - 1, ts=tr["end"])
                else:
                    t.fail("diverged: loss is nan", ts=tr["end"])
        if s["sklearn"] and best is not None:
            hptrack.score_trial(h.search_id, best[0], best[1] - 0.01, split="test", metric=s["metric"],
                                store=store)


def write_big(store, study):
    import hptrack.optuna

    hptrack.optuna.import_study(study._storage, study.study_name, store=store)


# --- timing ---------------------------------------------------------------------------------
def _empty(folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def time_cli(store, html, cache, *options):
    """``hptrack report --html`` in a fresh process, its importance fits kept in ``cache``."""
    env = {**os.environ, "HPTRACK_STORE": store, "HPTRACK_CACHE_DIR": cache}
    cli = os.path.join(os.path.dirname(sys.executable), "hptrack")
    t = time.perf_counter()
    subprocess.run([cli, "report", "--html", html, *options], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def time_library(store, html, cache):
    from hptrack.analysis.report import report

    os.environ["HPTRACK_CACHE_DIR"] = cache
    t = time.perf_counter()
    report(store=store, html=html, quiet=True, progress=False)
    return time.perf_counter() - t


def _optuna_figures(studies, plots, html):
    """Seconds to draw ``plots`` of every study and write them all to one HTML file."""
    import warnings

    import optuna.visualization as vis

    t = time.perf_counter()
    with warnings.catch_warnings(), open(html, "w") as out:
        warnings.simplefilter("ignore")  # "no intermediate values", experimental features
        first = True
        for study in studies:
            for plot in plots:
                fig = getattr(vis, plot)(study)
                out.write(fig.to_html(full_html=False, include_plotlyjs=first))
                first = False
    return time.perf_counter() - t


def _child(conn, studies, plots, html):
    conn.send(_optuna_figures(studies, plots, html))


def time_optuna(studies, plots, html, timeout=None):
    """(seconds, finished): in this process, or in a forked child stopped after ``timeout``."""
    if timeout is None:
        return _optuna_figures(studies, plots, html), True
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, studies, plots, html))
    t = time.perf_counter()
    proc.start()
    done = recv.poll(timeout)
    if done:
        seconds = recv.recv()
        proc.join()
        return seconds, True
    proc.kill()
    proc.join()
    return time.perf_counter() - t, False


def show(label, seconds, finished=True):
    print(f"  {label:<52} {'>' if not finished else ' '}{seconds:8.2f} s", flush=True)


def ratio(label, slow, fast, finished=True):
    print(f"  {label:<52} {'>' if not finished else ' '}{slow / fast:8.1f}x", flush=True)


def run(kind, root, skip_optuna, optuna_timeout):
    store = os.path.join(root, f"{kind}-store")
    t = time.perf_counter()
    if kind in ("many", "tiny"):
        searches = many_searches(trials=(10, 50) if kind == "many" else (2, 2))
        if not os.path.isdir(store):
            write_many(store, searches)
        label = f"{N_SEARCHES} searches, {sum(len(s['trials']) for s in searches):,} trials"
    else:
        study = big_study()
        if not os.path.isdir(store):
            write_big(store, study)
        label = f"one search of {N_BIG:,} trials"
    print(f"{kind}: {label} (stores built/read in {time.perf_counter() - t:.0f} s, {store})", flush=True)
    html, cache = os.path.join(root, f"{kind}-cli.html"), os.path.join(root, f"{kind}-cache")
    serial_s = time_cli(store, html, _empty(cache), "--jobs", "1", "--no-cache")
    show("hptrack report --html --jobs 1 --no-cache", serial_s)
    cli_s = time_cli(store, html, _empty(cache))
    show("hptrack report --html (fresh process, empty cache)", cli_s)
    warm_s = time_cli(store, html, cache)
    show("hptrack report --html (again: the fits read back)", warm_s)
    ratio("ratio --jobs 1 --no-cache / empty cache", serial_s, cli_s)
    ratio("ratio empty cache / fits read back", cli_s, warm_s)
    lib_s = time_library(store, os.path.join(root, f"{kind}-lib.html"), _empty(cache))
    show("hptrack.analysis.report.report(html=..., quiet=True)", lib_s)
    target = {"many": 15.0, "big": 10.0}.get(kind)
    if target is not None:
        for label, seconds in (("empty cache", cli_s), ("fits read back", warm_s)):
            print(f"  target: under {target:.0f} s -> {'met' if seconds < target else 'NOT met'} by the CLI, "
                  f"{label}", flush=True)
    if skip_optuna:
        return
    html = os.path.join(root, f"{kind}-optuna.html")
    if kind in ("many", "tiny"):
        studies = optuna_studies(searches)
        total, finished = time_optuna(studies, PLOTS, html)
        show(f"optuna.visualization, 5 plots x {len(studies)} studies", total, finished)
    else:
        total, finished = 0.0, True
        for plot in PLOTS:
            s, ok = time_optuna([study], (plot,), html, optuna_timeout)
            show(f"optuna.visualization.{plot}", s, ok)
            total, finished = total + s, finished and ok
        show("optuna.visualization, the 5 plots", total, finished)
    ratio("ratio optuna / hptrack CLI", total, cli_s, finished)
    ratio("ratio optuna / hptrack library", total, lib_s, finished)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("many", "big", "tiny"))
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="build the stores in DIR (reused when there) and keep them")
    ap.add_argument("--optuna-timeout", type=float, default=300.0,
                    help="seconds before one Optuna plot of the big study is stopped (default 300)")
    args = ap.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="hptrack-bench-report-")
    os.makedirs(root, exist_ok=True)
    try:
        for kind in ("many", "big", "tiny"):
            if args.only in (None, kind):
                run(kind, root, args.skip_optuna, args.optuna_timeout)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
