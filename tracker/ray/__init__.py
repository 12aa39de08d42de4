"""Record Ray Tune runs: ``run_config=tune.RunConfig(callbacks=[hptrack.ray.Callback(...)])``.

Import it explicitly (it imports ray)::

    import hptrack.ray
    pbt = PopulationBasedTraining(metric="acc", mode="max", ...)
    tuner = tune.Tuner(train, param_space=space,
                       tune_config=tune.TuneConfig(scheduler=pbt, num_samples=8),
                       run_config=tune.RunConfig(callbacks=[
                           hptrack.ray.Callback("mnist-pbt", metric="acc", scheduler=pbt)]))

The callback runs in the Tune driver and writes the same events as hptrack's
own searches: a ``trial_started`` per Ray trial with its (flattened) config as
params, a ``trial_reported`` per result (``step`` = ``training_iteration``, the
metric as value, the other numeric results and the params in
``payload.metrics``), and ``trial_completed`` (the last result's metric) or
``trial_failed`` (Ray's error). Given an early-stopping ``scheduler=`` (ASHA,
HyperBand, median stopping), a trial the scheduler stops before its budget
(``max_t``) ends ``trial_pruned`` at its last iteration instead.

With Ray's ``PopulationBasedTraining`` passed as ``scheduler=``, each exploit
/ explore is recorded as hptrack's PBT records it (see :mod:`hptrack.pbt`):
the replaced member's trial ends ``trial_pruned`` at its last iteration, and a
new hptrack trial starts for the same Ray trial with ``trial_forked`` whose
payload holds ``parent_trial_id``, ``parent_score``, ``replaced_trial_id``,
``replaced_score``, ``params_before``, ``params_after`` and ``explore`` (Ray's
description of each change: ``"* 1.2"``, ``"resample"``, ...); ``step`` is
the parent's iteration the copy starts from. ``copied_score`` is null: Ray
does not evaluate the copy before training it. So :func:`hptrack.pbt.lineage`
and :func:`hptrack.pbt.schedule` work on Ray runs too.

:func:`import_results` (from :mod:`hptrack.ray_import`, which needs no Ray)
writes the same events from a finished (or running) experiment folder.
"""

from __future__ import annotations

import numbers
import time

from hptrack import api
from hptrack.errors import missing_extra
from hptrack.ray._import import finite as _finite
from hptrack.ray._import import flat_params as _params
from hptrack.ray._import import import_results, num as _num, result_metrics

__all__ = ["Callback", "import_results"]

try:
    from ray.tune import Callback as _TuneCallback
except ImportError as _err:  # import_results reads an experiment folder and needs no Ray
    _NO_RAY = _err

    class _TuneCallback:  # type: ignore[no-redef]
        def __new__(cls, *args, **kwargs):
            raise missing_extra(_NO_RAY, "hptrack.ray.Callback", "ray") from _NO_RAY


