"""Optuna integration: record studies live (decorator or callback) or import old ones.

Three ways in, one event shape:

- ``@hptrack.track("name")`` on an objective ``objective(trial)``: every
  ``suggest_*`` is written when it happens (params with their distribution),
  every ``trial.report(value, step)`` too (extra keyword metrics such as
  ``lr=`` are accepted and recorded), ``TrialPruned`` ends the trial as pruned
  at its last reported step, and the return value (one or several) completes it.
- ``study.optimize(objective, callbacks=[hptrack.optuna.Callback()])``: every
  finished trial with its intermediate values, state, datetimes and user attrs.
- ``hptrack.optuna.import_study(storage, study_name)``: an existing study with
  its original timestamps.
- ``hptrack.optuna.warm_start(study, "old-search")``: the other way, recorded
  trials added to a new study (see :mod:`hptrack.optuna._warm`).

A trial is ``trial_started`` (at Optuna's ``datetime_start``), then an
``annotation`` carrying the params and ``payload.distributions`` (one per
suggest on the live path, one for all params otherwise), its reports, an
``annotation`` with ``payload.user_attrs`` if any, then the terminal event.
Multi-objective values are in ``payload.values`` of ``trial_completed``; its
``value`` column holds the first objective.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from hptrack._importing import derived_trial_id, known_trials
from hptrack.api import Opener, Trial, _is_pruned, search, search_id_for
from hptrack.errors import missing_extra

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from hptrack.api import Search, StoreLike

try:
    import optuna
    from optuna.distributions import distribution_to_json
    from optuna.trial import TrialState
except ImportError as err:
    raise missing_extra(err, "hptrack.optuna", "optuna") from err

from hptrack.optuna._warm import SOURCE_SEARCH, SOURCE_TRIAL, STUDY_ATTR, WarmStart, WarmStartError, warm_start

# Optuna sampler class -> hptrack strategy; anything else is "custom".
_STRATEGY = {"RandomSampler": "random", "GridSampler": "grid", "TPESampler": "tpe",
             "GPSampler": "bayes", "BoTorchSampler": "bayes", "QMCSampler": "random"}


def describe(obj: optuna.samplers.BaseSampler | optuna.pruners.BasePruner | None) -> dict[str, Any] | None:
    """A JSON description of a sampler or pruner: its class and scalar settings."""
    if obj is None:
        return None
    settings = {}
    for key, value in vars(obj).items():
        key = key.lstrip("_")
        if value is None or isinstance(value, (bool, int, float, str)):
            settings[key] = value
        elif isinstance(value, (optuna.samplers.BaseSampler, optuna.pruners.BasePruner)):
            settings[key] = describe(value)  # wrappers: PatientPruner, PartialFixedSampler
        elif hasattr(value, "_asdict"):  # TPE's parzen estimator parameters
            settings[key] = {k: v for k, v in value._asdict().items()
                             if v is None or isinstance(v, (bool, int, float, str))}
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
            settings[key] = list(value)
    cls = type(obj)
    return {"class": f"{cls.__module__.split('._')[0]}.{cls.__qualname__}", "settings": settings}


def _utc(dt):
    # Optuna stores naive local times; astimezone() reads a naive time as local
    return None if dt is None else dt.astimezone(timezone.utc)


def _open(name, study, *, store=None, strategy="custom", metric="value", space=None, seed=None,
          durability="trial", ts=None, quiet=False, attrs=None):
    directions = [d.name.lower() for d in study.directions]
    sampler = study.sampler
    if strategy in (None, "custom"):
        strategy = _STRATEGY.get(type(sampler).__name__, "custom")
    # Optuna 5 samplers do not keep their seed; pass seed= to record it
    extra = dict(attrs or {})
    warm = study.user_attrs.get(STUDY_ATTR)
    if warm:  # hptrack.optuna.warm_start added these searches' trials; they are not recorded again
        extra.setdefault("warm_started_from", warm)
    if len(directions) > 1:
        extra.setdefault("directions", directions)
    return search(name, strategy=strategy, direction=directions[0], metric=metric, space=space,
                  seed=seed if isinstance(seed, int) else None, store=store,
                  durability=durability, ts=ts, quiet=quiet, sampler=describe(sampler),
                  pruner=describe(study.pruner), optuna_study=study.study_name, **extra)


def _complete(t, values, ts=None):
    """End ``t`` with one objective value or several (multi-objective)."""
    if isinstance(values, (list, tuple)):
        t.complete(values=values, ts=ts)
    else:
        t.complete(values, ts=ts)


def _distributions(dists):
    return {k: _json_dist(d) for k, d in dists.items()}


def _json_dist(dist):
    return json.loads(distribution_to_json(dist))


def _typed(dist, value):
    """``value`` as Optuna stores it: ``suggest_float`` hands an enqueued ``1`` back
    as is, while ``study.trials[i].params`` holds ``1.0``."""
    return dist.to_external_repr(dist.to_internal_repr(value))


def _first_start(study, since, *trials, finished_too=False):
    """When the first trial a live path records started, for its search_started
    (which must not come after it): the earliest start among ``trials`` and the
    study's trials started at or after ``since`` that are running (other threads'
    trials, opening at the same time) or, with ``finished_too``, finished (a
    callback still to be called). Older running trials are not ours: other
    workers' or a crashed process's."""
    starts = [ft.datetime_start for ft in trials if ft.datetime_start is not None]
    for ft in study.get_trials(deepcopy=False):
        if ft.datetime_start is not None and ft.datetime_start >= since and (
                finished_too or ft.state == TrialState.RUNNING):
            starts.append(ft.datetime_start)
    return _utc(min(starts)) if starts else None


# --- the decorator path -----------------------------------------------------------------

def run_objective(opener: Opener, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                  name: str, strategy: str | None, metric: str | None, space: Any, seed: Any,
                  store: StoreLike, durability: str, attrs: dict[str, Any]) -> Any:
    """One call of a ``@hptrack.track`` objective given an Optuna trial (see module doc)."""
    trial = args[0]
    s = opener.get(lambda quiet: _open(
        name, trial.study, store=store, strategy=strategy, metric=metric, space=space, seed=seed,
        durability=durability, quiet=quiet, ts=_first_start(trial.study, opener.created, trial),
        attrs=attrs))
    t = s.trial({}, trial_number=trial.number, ts=_utc(trial.datetime_start))
    fixed = trial.distributions  # study.ask(fixed_distributions): params set before the objective runs
    if fixed:
        t.set_params({k: _typed(d, trial.params[k]) for k, d in fixed.items()},
                     distributions=_distributions(fixed))
    steps = _instrument(trial, t)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        _user_attrs(t, trial.user_attrs)
        if _is_pruned(exc):
            step = getattr(exc, "step", None)
            t.prune(step if isinstance(step, int) else (max(steps) if steps else None))
        else:
            t.fail(exc)
        raise
    finally:
        _uninstrument(trial)
    if t.state == "running":
        _user_attrs(t, trial.user_attrs)
        _complete(t, result)
    return result


_HOOKED = ("suggest_float", "suggest_int", "suggest_categorical", "report")


def _instrument(trial, t):
    """Hook the Optuna trial's own methods (on the instance) so the objective keeps
    a real ``optuna.trial.Trial`` (isinstance checks, pruning callbacks) and every
    suggest and report is written when it happens. Returns the reported steps."""
    steps = set()

    def hook_suggest(method):
        @functools.wraps(method)
        def suggest(name, *a, **kw):
            value = method(name, *a, **kw)
            dist = trial.distributions[name]
            typed = _typed(dist, value)
            if name not in t.params or t.params[name] != typed or type(t.params[name]) is not type(typed):
                t.set_params({name: typed}, distributions={name: _json_dist(dist)})
            return value
        return suggest

    real_report = trial.report

    @functools.wraps(real_report)
    def report(value, step, **metrics):
        real_report(value, step)
        if step not in steps:  # Optuna keeps the first value of a repeated step
            steps.add(step)
            t.report(step, value, **metrics)

    for method in _HOOKED[:-1]:
        setattr(trial, method, hook_suggest(getattr(trial, method)))
    trial.report = report
    trial._hptrack_trial = t
    return steps


def _uninstrument(trial):
    for method in _HOOKED + ("_hptrack_trial",):
        trial.__dict__.pop(method, None)


def hptrack_trial(trial: optuna.trial.Trial) -> Trial | None:
    """The :class:`hptrack.Trial` recording an Optuna trial inside a ``@hptrack.track``
    objective (e.g. for ``t.score(...)`` or ``EarlyStopping(trial=...)``), else None."""
    return getattr(trial, "_hptrack_trial", None)


def _user_attrs(t, attrs, ts=None):
    if attrs:
        t.set_params({}, ts=ts, user_attrs=attrs)


# --- the callback path and import --------------------------------------------------------

def _record(s, ft, trial_id=None, prev=None):
    """Write one FrozenTrial with its own timestamps. Running/waiting trials stay running.

    ``prev`` (state, n_reports) of the trial already in the store, imported
    while it ran: write only its later reports and its end."""
    start = _utc(ft.datetime_start) or datetime.now(timezone.utc)
    end = _utc(ft.datetime_complete) or start
    steps = sorted(ft.intermediate_values)
    if prev is None:
        t = s.trial({}, trial_number=ft.number, ts=start, trial_id=trial_id)
        if ft.params:
            t.set_params(ft.params, ts=start, distributions=_distributions(ft.distributions))
    else:
        t = Trial.attach(s, trial_id, ft.number, ft.params)
        steps = steps[prev[1]:]
    for step in steps:
        # Optuna keeps no time per report; they are known at the end at the latest
        t.report(step, ft.intermediate_values[step], ts=end)
    if ft.state.is_finished():
        _user_attrs(t, ft.user_attrs, ts=end)
        if SOURCE_TRIAL in ft.user_attrs:  # added by warm_start: evaluated by another search
            t.set_params({}, ts=end, reused_from={"search_id": ft.user_attrs.get(SOURCE_SEARCH),
                                                  "trial_id": ft.user_attrs[SOURCE_TRIAL]})
    if ft.state == TrialState.COMPLETE:
        _complete(t, ft.values, ts=end)
    elif ft.state == TrialState.PRUNED:
        t.prune(ft.last_step, ts=end)
    elif ft.state == TrialState.FAIL:
        t.fail(ft.system_attrs.get("fail_reason") or "failed in Optuna", ts=end)
    return t


class Callback:
    """Record every finished trial of ``study.optimize(..., callbacks=[Callback()])``.

    ``name`` defaults to the study's name. Safe with ``n_jobs>1`` and with
    several processes optimizing one study: each records the trials it ran.
    Optuna calls it per trial only, so it cannot see ``optimize`` return: use it
    as a context manager, or call :meth:`finish`, to finish the search;
    otherwise it is finished when the process exits (status ``"exited"``)::

        with hptrack.optuna.Callback(store=store) as cb:
            study.optimize(objective, n_trials=50, callbacks=[cb])

    A trial recorded after a finish opens the search again. ``metric`` names the
    objective (e.g. ``"accuracy"``); the direction(s) and strategy come from the
    study and its sampler, unless ``strategy`` is given.
    """

    def __init__(self, name: str | None = None, store: StoreLike = None, *, metric: str = "value",
                 strategy: str | None = "custom", **attrs: Any) -> None:
        self.name, self.store, self.attrs = name, store, attrs
        self.metric, self.strategy = metric, strategy
        self._opener = Opener()
        self._since = datetime.now()  # naive local, as Optuna's datetimes

    def search(self, study: optuna.Study, frozen_trial: FrozenTrial | None = None) -> Search:
        """The search recording ``study`` (opened at the first trial)."""
        return self._opener.get(lambda quiet: _open(
            self.name or study.study_name, study, store=self.store, metric=self.metric,
            strategy=self.strategy, attrs=self.attrs, quiet=quiet,
            ts=_first_start(study, self._since, *([frozen_trial] if frozen_trial else []),
                            finished_too=True)))

    def __call__(self, study: optuna.Study, frozen_trial: FrozenTrial) -> None:
        _record(self.search(study, frozen_trial), frozen_trial)

    def finish(self, status: str = "ok", **attrs: Any) -> bool:
        """Write ``search_finished`` (if a trial opened the search); whether it did."""
        self._since = datetime.now()  # a later optimize() starts from here
        return self._opener.finish(status, **attrs)

    def __enter__(self) -> Callback:
        self._since = datetime.now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self.finish("ok" if exc_type is None else "error",
                    **({} if exc is None else {"error": f"{exc_type.__name__}: {exc}"}))
        return False


def import_study(storage: str | BaseStorage, study_name: str, store: StoreLike = None, *,
                 name: str | None = None) -> str:
    """Write an existing Optuna study (a storage URL or object) as the search
    ``name`` (default: the study name), keeping the original timestamps.
    Returns the search id.

    Importing again adds only what is new: trials not imported before, and the
    later reports and the end of trials that were still running. Trial ids are
    derived from the search and Optuna's trial number, which is how they are
    recognised."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    name = name or study_name
    sid = search_id_for(name)
    ids = {ft.number: derived_trial_id(sid, "optuna", ft.number) for ft in trials}
    done = known_trials(store, sid)
    todo = [ft for ft in trials if _has_news(ft, done.get(ids[ft.number]))]
    if not todo:
        return sid
    starts = [_utc(t.datetime_start) for t in trials if t.datetime_start is not None]
    ends = [_utc(t.datetime_complete) for t in trials if t.datetime_complete is not None]
    space = {}
    for ft in trials:
        space.update(_distributions(ft.distributions))
    s = _open(name, study, store=store, space=space or None, quiet=True,  # re-import: no notice
              ts=min(starts) if starts else None, durability="batch",
              attrs={"imported_from": "optuna",
                     "user_attrs": study.user_attrs or None})
    for ft in todo:
        _record(s, ft, ids[ft.number], done.get(ids[ft.number]))
    if any(not ft.state.is_finished() for ft in trials):
        s.writer.flush()  # the study goes on: finished at a later import
    else:
        s.finish("ok", ts=max(starts + ends) if starts else None, imported_trials=len(trials))
    return s.search_id


def _has_news(ft, prev) -> bool:
    """Whether a trial (state, n_reports) in the store lacks something ``ft`` has."""
    if prev is None:
        return True
    state, n_reports = prev
    return state == "running" and (ft.state.is_finished() or len(ft.intermediate_values) > n_reports)


__all__ = ["Callback", "WarmStart", "WarmStartError", "describe", "hptrack_trial", "import_study",
           "run_objective", "warm_start"]
