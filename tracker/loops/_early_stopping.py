"""Early stopping for hand-written training loops, recorded as events.

Example::

    early_stop = hptrack.EarlyStopping(patience=10, min_delta=0.001, mode="max",
                                       trial=t, max_steps=200)
    for epoch in range(200):
        clf.partial_fit(X, y, classes=classes)
        score = clf.score(X_val, y_val)
        t.report(epoch, score)
        if early_stop(score, clf):
            break          # clf now holds the weights of the best epoch
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from hptrack.api import Trial

MODES = ("max", "min")


class EarlyStopping:
    """Stop when the score has not improved by more than ``min_delta`` for
    ``patience`` calls in a row.

    ``early_stop(score, model)`` returns True when training should stop. With
    ``restore_best=True`` it keeps a deep copy of the model's state at the best
    score and puts it back into ``model`` when it stops (a torch-style
    ``state_dict``/``load_state_dict`` pair when the model has one, else the
    object's attributes, which covers scikit-learn estimators). ``model`` may
    be None when ``restore_best`` is False.

    With ``trial`` (an :class:`hptrack.Trial`, or an Optuna trial inside a
    ``@hptrack.track`` objective), stopping writes an ``annotation`` of that
    trial with ``payload.early_stopping``: ``best_step``, ``best_score``,
    ``stop_step``, ``epochs_saved`` (``max_steps - stop_step - 1`` when
    ``max_steps`` is given), the settings and whether the best state was restored.
    A NaN score never counts as an improvement.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.001, mode: str = "max", restore_best: bool = True, *,
                 trial: Trial | optuna.trial.Trial | None = None, max_steps: int | None = None) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be 'max' (higher is better) or 'min', got {mode!r}")
        self.patience, self.min_delta, self.mode = patience, float(min_delta), mode
        self.restore_best, self.max_steps = restore_best, max_steps
        self.trial = trial
        self.best_score = None
        self.best_step = None
        self.best_state = None
        self.stop_step = None
        self.wait = 0
        self._calls = 0

    @property
    def stopped(self) -> bool:
        return self.stop_step is not None

    def _improves(self, score) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        if self.mode == "max":
            return score > self.best_score + self.min_delta
        return score < self.best_score - self.min_delta

    def __call__(self, score: float, model: Any = None, *, step: int | None = None) -> bool:
        """Take the score of one step (default: the number of earlier calls)."""
        if self.stopped:
            return True
        if self.restore_best and model is None:
            raise ValueError("restore_best=True needs the model: early_stop(score, model); "
                             "pass restore_best=False to track the score only")
        step = self._calls if step is None else step
        self._calls += 1
        score = float(score)
        if self._improves(score):
            self.best_score, self.best_step, self.wait = score, step, 0
            if self.restore_best:
                self.best_state = _snapshot(model)
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        self.stop_step = step
        if self.restore_best and self.best_state is not None:
            _restore(model, self.best_state)
        self._record()
        return True

    def summary(self) -> dict:
        saved = None
        if self.max_steps is not None and self.stop_step is not None:
            saved = max(0, self.max_steps - self.stop_step - 1)
        return {"best_step": self.best_step, "best_score": self.best_score,
                "stop_step": self.stop_step, "epochs_saved": saved, "patience": self.patience,
                "min_delta": self.min_delta, "mode": self.mode,
                "restored": bool(self.restore_best and self.best_state is not None)}

    def _record(self):
        t = self.trial
        if t is not None and not hasattr(t, "trial_id"):
            t = getattr(t, "_hptrack_trial", None)  # an Optuna trial under @hptrack.track
        if t is None:
            return
        # written through the writer, not the Trial, so it works after the trial ended too
        t.search.writer.write({
            "type": "annotation", "search_id": t.search.search_id, "trial_id": t.trial_id,
            "trial_number": t.number, "step": self.stop_step,
            "payload": {"text": "early stopping", "early_stopping": self.summary()}})


def _snapshot(model):
    if hasattr(model, "state_dict") and hasattr(model, "load_state_dict"):
        return ("state_dict", copy.deepcopy(model.state_dict()))
    return ("dict", copy.deepcopy(model.__dict__))


def _restore(model, state):
    kind, saved = state
    if kind == "state_dict":
        model.load_state_dict(copy.deepcopy(saved))
    else:
        model.__dict__.clear()
        model.__dict__.update(copy.deepcopy(saved))
