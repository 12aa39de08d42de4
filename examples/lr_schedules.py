"""Step, exponential and cosine learning-rate schedules tuned with Optuna, recorded by hptrack.

An SGDClassifier is trained on digits with ``partial_fit``, one epoch at a time,
its learning rate set by the schedule before each epoch. The schedule is a
categorical param and each schedule's own settings are conditional params
(define-by-run). Every epoch reports the validation accuracy together with the
learning rate and the train loss, MedianPruner stops bad trials, and
EarlyStopping stops stalled ones and restores their best epoch.

    python examples/lr_schedules.py [--store DIR] [--trials N]

Afterwards, the learning rate per step of the best trial::

    SELECT step, value, metrics->>'lr' AS lr FROM reports WHERE trial_id = ... ORDER BY step
"""

import argparse
import math

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

import hptrack

EPOCHS = 30


def step_lr(lr0, epoch, step_size, gamma):
    return lr0 * gamma ** (epoch // step_size)


def exponential_lr(lr0, epoch, gamma):
    return lr0 * gamma ** epoch


def cosine_lr(lr0, epoch, lr_min, epochs=EPOCHS):
    return lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * epoch / epochs))


def make_objective(name, store):
    X, y = load_digits(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    classes = np.unique(y)

    @hptrack.track(name, store=store, metric="accuracy", dataset="digits")
    def objective(trial):
        schedule = trial.suggest_categorical("schedule", ["step", "exponential", "cosine"])
        lr0 = trial.suggest_float("lr0", 1e-3, 1.0, log=True)
        alpha = trial.suggest_float("alpha", 1e-6, 1e-2, log=True)
        if schedule == "step":
            step_size = trial.suggest_int("step_size", 2, 10)
            gamma = trial.suggest_float("step_gamma", 0.1, 0.9)
            def lr_at(e):
                return step_lr(lr0, e, step_size, gamma)
        elif schedule == "exponential":
            gamma = trial.suggest_float("exp_gamma", 0.7, 0.99)
            def lr_at(e):
                return exponential_lr(lr0, e, gamma)
        else:
            lr_min = trial.suggest_float("lr_min", 1e-5, 1e-2, log=True)
            def lr_at(e):
                return cosine_lr(lr0, e, lr_min)

        clf = SGDClassifier(loss="log_loss", alpha=alpha, learning_rate="constant", eta0=lr0,
                            random_state=0)
        early_stop = hptrack.EarlyStopping(patience=6, min_delta=0.001, mode="max",
                                           trial=trial, max_steps=EPOCHS)
        for epoch in range(EPOCHS):
            lr = lr_at(epoch)
            clf.set_params(eta0=lr)  # partial_fit reads eta0 on every call
            clf.partial_fit(X_tr, y_tr, classes=classes)
            score = clf.score(X_va, y_va)
            train_loss = log_loss(y_tr, clf.predict_proba(X_tr), labels=classes)
            # under @hptrack.track, Optuna's report also takes extra metrics
            trial.report(score, epoch, lr=lr, train_loss=train_loss)
            if trial.should_prune():
                raise optuna.TrialPruned()
            if early_stop(score, clf):
                break
        return clf.score(X_va, y_va)  # the restored best epoch

    return objective


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=None, help="hptrack store (default ./.hptrack)")
    ap.add_argument("--trials", type=int, default=40)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = "sgd-lr-schedules"
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                                   n_warmup_steps=3))
    study.optimize(make_objective(name, args.store), n_trials=args.trials)

    con = hptrack.connect(args.store)
    print(con.sql("""
        SELECT p.value AS schedule, count(*) AS trials,
               count(*) FILTER (WHERE t.state = 'pruned') AS pruned,
               max(t.value) AS best_accuracy
        FROM trials t JOIN params p USING (search_id, trial_id) JOIN searches s USING (search_id)
        WHERE s.name = ? AND p.name = 'schedule' GROUP BY ALL ORDER BY best_accuracy DESC
    """, params=[name]))
    best = con.sql("""
        SELECT t.trial_id FROM trials t JOIN searches s USING (search_id)
        WHERE s.name = ? AND t.state = 'complete' ORDER BY t.value DESC LIMIT 1
    """, params=[name]).fetchall()[0][0]
    print("learning rate per step of the best trial:")
    print(con.sql("SELECT step, round(value, 4) AS accuracy, round((metrics->>'lr')::DOUBLE, 5) AS lr, "
                  "round((metrics->>'train_loss')::DOUBLE, 4) AS train_loss "
                  "FROM reports WHERE trial_id = ? ORDER BY step", params=[best]))


if __name__ == "__main__":
    main()
