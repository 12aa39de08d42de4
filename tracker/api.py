"""The write API: ``hptrack.search``, ``Search.trial``, ``Trial`` and ``@hptrack.track``.

Example::

    import hptrack
    with hptrack.search("rf-grid", strategy="grid", direction="maximize",
                        metric="f1", space={"max_depth": [3, 5]}, seed=0) as s:
        with s.trial({"max_depth": 5}) as t:
            t.report(1, 0.80, lr=0.01)
            t.score(0.83, split="fold", fold=0)
            t.complete(0.85)
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import inspect
import numbers
import os
import platform
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from hptrack import _reopening as reopening
from hptrack import schema
from hptrack._files.store import StoreLike
from hptrack._write import writer as _writer
from hptrack._write.writer import Writer, now_us
from hptrack.errors import Pruned
from hptrack.schema import INT64

STRATEGIES = ("grid", "random", "tpe", "bayes", "halving", "hyperband", "pbt", "custom")
DIRECTIONS = ("maximize", "minimize")
DURABILITIES = ("trial", "batch")


def search_id_for(name: str) -> str:
    """The id of the search called ``name``: readable, filesystem-safe, and the
    same in every process, so writers that open one name share one search."""
    # runs of dots collapse: an id never holds '..' (see schema.check_id)
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]+", "-", name)).strip("-.")[:40] or "search"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _code_version() -> str | None:
    """The git commit of the calling program's folder, if it is in a repository."""
    main = sys.modules.get("__main__")
    folder: str | None = os.path.dirname(os.path.abspath(getattr(main, "__file__", "") or "."))
    head: str | None = None
    while folder and head is None:
        candidate = os.path.join(folder, ".git", "HEAD")
        if os.path.exists(candidate):
            head = candidate
        parent = os.path.dirname(folder)
        folder = None if parent == folder else parent
    if head is None:
        return None
    try:
        with open(head) as f:
            ref = f.read().strip()
        if ref.startswith("ref: "):
            ref_path = os.path.join(os.path.dirname(head), ref[5:])
            if not os.path.exists(ref_path):
                return None
            with open(ref_path) as f:
                return f.read().strip()
        return ref
    except OSError:
        return None


