"""The Optuna code hptrack refine prints runs in a real study and asks for the refined distributions."""

from __future__ import annotations

import numpy as np
import optuna
import polars as pl
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hptrack.analysis import refine


def test_printed_optuna_code_suggests_the_refined_distributions():
    rng = np.random.default_rng(0)
    n = 40
    lr, depth = 10 ** rng.uniform(-5, 0, n), rng.integers(1, 20, n)
    opt = rng.choice(["sgd", "adam", "lbfgs"], n)
    value = -(np.log10(lr) + 2) ** 2 - 0.1 * np.abs(depth - 8) - 3.0 * (opt == "lbfgs")
    r = refine(pl.DataFrame({"lr": lr, "depth": depth, "opt": opt, "value": value}), direction="maximize")
    scope: dict = {}
    exec(r.optuna_code(), scope)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    params = scope["suggest_params"](trial)
    expected = {}
    for p in r.params:
        if p.decision == "choices":
            expected[p.name] = CategoricalDistribution(p.categories)
        elif p.decision == "range":
            kind = IntDistribution if p.kind == "int" else FloatDistribution
            expected[p.name] = kind(p.low, p.high, log=p.log)
        else:
            assert params[p.name] == p.value
    assert trial.distributions == expected and r["lr"].log and "lbfgs" not in r["opt"].categories
    study.tell(trial, 0.0)