class Callback(_TuneCallback):
    """A Ray Tune callback that records every trial into an hptrack search.

    ``name`` defaults to ``ray-<experiment folder name>``; ``metric`` and ``mode``
    default to the scheduler's. Pass Ray's ``PopulationBasedTraining`` as
    ``scheduler`` to record its exploit/explore decisions as forks.
    """

    def __init__(self, name=None, *, metric=None, mode=None, scheduler=None, store=None,
                 **attrs):
        self.name = name
        self.scheduler = scheduler
        self.metric = metric or getattr(scheduler, "_metric", None)
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode or getattr(scheduler, "_mode", None)
        self.store = store
        self.attrs = attrs
        self._reset()

    def _reset(self):
        self.search = None
        self.trials = {}      # Ray trial_id -> the hptrack Trial it is recording now
        self._ops = None      # explore operations of the exploit in progress
        self._stopped = {}    # Ray trial_id -> iteration where the scheduler stopped it

    # the Tuner pickles its run config (with this callback and the scheduler) to
    # restore runs: the open search and writer stay behind
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(search=None, trials={}, _ops=None, _stopped={})
        return state

    # --- Tune hooks --------------------------------------------------------------
    def setup(self, **info):
        # TuneConfig(metric=, mode=) reaches the scheduler only once the run is set up
        self.metric = self.metric or getattr(self.scheduler, "_metric", None)
        self.mode = self.mode or getattr(self.scheduler, "_mode", None) or "max"
        if not self.metric:
            raise ValueError("hptrack.ray.Callback needs the metric to record: pass metric= "
                             "(or a scheduler that has one)")
        if _is_pbt(self.scheduler):
            _hook(self.scheduler, "_get_new_config", self._get_new_config)
            _hook(self.scheduler, "_exploit", self._exploit)
        elif self.scheduler is not None and hasattr(self.scheduler, "on_trial_result"):
            _hook(self.scheduler, "on_trial_result", self._scheduler_result)

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.trials and self.trials[trial.trial_id].state == "running":
            return  # resumed after a pause (PBT), same member
        self.trials[trial.trial_id] = self._open().trial(_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t = self.trials.get(trial.trial_id)
        if t is None or t.state != "running":
            return
        value = result.get(self.metric)
        step = result.get("training_iteration")
        if not _finite(value) or not isinstance(step, numbers.Integral):
            return
        t.report(int(step), float(value), **result_metrics(result, self.metric, t.params))

    def on_trial_complete(self, iteration, trials, trial, **info):
        t = self.trials.get(trial.trial_id)
        if t is None or t.state != "running":
            return
        if trial.trial_id in self._stopped:
            t.prune(self._stopped.pop(trial.trial_id))
            return
        value = (trial.last_result or {}).get(self.metric)
        if value is None:
            t.fail(f"the trial ended without reporting {self.metric!r}")
        else:
            t.complete(value, training_iteration=(trial.last_result or {}).get("training_iteration"))

    def on_trial_error(self, iteration, trials, trial, **info):
        t = self.trials.get(trial.trial_id)
        if t is not None and t.state == "running":
            t.fail(_error_of(trial))

    def on_experiment_end(self, trials, **info):
        if self.scheduler is not None:
            for name in ("_exploit", "_get_new_config", "on_trial_result"):
                if isinstance(self.scheduler.__dict__.get(name), _Hook):
                    del self.scheduler.__dict__[name]
        if self.search is not None:
            for t in self.trials.values():
                if t.state == "running":
                    t.fail("the Tune run ended with the trial still running")
            self.search.finish("ok", n_trials=len(trials))
        self._reset()

    # --- schedulers ---------------------------------------------------------------
    def _scheduler_result(self, original, tune_controller, trial, result):
        decision = original(tune_controller, trial, result)
        if decision == "STOP":  # TrialScheduler.STOP
            sched = self.scheduler
            budget, attr = getattr(sched, "_max_t", None), getattr(sched, "_time_attr", None)
            used = result.get(attr) if attr else None
            # stopping at the budget is the trial finishing, not being pruned
            if not (isinstance(budget, numbers.Real) and isinstance(used, numbers.Real)
                    and used >= budget):
                self._stopped[trial.trial_id] = _iteration(result)
        return decision

    def _get_new_config(self, original, trial, trial_to_clone):
        new_config, ops = original(trial, trial_to_clone)
        self._ops = ops
        return new_config, ops

    def _exploit(self, original, tune_controller, trial, trial_to_clone):
        sched = self.scheduler
        sign = getattr(sched, "_metric_op", 1.0) or 1.0
        state, parent_state = sched._trial_state[trial], sched._trial_state[trial_to_clone]
        replaced_score = _unsign(state.last_score, sign)
        parent_score = _unsign(parent_state.last_score, sign)
        # the scheduler's own view: the results it ranked (the trials may be further on)
        parent_step = _iteration(parent_state.last_result) or _iteration(trial_to_clone.last_result)
        replaced_step = _iteration(state.last_result) or _iteration(trial.last_result)
        self._ops = None
        original(tune_controller, trial, trial_to_clone)
        old, parent = self.trials.get(trial.trial_id), self.trials.get(trial_to_clone.trial_id)
        if old is None or parent is None:
            return
        params = _params(trial.config)
        if old.state == "running":
            old.prune(replaced_step)
        child = self._open().trial(params)
        self.search.writer.write({
            "type": "trial_forked", "search_id": self.search.search_id, "trial_id": child.trial_id,
            "trial_number": child.number, "step": parent_step, "params": params,
            "payload": {"parent_trial_id": parent.trial_id, "reason": "pbt_exploit",
                        "parent_score": parent_score, "replaced_trial_id": old.trial_id,
                        "replaced_score": replaced_score, "params_before": dict(parent.params),
                        "params_after": params, "explore": _params(self._ops or {}),
                        "copied_score": None, "ray_trial_id": trial.trial_id,
                        "ray_parent_trial_id": trial_to_clone.trial_id}})
        self.trials[trial.trial_id] = child

    # --- helpers ---------------------------------------------------------------------
    def _open(self):
        if self.search is None:
            name = self.name or f"ray-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            sched = self.scheduler
            self.search = api.search(
                name, strategy="pbt" if _is_pbt(sched) else "custom",
                direction="minimize" if self.mode == "min" else "maximize",
                metric=self.metric or "value", store=self.store, durability="trial",
                scheduler=None if sched is None else type(sched).__name__,
                pbt=_pbt_settings(sched), **self.attrs)
        return self.search


class _Hook:
    """An instance-level override of a scheduler method for one run. It pickles as
    the scheduler's own method, so a Tuner saved with the hook restores without it."""

    def __init__(self, owner, name, fn):
        self.owner, self.name, self.fn = owner, name, fn
        self.original = getattr(type(owner), name).__get__(owner)

    def __call__(self, *args, **kwargs):
        return self.fn(self.original, *args, **kwargs)

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


def _hook(owner, name, fn):
    owner.__dict__[name] = _Hook(owner, name, fn)


def _is_pbt(scheduler):
    if scheduler is None:
        return False
    from ray.tune.schedulers import PopulationBasedTraining
    return isinstance(scheduler, PopulationBasedTraining)


def _pbt_settings(sched):
    if not _is_pbt(sched):
        return None
    return {"perturbation_interval": _num(getattr(sched, "_perturbation_interval", None)),
            "quantile_fraction": _num(getattr(sched, "_quantile_fraction", None)),
            "resample_probability": _num(getattr(sched, "_resample_probability", None)),
            "perturbation_factors": [_num(f) for f in getattr(sched, "_perturbation_factors", ())],
            "synch": bool(getattr(sched, "_synch", False)),
            "time_attr": getattr(sched, "_time_attr", None)}


def _unsign(score, sign):
    return None if score is None else float(score) * sign


def _iteration(result):
    it = (result or {}).get("training_iteration")
    return int(it) if isinstance(it, numbers.Integral) else None


def _error_of(trial):
    path = getattr(trial, "error_file", None)
    if path:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text.splitlines()[-1][:2000]
        except OSError:
            pass
    return "the Ray trial raised an error"