class Search:
    """A named search in a store. Use :func:`search` to open one."""

    def __init__(self, name: str, *, strategy: str | None = None, direction: str | None = None,
                 metric: str | None = None, space: Any = None, seed: Any = None, store: StoreLike = None,
                 durability: str = "trial", ts: datetime | int | None = None, quiet: bool = False,
                 **attrs: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"search name must be a non-empty string, got {name!r}")
        schema.check_text(f"search name {name!r}", name, ValueError)
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} must be 'maximize' or 'minimize'")
        if durability not in DURABILITIES:
            raise ValueError(f"durability {durability!r} must be 'trial' (each trial fsynced "
                             "when it ends) or 'batch' (flushed by size and time)")
        self.name = name
        self.search_id = search_id_for(name)
        self.durability = durability
        self.writer = Writer.for_store(store)
        self._sync = durability == "trial"
        self._number = 0
        self._open = False
        # before writing anything: a name holding other settings is refused; a setting not
        # given is the recorded one (hptrack.search("rf-grid") appends to it as it is), or
        # for a new search the default (custom, maximize, value)
        settings = reopening.settings_of({**attrs, "direction": direction, "metric": metric,
                                          "strategy": strategy})
        old = reopening.check(name, self.writer.store, self.search_id, settings,
                              quiet=quiet, study=attrs.get("optuna_study")) or {}
        self._open = True
        strategy = strategy or old.get("strategy") or "custom"
        direction = direction or (old.get("directions") or ["maximize"])[0]
        metric = metric or old.get("metric") or "value"
        self.strategy, self.direction, self.metric = strategy, direction, metric
        info = {
            "name": name, "strategy": strategy, "direction": direction, "metric": metric,
            "space": space, "seed": seed, "durability": durability,
            "code_version": _code_version(), "host": socket.gethostname(),
            "user": _user(), "pid": os.getpid(), "python": platform.python_version(),
        }
        info.update(attrs)
        started: dict[str, Any] = {"type": "search_started", "search_id": self.search_id, "payload": info}
        if ts is not None:  # importers (hptrack.optuna.import_study) keep the original time
            started["ts"] = ts
        self.writer.write(started)

    def trial(self, params: Mapping[str, Any] | None = None, *, trial_number: int | None = None,
              ts: datetime | int | None = None, trial_id: str | None = None) -> Trial:
        """Start a trial with ``params`` (a dict of name -> int/float/bool/str/None).

        ``trial_id`` is for importers that derive ids from the source, so that
        importing again can recognise a trial; by default a fresh id."""
        if trial_number is None:
            trial_number = self._number
        trial_number = schema.check_int("trial_number", trial_number, schema.INT32, TypeError)
        trial = Trial(self, params, trial_number, ts, trial_id)
        self._number = max(self._number, trial_number + 1)
        return trial

    def fork(self, parent: Trial | str, params: Mapping[str, Any] | None = None, *, step: int | None = None,
             reason: str = "pbt_exploit", trial_number: int | None = None, ts: datetime | int | None = None,
             trial_id: str | None = None, **info: Any) -> Trial:
        """Start a trial that continues ``parent`` (a :class:`Trial` or its id) after
        ``step``, with ``params``: a PBT exploit, a warm restart from a checkpoint.

        Writes the child's ``trial_started`` and a ``trial_forked`` event whose payload
        holds ``parent_trial_id``, ``reason``, ``params_after`` and ``info`` (for PBT:
        ``parent_score``, ``replaced_trial_id``, ``replaced_score``, ``params_before``,
        ``explore``, ``copied_score``); ``hptrack.analysis.lineage`` reads them back.
        The parent is left as it is: end a replaced member yourself (``prune``)."""
        parent_id = parent.trial_id if isinstance(parent, Trial) else parent
        if not isinstance(parent_id, str) or not parent_id:
            raise TypeError(f"fork parent must be a Trial or a trial id, got {parent!r}")
        schema.check_id("parent trial_id", parent_id, ValueError)
        if step is not None:
            step = schema.check_int("fork step", step, INT64, TypeError)
        payload = {"parent_trial_id": parent_id, "reason": reason, "params_after": dict(params or {}), **info}
        schema.encode_payload(payload)  # refused here, before the child starts, if it is not JSON
        child = self.trial(params, trial_number=trial_number, ts=ts, trial_id=trial_id)
        event = {"type": "trial_forked", "search_id": self.search_id, "trial_id": child.trial_id,
                 "trial_number": child.number, "step": step, "params": dict(child.params),
                 "payload": payload}
        if ts is not None:
            event["ts"] = ts
        self.writer.write(event)
        return child

    def annotate(self, text: str | None = None, **attrs: Any) -> None:
        """Attach a note (and any JSON attributes) to the search."""
        self.writer.write({"type": "annotation", "search_id": self.search_id,
                           "payload": {"text": text, **attrs}})

    def finish(self, status: str = "ok", *, ts: datetime | int | None = None, **attrs: Any) -> None:
        """Write ``search_finished``. Opening the name again later reopens it."""
        event: dict[str, Any] = {"type": "search_finished", "search_id": self.search_id,
                 "payload": {"status": status, **attrs}}
        if ts is not None:
            event["ts"] = ts
        self.writer.write(event)
        self.writer.flush()
        if self._open:
            self._open = False
            reopening.closed(self.writer.store, self.search_id)

    def __enter__(self) -> Search:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        error: dict[str, Any] = {} if exc is None else {"error": f"{type(exc).__name__}: {exc}"}
        self.finish("ok" if exc_type is None else "error", **error)
        return False

    def __repr__(self) -> str:
        return f"<Search {self.name!r} id={self.search_id} store={self.writer.store.root!r}>"


