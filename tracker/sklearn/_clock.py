"""Fold timing from scikit-learn's public callback API (``sklearn.callback``, 1.9+).

When the live recording is off (:mod:`hptrack.sklearn._compat` refused it), the
search runs untouched and is recorded from ``cv_results_`` afterwards, which
holds each fold's scores but only the mean fit and score times. A
:class:`FoldClock` set with the search's public ``set_callbacks`` fills that in:
SLEP023's task tree gives each (candidate, fold) a ``candidate-split-evaluation``
task whose ``on_fit_task_begin`` runs before the fold's fit and whose
``on_fit_task_end`` runs after its scoring, with the training data. The clock
runs in whichever process runs the fold (the search pickles it to loky workers
with itself), so it notes each begin and end as a line appended to a spool
file; after fit, :func:`fold_times` reads them back as (row, fold) ->
(begin, end, n_train). The callback API gives no scores: those come from
``cv_results_``.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator
    from sklearn.callback import CallbackContext

TASK = "candidate-split-evaluation"  # a leaf of BaseSearchCV's task tree: one fold of one candidate


class FoldClock:
    """A ``sklearn.callback.FitCallback`` noting when each fold task begins and ends."""

    def __init__(self, path: str):
        self.path = path

    def setup(self, estimator: BaseEstimator, context: CallbackContext) -> None:
        pass

    def teardown(self, estimator: BaseEstimator, context: CallbackContext) -> None:
        pass

    def on_fit_task_begin(self, estimator: BaseEstimator, context: CallbackContext, *, X: Any = None) -> None:
        self._note(context, 0, X)

    def on_fit_task_end(self, estimator: BaseEstimator, context: CallbackContext, *, X: Any = None) -> bool:
        self._note(context, 1, X)
        return False  # never asks the search to stop

    def _note(self, context, end, X) -> None:
        try:
            if getattr(context, "task_name", None) != TASK:
                return
            parents, c = [], context.parent
            while c is not None:
                parents.append(c.task_id)
                c = c.parent
            line = json.dumps([parents[::-1], context.task_id, end, time.time_ns() // 1000,
                               None if X is None else int(X.shape[0] if hasattr(X, "shape") else len(X))])
            # one short write in append mode: lines of concurrent workers do not interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except Exception:
            pass  # timing is a nicety: never the fit's problem


def fold_times(path: str, group_sizes: list[int], n_splits: int) -> dict:
    """(row, fold) -> (begin_us, end_us, n_train) from the clock's spool.

    ``group_sizes`` is the number of candidates of each ``evaluate_candidates``
    call in ``cv_results_`` order (one call for a grid, one per halving
    iteration); their task trees' parents, in order, are those calls. Anything
    that does not line up gives no times rather than wrong ones."""
    try:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        return {}
    parents = sorted({tuple(p) for p, *_ in lines})
    if len(parents) != len(group_sizes) or n_splits < 1:
        return {}
    offset, row_of = 0, {}
    for parent, size in zip(parents, group_sizes):
        row_of[parent] = offset
        offset += size
    spans: dict = {}
    for parent, task, end, t, n_train in lines:
        cand, fold = divmod(task, n_splits)
        key = (row_of[tuple(parent)] + cand, fold)
        span = spans.setdefault(key, [None, None, n_train])
        span[end] = t
    return {k: tuple(v) for k, v in spans.items() if v[0] is not None and v[1] is not None}
