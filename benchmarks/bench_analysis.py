"""Sensitivity benchmark: hptrack's fANOVA against Optuna's FanovaImportanceEvaluator.

Run it on purpose (not part of the test suite; Optuna's part takes minutes)::

    .venv/bin/python benchmarks/bench_analysis.py
    .venv/bin/python benchmarks/bench_analysis.py --skip-optuna     # hptrack only

The objective is the Ishigami function (a=7, b=0.1; x1..x3 uniform on
[-pi, pi]) plus params it ignores, so the true first-order Sobol indices are
known: S1 0.314, S2 0.442, S3 0, dummies 0. Accuracy is the largest absolute
error of the raw (not normalised) first-order fractions over all params.

* 2,000 trials x 5 params: hptrack and Optuna on the same trials (an Optuna
  study built from them with ``add_trial``; hptrack reads them as a table).
* 10,000 trials x 10 params (issue #17's target: fANOVA under 10 s): hptrack's
  fANOVA, and PED-ANOVA both ways on the same study (hptrack reads it through
  ``hptrack.optuna.import_study``, so both see the same distributions; their raw
  values must agree), and Optuna's fANOVA in a child process stopped after
  ``--optuna-timeout`` seconds (printed as ``>`` the limit when it is).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import tempfile
import time

import numpy as np
import polars as pl

TRUTH = {"x1": 0.3139, "x2": 0.4424, "x3": 0.0}


def trials(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.pi, math.pi, (n, d))
    y = np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    names = ["x1", "x2", "x3"] + [f"dummy{i}" for i in range(1, d - 2)]
    return pl.DataFrame({**{k: x[:, i] for i, k in enumerate(names)}, "value": y})


def error(fractions: dict) -> float:
    return max(abs(v - TRUTH.get(k, 0.0)) for k, v in fractions.items())


def run_hptrack(table):
    from hptrack.analysis.sensitivity import importance

    t = time.perf_counter()
    df = importance(table, seed=0)
    return time.perf_counter() - t, dict(zip(df["param"], df["importance"]))


def study_of(table):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [c for c in table.columns if c != "value"]
    dist = {k: optuna.distributions.FloatDistribution(-math.pi, math.pi) for k in names}
    study = optuna.create_study(study_name=f"ishigami-{table.height}x{len(names)}")
    study.add_trials([optuna.trial.create_trial(params={k: r[k] for k in names}, distributions=dist,
                                                value=r["value"]) for r in table.iter_rows(named=True)])
    return study


def run_optuna(study, evaluator="FanovaImportanceEvaluator", **kw):
    import warnings

    import optuna

    ev = getattr(optuna.importance, evaluator)(**kw)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = optuna.importance.get_param_importances(study, evaluator=ev, normalize=False)
    return time.perf_counter() - t, dict(got)


def _child(conn, study):
    conn.send(run_optuna(study, seed=0))


def run_optuna_limited(study, timeout):
    """(seconds, fractions or None): Optuna's fANOVA in a forked child stopped after ``timeout``."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, study))
    t = time.perf_counter()
    proc.start()
    if recv.poll(timeout):
        seconds, got = recv.recv()
        proc.join()
        return seconds, got
    proc.kill()
    proc.join()
    return time.perf_counter() - t, None


def run_hptrack_ped_anova(study):
    import hptrack.optuna
    from hptrack.analysis.sensitivity import importance

    with tempfile.TemporaryDirectory() as store:
        hptrack.optuna.import_study(study._storage, study.study_name, store=store)
        t = time.perf_counter()
        df = importance(study.study_name, store=store, method="ped_anova", seed=0)
        return time.perf_counter() - t, dict(zip(df["param"], df["importance"]))


def show(label, seconds, fractions):
    main = " ".join(f"{k}={fractions[k]:.3f}" for k in ("x1", "x2", "x3"))
    dummies = max(v for k, v in fractions.items() if k.startswith("dummy"))
    print(f"{label:<28} {seconds:8.2f} s   {main}  max dummy={dummies:.3f}  "
          f"max abs error={error(fractions):.3f}")


def _top3(f):
    return " > ".join(sorted(f, key=f.get, reverse=True)[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--optuna-timeout", type=float, default=300.0,
                    help="seconds before Optuna's fANOVA on 10,000 x 10 is stopped (default 300)")
    args = ap.parse_args()
    print(f"truth: x1={TRUTH['x1']:.3f} x2={TRUTH['x2']:.3f} x3=0.000 dummies=0.000")
    small = trials(2000, 5)
    s_h, f_h = run_hptrack(small)
    show("hptrack fanova 2,000 x 5", s_h, f_h)
    if not args.skip_optuna:
        s_o, f_o = run_optuna(study_of(small), seed=0)
        show("optuna fanova 2,000 x 5", s_o, f_o)
        print(f"speed-up: {s_o / s_h:.1f}x")
    big = trials(10000, 10)
    s_b, f_b = run_hptrack(big)
    show("hptrack fanova 10,000 x 10", s_b, f_b)
    print(f"target: under 10 s -> {'met' if s_b < 10 else 'NOT met'}")
    if args.skip_optuna:
        return
    study = study_of(big)
    s_p, f_p = run_hptrack_ped_anova(study)
    s_q, f_q = run_optuna(study, "PedAnovaImportanceEvaluator")
    print(f"{'hptrack ped_anova 10,000 x 10':<28} {s_p:8.2f} s   top {_top3(f_p)}  (with 20 bootstrap recomputations)")
    print(f"{'optuna ped_anova 10,000 x 10':<28} {s_q:8.2f} s   top {_top3(f_q)}")
    print(f"ped_anova largest difference hptrack - optuna: {max(abs(f_p[k] - f_q[k]) for k in f_q):.2e}")
    s_f, f_f = run_optuna_limited(study, args.optuna_timeout)
    if f_f is None:
        print(f"{'optuna fanova 10,000 x 10':<28} >{s_f:7.2f} s   (stopped)  ratio > {s_f / s_b:.1f}x")
    else:
        show("optuna fanova 10,000 x 10", s_f, f_f)
        print(f"speed-up: {s_f / s_b:.1f}x")


if __name__ == "__main__":
    main()