def search(name: str, *, strategy: str | None = None, direction: str | None = None, metric: str | None = None,
           space: Any = None, seed: Any = None, store: StoreLike = None, durability: str = "trial",
           ts: datetime | int | None = None, quiet: bool = False, **attrs: Any) -> Search:
    """Open the search ``name`` in ``store`` (default ./.hptrack or $HPTRACK_STORE).

    Opening a name that exists appends to that search, if its strategy,
    direction(s), metric and explicit ``task=`` are the ones recorded (a
    setting not given is the recorded one; a new search defaults to
    ``strategy="custom"``, ``direction="maximize"``, ``metric="value"``); other settings raise
    :class:`~hptrack.errors.SearchSettingsConflict` (a ``ValueError``) naming
    both and nothing is written. Appending to a search that holds trials and is
    not open (no ``search_finished`` after its last start) warns once with
    :class:`~hptrack.errors.AppendingToSearch`, unless ``quiet=True`` (importers)
    or it goes on recording the same Optuna study (``optuna_study=``). ``durability="trial"``
    (the default) makes every trial's events durable on disk when its
    ``complete``/``fail``/``prune`` returns; ``"batch"`` buffers and flushes by
    size and at least every second, trading up to that much history on a crash
    for a few microseconds per trial. Extra keyword arguments are stored with
    the search (e.g. ``dataset="breast_cancer"``). ``ts`` backdates the
    ``search_started`` event (for importers of old history).
    """
    return Search(name, strategy=strategy, direction=direction, metric=metric, space=space,
                  seed=seed, store=store, durability=durability, ts=ts, quiet=quiet, **attrs)


def score_trial(search_id: str, trial_id: str, value: float, *, split: str = "test", fold: int | None = None,
                metric: str | None = None, store: StoreLike = None, ts: datetime | int | None = None,
                **attrs: Any) -> None:
    """Record a score of any trial, also one that has ended: typically the refit
    winner on held-out test data. Durable when it returns.

    ``search_id`` and ``trial_id`` must be valid ids (see ``hptrack.schema.ID_RULE``),
    else ``InvalidEvent`` (a ``ValueError``) and nothing is written. They need not
    name a trial this store holds yet: another process may still be writing it, and
    a score of a trial that never starts shows in the ``scores`` view only.

    >>> hptrack.score_trial(search_id, best_trial_id, 0.95, split="test", metric="f1")
    """
    writer = Writer.for_store(store)
    event = {"type": "trial_scored", "search_id": search_id, "trial_id": trial_id, "value": value,
             "split": split, "fold": fold, "metric": metric, "payload": attrs or None}
    if ts is not None:
        event["ts"] = ts
    writer.flush(upto=writer.write(event))


def score_fold(search_id: str, trial_id: str, fold: int, scores: dict, *, trial_number: int | None = None,
               step: int | None = None, resource: float | None = None, store: StoreLike = None,
               ts: datetime | int | None = None, durable: bool = True, **attrs: Any) -> None:
    """Record one cross-validation fold of a trial, from any process (a parallel
    worker writes with its own writer): ``scores`` maps ``(split, metric)`` to a
    value, e.g. ``{("fold", "f1"): 0.91, ("fold_train", "f1"): 0.97}``.

    Each becomes a ``trial_scored`` event with ``fold``, ``step`` and ``resource``
    (a successive-halving rung) and ``attrs`` in its payload (``fit_time``,
    ``n_train``, ``n_test``, ...). Durable when it returns, unless ``durable=False``
    (then the writer's next flush makes it so). Like :func:`score_trial`, the trial
    may be running in another process, or have ended.

    >>> hptrack.api.score_fold(search_id, trial_id, 0, {("fold", "f1"): 0.91}, n_train=455)
    """
    writer = Writer.for_store(store)
    seq = None
    for (split, metric), value in scores.items():
        event = {"type": "trial_scored", "search_id": search_id, "trial_id": trial_id,
                 "trial_number": trial_number, "fold": fold, "step": step, "resource": resource,
                 "split": split, "metric": metric, "value": value, "payload": attrs or None}
        if ts is not None:
            event["ts"] = ts
        seq = writer.write(event)
    if durable and seq is not None:
        writer.flush(upto=seq)


