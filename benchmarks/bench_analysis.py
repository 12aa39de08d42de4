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
* 10,000 trials x 10 params: hptrack alone (target: under 30 s).
"""

from __future__ import annotations

import argparse
import math
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


def run_optuna(table):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [c for c in table.columns if c != "value"]
    dist = {k: optuna.distributions.FloatDistribution(-math.pi, math.pi) for k in names}
    study = optuna.create_study()
    study.add_trials([optuna.trial.create_trial(params={k: r[k] for k in names}, distributions=dist,
                                                value=r["value"]) for r in table.iter_rows(named=True)])
    t = time.perf_counter()
    got = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), normalize=False)
    return time.perf_counter() - t, dict(got)


def show(label, seconds, fractions):
    main = " ".join(f"{k}={fractions[k]:.3f}" for k in ("x1", "x2", "x3"))
    dummies = max(v for k, v in fractions.items() if k.startswith("dummy"))
    print(f"{label:<28} {seconds:8.2f} s   {main}  max dummy={dummies:.3f}  "
          f"max abs error={error(fractions):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-optuna", action="store_true")
    args = ap.parse_args()
    print(f"truth: x1={TRUTH['x1']:.3f} x2={TRUTH['x2']:.3f} x3=0.000 dummies=0.000")
    small = trials(2000, 5)
    s_h, f_h = run_hptrack(small)
    show("hptrack fanova 2,000 x 5", s_h, f_h)
    if not args.skip_optuna:
        s_o, f_o = run_optuna(small)
        show("optuna fanova 2,000 x 5", s_o, f_o)
        print(f"speed-up: {s_o / s_h:.1f}x")
    s_b, f_b = run_hptrack(trials(10000, 10))
    show("hptrack fanova 10,000 x 10", s_b, f_b)


if __name__ == "__main__":
    main()
