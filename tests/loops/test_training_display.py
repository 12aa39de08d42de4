"""One search gives one set of numbers everywhere, and a training loop's early
stop and learning rate are shown, not buried in SQL (issue 14 item 12).

Material: KNN on wine under GridSearchCV (tracked), and an Optuna study that
trains SGDClassifier.partial_fit on digits with a decaying learning rate and
hptrack.EarlyStopping, as examples/lr_schedules.py does. The loop itself keeps
what happened (its own EarlyStopping and the lr it set), to check the display."""

import json

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits, load_wine
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hptrack
import hptrack.sklearn as hs
import hptrack.training
from hptrack.analysis.overfitting import diagnose
from hptrack.analysis.report import build
from hptrack.cli.main import cli

EPOCHS = 12
N_TRIALS = 20


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    X, y = load_wine(return_X_y=True)
    hs.track(GridSearchCV(make_pipeline(StandardScaler(), KNeighborsClassifier()),
                          {"kneighborsclassifier__n_neighbors": list(range(1, 30, 4))}, cv=5),
             name="knn-wine", store=root, dataset="wine").fit(X, y)
    return root


@pytest.fixture(scope="module")
def trained(store):
    """(store, {trial number: (EarlyStopping, [lr per epoch])}) of the SGD study."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    classes = np.unique(y)
    truth = {}

    @hptrack.track("sgd-digits", store=store, metric="accuracy", dataset="digits")
    def objective(trial):
        lr0 = trial.suggest_float("lr0", 1e-4, 0.3, log=True)
        gamma = trial.suggest_float("gamma", 0.5, 0.95)
        clf = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=lr0, random_state=0)
        es = hptrack.EarlyStopping(patience=5, min_delta=0.002, trial=trial, max_steps=EPOCHS)
        lrs = []
        truth[trial.number] = (es, lrs)
        for epoch in range(EPOCHS):
            lr = lr0 * gamma ** epoch
            lrs.append(lr)
            clf.set_params(eta0=lr)
            clf.partial_fit(X_tr, y_tr, classes=classes)
            score = clf.score(X_va, y_va)
            trial.report(score, epoch, lr=lr)
            if es(score, clf):
                break
        return clf.score(X_va, y_va)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=N_TRIALS)
    stopped = [n for n, (es, _) in truth.items() if es.stopped]
    assert 0 < len(stopped) < N_TRIALS, "the material should have trials that stop and trials that do not"
    return store, truth


# --- item 12a: report and diagnose agree ------------------------------------------

def test_report_diagnosis_equals_diagnose(store):
    rep = build(["knn-wine"], store=store, progress=False)
    got = rep.searches[0].diagnosis.to_dict()
    want = diagnose("knn-wine", store=store, seed=0).to_dict()
    assert got == want
    assert got["optimistic_bias"] is not None and got["p_best_stays_best"] is not None
    out = CliRunner().invoke(cli, ["--store", str(store), "diagnose", "knn-wine", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == json.loads(json.dumps(want))


# --- item 12b: early stopping and learning rate -------------------------------------

def test_training_summary_matches_the_loop(trained):
    store, truth = trained
    summary = hptrack.training.summary("sgd-digits", store=store)
    rows = {r["trial_number"]: r for r in summary.trials.iter_rows(named=True)}
    assert set(rows) == set(truth)
    for n, (es, lrs) in truth.items():
        r = rows[n]
        assert r["stopped_early"] == es.stopped
        assert r["stop_step"] == es.stop_step  # None when it ran every epoch
        assert r["best_step"] == (es.best_step if es.stopped else None)
        assert r["best_score"] == (es.best_score if es.stopped else None)
        assert r["steps"] == len(lrs)
        assert (r["lr_first"], r["lr_last"]) == (lrs[0], lrs[-1])
    lr = summary.lr.filter(summary.lr["trial_number"] == 0)
    assert lr["step"].to_list() == list(range(len(truth[0][1])))
    assert lr["lr"].to_list() == truth[0][1]


def test_show_prints_the_stops_and_the_learning_rate(trained):
    store, truth = trained
    out = CliRunner().invoke(cli, ["--store", str(store), "show", "sgd-digits"])
    assert out.exit_code == 0, out.output
    stopped = sorted(n for n, (es, _) in truth.items() if es.stopped)
    assert f"early stopping: {len(stopped)} of {N_TRIALS} trials stopped early" in out.output
    for n in stopped:
        es = truth[n][0]
        assert f"#{n} stopped at step {es.stop_step}, best step {es.best_step}" in out.output
    assert "learning rate (lr) per trial, first -> last:" in out.output
    data = json.loads(CliRunner().invoke(cli, ["--store", str(store), "show", "sgd-digits",
                                               "--format", "json"]).output)
    assert {r["trial_number"] for r in data["training"] if r["stopped_early"]} == set(stopped)


def test_report_shows_the_stops_and_the_learning_rate(trained, tmp_path):
    store, truth = trained
    rep = build(["sgd-digits"], store=store, progress=False)
    stopped = sorted(n for n, (es, _) in truth.items() if es.stopped)
    from io import StringIO

    from rich.console import Console

    from hptrack.analysis.report import render_terminal
    buf = StringIO()
    render_terminal(rep, Console(file=buf, width=80, force_terminal=False, color_system=None))
    text = " ".join(buf.getvalue().split())
    assert f"early stopping: {len(stopped)} of {N_TRIALS} trials stopped early" in text
    from hptrack.analysis.report import html as report_html
    html = report_html.render(rep)
    assert "data-plot='learning rate'" in html
    assert f"early stopping: {len(stopped)} of {N_TRIALS} trials stopped early" in html
    for n in stopped:
        assert f"trial {n} stopped early at step {truth[n][0].stop_step}" in html