def event_time(ts: datetime | int | None) -> int:
    """An event's time in microseconds: now, or ``ts`` (a datetime or microseconds)
    for events recorded after the fact (imports, backdated scores)."""
    return now_us() if ts is None else schema.to_micros(ts)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


class Trial:
    """One trial: report progress, record scores, then complete, fail or prune.

    Used as a context manager, an exception records ``trial_failed`` and is
    re-raised; :class:`hptrack.Pruned` (or ``optuna.TrialPruned``) records
    ``trial_pruned``; :class:`hptrack.Pruned` is swallowed so the search goes on,
    Optuna's is re-raised for Optuna to see. Leaving the block without ending
    the trial records it as failed with the reason.
    """

    __slots__ = ("search", "trial_id", "number", "params", "state", "_append", "_sid")

    def __init__(self, search: Search, params: Mapping[str, Any] | None, number: int,
                 ts: datetime | int | None = None, trial_id: str | None = None) -> None:
        if trial_id is None:
            trial_id = search.writer.new_id()
        elif not isinstance(trial_id, str) or not trial_id:
            raise TypeError(f"trial_id must be a non-empty str, got {trial_id!r}")
        else:
            schema.check_id("trial_id", trial_id, ValueError)
        self._bind(search, trial_id, number, params)
        encoded = [schema.encode_param(k, v) for k, v in self.params.items()]
        row = (event_time(ts), "trial_started", self._sid,
               self.trial_id, number, None, None, None, None, None, None, encoded, None)
        with _open_lock:
            if not _ending:
                self._append(row)
                _open[self] = None
        if _ending:
            _writer.wait_if_terminating()

    def _bind(self, search: Search, trial_id: str, number: int, params: Mapping[str, Any] | None) -> None:
        self.search = search
        self.trial_id = trial_id
        self.number = number
        self.params = dict(params) if params else {}
        self.state = "running"
        self._append = search.writer.append
        self._sid = search.search_id

    @classmethod
    def attach(cls, search: Search, trial_id: str, trial_number: int,
               params: Mapping[str, Any] | None = None) -> Trial:
        """A handle on a trial already started (by an importer, or another
        process), to report to it and end it; writes nothing by itself."""
        schema.check_id("trial_id", trial_id, ValueError)  # its events carry it unchecked
        t = cls.__new__(cls)
        t._bind(search, trial_id, trial_number, params)
        with _open_lock:
            if not _ending:
                _open[t] = None
        return t

    def _check_running(self, what: str) -> None:
        if self.state != "running":
            raise RuntimeError(f"trial {self.number} of {self.search.name!r} is already {self.state}; "
                               f"cannot {what} it again - start a new trial with search.trial()")

    def report(self, step: int, value: float, *, resource: float | None = None,
               ts: datetime | int | None = None, **metrics: float) -> None:
        """An intermediate value at ``step`` (epoch, iteration, rung), with extra metrics
        such as the learning rate or train loss: ``t.report(3, 0.91, lr=0.01)``."""
        if self.state != "running":
            self._check_running("report to")
        if type(step) is not int or not -INT64 <= step < INT64:
            step = schema.check_int("report step", step, INT64, TypeError)
        payload = None
        if metrics:
            payload = schema.encode_payload({"metrics": metrics})
        self._append((event_time(ts), "trial_reported", self._sid,
                      self.trial_id, self.number, step, _opt_float("resource", resource),
                      _float("value", value), None, None, None, None, payload))

    def set_params(self, params: Mapping[str, Any], *, ts: datetime | int | None = None, **attrs: Any) -> None:
        """Add or change params of a running trial, for spaces defined while the
        trial runs (Optuna's ``suggest_*``, PBT). Written as an ``annotation``
        event of this trial carrying ``params`` (the ``params`` view keeps the
        last value per name) and ``attrs`` in its payload, e.g. distributions."""
        self._check_running("set params of")
        params = dict(params) if params else {}
        encoded = [schema.encode_param(k, v) for k, v in params.items()]
        payload = schema.encode_payload({"text": None, "set_params": list(params), **attrs})
        self._append((event_time(ts), "annotation", self._sid,
                      self.trial_id, self.number, None, None, None, None, None, None,
                      encoded or None, payload))
        self.params.update(params)

    def score(self, value: float, *, split: str = "validation", fold: int | None = None, metric: str | None = None,
              ts: datetime | int | None = None, **attrs: Any) -> None:
        """An extra evaluation: a fold score, a test score, a train score."""
        self._check_running("score")
        if not isinstance(split, str) or not split:
            raise TypeError(f"score split must be a non-empty string, got {split!r}")
        schema.check_text("score split", split, TypeError)
        if metric is not None:
            if not isinstance(metric, str):
                raise TypeError(f"score metric must be a string, got {type(metric).__name__} {metric!r}")
            schema.check_text("score metric", metric, TypeError)
        if fold is not None:
            fold = schema.check_int("score fold", fold, schema.INT16, TypeError)
        self._append((event_time(ts), "trial_scored", self._sid,
                      self.trial_id, self.number, None, None, _float("value", value), metric, split,
                      fold, None,
                      schema.encode_payload(attrs) if attrs else None))

    def complete(self, value: float | None = None, *, values: Sequence[float] | None = None,
                 ts: datetime | int | None = None, **metrics: float) -> None:
        """End the trial with its objective ``value``, or with ``values`` (one per
        objective of a multi-objective search, in the order of its ``directions``).
        A NaN, inf or None value (or one that is not a number) ends it as failed with
        that reason instead."""
        self._check_running("complete")
        info: dict[str, Any] = {}
        if values is not None:
            if value is not None:
                raise TypeError("complete() takes value or values, not both")
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
                raise TypeError(f"values must be a non-empty list of numbers, got {values!r}")
            values = list(values)
            if len(values) > 1:
                bad = [v for v in values if not schema.is_finite_number(v)]
                if bad:
                    self.fail(f"objective values contain {bad[0]!r}", ts=ts)
                    return
                info["values"] = [float(v) for v in values]
            value = values[0]
        if not schema.is_finite_number(value):
            reason = (f"objective value is {value!r}" if isinstance(value, numbers.Real) or value is None
                      else f"objective value is a {type(value).__name__}, not a number")
            self.fail(reason, ts=ts)
            return
        if metrics:
            info["metrics"] = metrics
        payload = schema.encode_payload(info) if info else None  # raises on a metric JSON cannot hold
        self.state = "complete"
        self._end((event_time(ts), "trial_completed", self._sid,
                   self.trial_id, self.number, None, None, float(value), None, None, None, None, payload))

    def fail(self, error: BaseException | str | None = None, *, ts: datetime | int | None = None) -> None:
        """End the trial as failed; ``error`` is an exception or a reason."""
        self._check_running("fail")
        self.state = "failed"
        if isinstance(error, BaseException):
            info: dict[str, str | None] = {"error_type": type(error).__name__, "error": str(error),
                    "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}
        else:
            info = {"error_type": None, "error": None if error is None else str(error), "traceback": None}
        self._end((event_time(ts), "trial_failed", self._sid,
                   self.trial_id, self.number, None, None, None, None, None, None, None,
                   schema.encode_payload(info)))

    def prune(self, step: int | None = None, *, ts: datetime | int | None = None) -> None:
        """End the trial as pruned (stopped early by a pruner), at ``step``."""
        self._check_running("prune")
        if step is not None:
            step = schema.check_int("prune step", step, INT64, TypeError)
        self.state = "pruned"
        self._end((event_time(ts), "trial_pruned", self._sid,
                   self.trial_id, self.number, step, None, None,
                   None, None, None, None, None))

    def _end(self, row: tuple) -> None:
        with _open_lock:
            # SIGTERM's thread may have ended this trial a moment ago (fail_open_trials)
            ended = _ending and self not in _open
            if not ended:
                _open.pop(self, None)
                seq = self._append(row)
        if ended:
            _writer.wait_if_terminating()
        if self.search._sync:
            self.search.writer.flush(upto=seq)

    def __enter__(self) -> Trial:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc_type is None or exc is None:
            if self.state == "running":
                self.fail("trial context exited without complete(), fail() or prune()")
            return False
        if self.state != "running":
            return False
        if _is_pruned(exc):
            self.prune(_last_step(exc))
            return isinstance(exc, Pruned)
        self.fail(exc)
        return False

    def __repr__(self) -> str:
        return f"<Trial {self.number} of {self.search.name!r} {self.state}>"


# The trials of this process that have started and not ended, for SIGTERM's
# thread to end as failed (a plain dict: weak keys cost 4 us a trial).
_open: dict[Trial, None] = {}
_open_lock = threading.Lock()
_ending = False


def _forget_open_trials() -> None:
    # a forked child's SIGTERM must not fail its parent's trials
    global _open_lock
    _open_lock = threading.Lock()
    _open.clear()


os.register_at_fork(after_in_child=_forget_open_trials)


def fail_open_trials(reason: str) -> int:
    """Record every running trial of this process as failed with ``reason``
    (called by the writer when SIGTERM ends the process); returns how many.
    Afterwards no trial starts or ends: their threads wait for the exit."""
    global _ending
    info = schema.encode_payload({"error_type": "Terminated", "error": reason, "traceback": None})
    with _open_lock:
        _ending = True
        trials = list(_open.keys())
        _open.clear()
        for t in trials:  # also one whose complete() was called but has not written its event
            t._append((now_us(), "trial_failed", t._sid, t.trial_id, t.number,
                       None, None, None, None, None, None, None, info))
    return len(trials)


_writer.on_terminate(fail_open_trials)


def _is_optuna_trial(obj: object) -> bool:
    # never import optuna here: only a program that already did can pass its Trial
    mod = sys.modules.get("optuna.trial")
    return mod is not None and isinstance(obj, mod.Trial)


# The integration that runs an objective called with another library's trial object.
# Named, not imported: the write API sits below the integrations, which import it;
# only programs that already use that library reach the lookup.
TRIAL_ADAPTERS = {"optuna": "hptrack.optuna"}


def _adapter(library: str) -> Any:
    import importlib

    return importlib.import_module(TRIAL_ADAPTERS[library])


def _is_pruned(exc: BaseException) -> bool:
    if isinstance(exc, Pruned):
        return True
    cls = type(exc)
    return cls.__name__ == "TrialPruned" and cls.__module__.startswith("optuna")


def _last_step(exc: BaseException) -> int | None:
    step = getattr(exc, "step", None)
    return int(step) if isinstance(step, numbers.Integral) else None


def _float(field: str, v: object) -> float:
    if type(v) is float:
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{field} must be a number, got {type(v).__name__} {v!r:.80}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{field} {v!r:.40} is too large for a float64") from None


def _opt_float(field: str, v: object) -> float | None:
    return None if v is None else _float(field, v)


def track(name: str, *, strategy: str | None = None, direction: str | None = None, metric: str | None = None,
          space: Any = None, seed: Any = None, store: StoreLike = None, durability: str = "trial",
          **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: every call of the function is one trial of the search ``name``.

    The function's arguments (with defaults applied) are the trial's params. It
    returns the objective value, or a dict with ``"value"`` and other metrics::

        @hptrack.track("svm-random", strategy="random", direction="maximize")
        def objective(C, gamma):
            return cross_val_score(SVC(C=C, gamma=gamma), X, y).mean()

    Exceptions are recorded as failed trials and re-raised; ``hptrack.Pruned``
    and ``optuna.TrialPruned`` are recorded as pruned and re-raised. The search
    is opened at the first call and finished by ``objective.finish()`` (e.g. when
    ``study.optimize`` returns), else when the process exits (status
    ``"exited"``); a call after ``finish()`` opens it again.

    An Optuna objective ``objective(trial)`` is recorded as Optuna runs it: each
    ``suggest_*`` becomes a param with its distribution, each ``trial.report``
    is written at once, and the study's direction, sampler and pruner go into
    the search (see :mod:`hptrack.optuna`).
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        opener = Opener()

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if args and _is_optuna_trial(args[0]):
                return _adapter("optuna").run_objective(opener, fn, args, kwargs, name=name, strategy=strategy,
                                     metric=metric, space=space, seed=seed, store=store,
                                     durability=durability, attrs=attrs)
            s = opener.get(lambda quiet: search(
                name, strategy=strategy, direction=direction, metric=metric, space=space,
                seed=seed, store=store, durability=durability, quiet=quiet, **attrs))
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            params = {}
            for k, v in bound.arguments.items():
                kind = sig.parameters[k].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    params.update(v)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    params[k] = v
            t = s.trial(params)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                if _is_pruned(exc):
                    t.prune(_last_step(exc))
                else:
                    t.fail(exc)
                raise
            if isinstance(result, dict):
                if "value" not in result:
                    t.fail("objective returned a dict without a 'value' key")
                else:
                    extras = {k: v for k, v in result.items() if k != "value"}
                    t.complete(result["value"], **extras)
            else:
                t.complete(result)
            return result

        # the decorated function's handles on its search (attributes of a function object)
        wrapper.search = lambda: opener.search  # type: ignore[attr-defined]
        wrapper.finish = opener.finish  # type: ignore[attr-defined]
        return wrapper

    return decorate


class Opener:
    """The search of a decorator or callback: opened at its first trial (when the
    study's direction is known), finished by :meth:`finish` or, failing that, when
    the process exits, and opened again by the next trial after a finish."""

    def __init__(self) -> None:
        self.search: Search | None = None   # the last one opened, also once finished
        self._lock = threading.Lock()        # n_jobs>1 threads open it once
        self._pid: int | None = None
        # (naive local time, as Optuna's): trials started before it are not this opener's
        self.created = datetime.now()

    def get(self, open_search: Callable[..., Search]) -> Search:
        """The open search, opened with ``open_search(quiet=...)`` if there is none;
        quiet when this opener had it open before (``optimize`` called again)."""
        s = self.search
        if s is not None and s._open:  # also in a forked child: its parent's search
            return s
        with self._lock:
            s = self.search
            if s is None or not s._open:
                s = self.search = open_search(quiet=s is not None)
                self._pid = os.getpid()
                _at_exit(self)
            return s

    def finish(self, status: str = "ok", **attrs: Any) -> bool:
        """Write ``search_finished`` if the search is open; whether it was."""
        with self._lock:
            s = self.search
            if s is None or not s._open or self._pid != os.getpid():
                return False  # a forked child never finishes its parent's search
            s.finish(status, **attrs)
        return True


_openers: dict[int, Opener] = {}
_exit_hook = False


def _at_exit(opener: Opener) -> None:
    # Registered after the search's Writer (LIFO: runs before the writer seals at
    # exit); with threading's hooks, which run before atexit's and before remote
    # stores' early seal (_write/writer.py: _install_exit_hooks).
    global _exit_hook
    _openers[id(opener)] = opener
    if not _exit_hook:
        _exit_hook = True
        try:
            threading._register_atexit(_finish_all_at_exit)  # type: ignore[attr-defined]  # private, see above
        except (AttributeError, RuntimeError):
            import atexit
            atexit.register(_finish_all_at_exit)


def _finish_all_at_exit() -> None:
    for opener in list(_openers.values()):
        try:
            opener.finish("exited", reason="the process exited without finish()")
        except Exception as exc:  # at exit: report, never raise
            print(f"hptrack: could not finish a search at exit: {exc}", file=sys.stderr)
