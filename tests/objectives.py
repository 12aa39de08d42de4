"""Objectives the tests share, written as Optuna's own examples write them."""

import numpy as np
import optuna
from sklearn.linear_model import SGDClassifier


def sgd_partial_fit(trial, data, epochs, losses=("hinge", "log_loss")):
    """Optuna's pruning example: SGDClassifier.partial_fit on ``data`` (x_train, y_train,
    x_valid, y_valid; ten classes), validation accuracy reported per epoch, pruned by
    the study. ``losses=None`` leaves the loss at SGD's default (no ``loss`` param)."""
    xtr, ytr, xva, yva = data
    alpha = trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
    loss = trial.suggest_categorical("loss", list(losses)) if losses else "hinge"
    eta0 = trial.suggest_float("eta0", 1e-4, 1.0, log=True)
    clf = SGDClassifier(alpha=alpha, loss=loss, learning_rate="constant", eta0=eta0, random_state=0)
    score = 0.0
    for epoch in range(epochs):
        clf.partial_fit(xtr, ytr, classes=np.arange(10))
        score = float(clf.score(xva, yva))
        trial.report(score, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("epochs_run", epochs)
    return score
