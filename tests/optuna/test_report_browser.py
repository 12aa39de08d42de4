"""The HTML report of real Optuna studies in Chromium: a 100-trial pruned study on digits (log,
int and categorical params), a multi-objective study, and the size of a 1,000-trial report."""

from __future__ import annotations

import functools
import json
import os
import re

import numpy as np
import optuna
import polars as pl
import pytest
from browser import opened, plot_ids, rendered, screenshot

import hptrack
from hptrack.optuna import Callback, import_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 5


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def sgd_digits(trial):
    """SGD on digits, scored per epoch on a validation split; the median pruner stops the weak."""
    from sklearn.linear_model import SGDClassifier

    X, y = _digits()
    alpha = trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
    eta0 = trial.suggest_float("eta0", 1e-4, 1.0, log=True)
    batch = trial.suggest_int("batch_size", 100, 800, log=True)   # 1 to 8 mini-batches an epoch
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"])
    clf = SGDClassifier(alpha=alpha, eta0=eta0, loss=loss, learning_rate="constant", random_state=0)
    classes = np.unique(y)
    score = 0.0
    for epoch in range(EPOCHS):
        for i in range(0, 800, batch):
            clf.partial_fit(X[i:i + batch], y[i:i + batch], classes=classes)
        score = clf.score(X[1000:1400], y[1000:1400])
        trial.report(score, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return score


def binh_korn(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    return 4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("browser"))
    pruned = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                 pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    with Callback("sgd-digits-100", store=store, metric="accuracy") as cb:
        pruned.optimize(sgd_digits, n_trials=100, callbacks=[cb])
    mo = optuna.create_study(directions=["minimize", "minimize"],
                             sampler=optuna.samplers.NSGAIISampler(population_size=12, seed=1))
    with Callback("binh-korn", store=store) as cb:
        mo.optimize(binh_korn, n_trials=60, callbacks=[cb])
    return store, {"sgd-digits-100": pruned, "binh-korn": mo}


def _doc(text):
    return json.loads(re.search(r"<script type='application/json' id='hp-data'>(.*?)</script>", text, re.S).group(1))


def test_a_pruned_100_trial_study_in_chromium(studies, tmp_path):
    store, by_name = studies
    study = by_name["sgd-digits-100"]
    html = tmp_path / "r.html"
    rep = hptrack.report(["sgd-digits-100"], store=store, html=html, quiet=True, progress=False)
    s = rep.searches[0]
    pruned = sorted(t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    assert pruned and s.states["pruned"] == len(pruned)
    mine = {p["id"]: p for p in _doc(html.read_text())["plots"] if p["search"] == s.search_id}
    with opened(html) as page:
        assert page.errors == [] and page.requests == []
        assert all(n > 0 for n in rendered(page).values())
        # log params on log axes, the categorical on a category axis, the int on a discrete one
        for pid in plot_ids(page):
            if pid not in mine:
                continue
            what = page.evaluate("id => document.getElementById(id).closest('figure').dataset.plot", pid)
            if what.startswith("slice "):
                kind = page.evaluate("id => document.getElementById(id)._fullLayout.xaxis.type", pid)
                param = what.split(" ", 1)[1]
                assert kind == {"alpha": "log", "eta0": "log", "batch_size": "log", "loss": "category"}[param], what
        (par,) = plot_ids(page, "parallel coordinates")
        labels = page.evaluate("id => document.getElementById(id).data[0].dimensions.map(d => d.label)", par)
        assert labels[0] == "trial" and labels[-1] == "accuracy"
        assert sorted(labels[1:-1]) == ["alpha (log)", "batch_size (log)", "eta0 (log)", "loss"]
        # every pruned trial marked where it stopped: Optuna's last reported step
        (curves,) = plot_ids(page, "intermediate values")
        marks = page.evaluate("id => document.getElementById(id).data.filter(t => t.name === 'pruned here')"
                              ".map(t => [t.customdata, t.x])[0]", curves)
        last = {t.number: max(t.intermediate_values) for t in study.trials if t.number in pruned}
        assert sorted(marks[0]) == pruned and dict(zip(*marks)) == last
        screenshot(page, "optuna-100-trials-pruned")


def test_a_multi_objective_study_in_chromium(studies, tmp_path):
    store, by_name = studies
    html = tmp_path / "mo.html"
    hptrack.report(["binh-korn"], store=store, html=html, quiet=True, progress=False)
    with opened(html) as page:
        assert page.errors == [] and page.requests == []
        assert all(n > 0 for n in rendered(page).values())
        (front,) = plot_ids(page, "Pareto front")
        got = page.evaluate("id => document.getElementById(id).data.find(t => t.name === 'Pareto front')"
                            ".customdata", front)
        assert sorted(got) == sorted(t.number for t in by_name["binh-korn"].best_trials)
        screenshot(page, "optuna-multi-objective")


def test_a_1000_trial_report_stays_under_5_mb(tmp_path):
    """1,000 trials of 4 params with 20 intermediate values each: one file under 5 MB."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="minimize", study_name="big")
    dists = {"lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
             "depth": optuna.distributions.IntDistribution(1, 12),
             "kind": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
             "drop": optuna.distributions.FloatDistribution(0.0, 0.5)}
    trials = []
    for _ in range(1000):
        params = {"lr": float(10 ** rng.uniform(-5, 0)), "depth": int(rng.integers(1, 13)),
                  "kind": str(rng.choice(["a", "b", "c"])), "drop": float(rng.uniform(0, 0.5))}
        curve = np.abs(np.log10(params["lr"]) + 2.5) / 3 + 0.3 * np.exp(-np.arange(20) / 5) + rng.normal(0, 0.01, 20)
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=float(curve[-1]),
                                                intermediate_values=dict(enumerate(curve.tolist()))))
    study.add_trials(trials)
    store = str(tmp_path / "store")
    import_study(study._storage, "big", store=store)
    html = tmp_path / "big.html"
    rep = hptrack.report(["big"], store=store, html=html, quiet=True, progress=False)
    assert rep.searches[0].n_trials == 1000
    size = os.path.getsize(html)
    print(f"1,000-trial report: {size / 1e6:.2f} MB")
    assert size < 5_000_000
    table = _doc(html.read_text())["tables"][0]
    assert len(table["rows"]) == 1000     # every trial in the table
    got = pl.DataFrame(table["rows"], schema=table["columns"], orient="row")
    want = hptrack.trials("big", store=store)
    assert got["value"].to_list() == want["value"].to_list()   # full precision
