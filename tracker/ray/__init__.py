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
HyperBand, median stopping), a trial Tune stops before its budget (``max_t``)
ends ``trial_pruned`` at its last iteration instead.

It uses only Ray Tune's public interface: the :class:`ray.tune.Callback` hooks
and, for ``PopulationBasedTraining``, the ``pbt_global.txt`` file PBT documents
and appends one line to at each exploit (``log_config=True``, the default).
The callback reads the new lines at every hook, before any result of the
exploited trial can arrive, and records each exploit as hptrack's PBT does
(see :mod:`hptrack.pbt`): the replaced member's trial ends ``trial_pruned`` at
its last iteration, and a new hptrack trial forks from the parent (through
:meth:`hptrack.api.Search.fork`) when the Ray trial resumes, with
``parent_score``, ``replaced_trial_id``, ``replaced_score``, ``params_before``
and the Ray ids; ``step`` is the parent's iteration the copy resumed from (the
child's first result says which: Ray's record can lag it). ``explore`` and
``copied_score`` are null: Ray's files do not say how each value was changed,
and Ray does not evaluate the copy before training it. The lineage is the one
:func:`import_results` reads from the same folder afterwards.

Ray has no public accessor for a scheduler's settings (``mode``, ASHA's
``max_t``, PBT's ``perturbation_interval``...): they are read from the
attributes Ray 2 keeps them in; on another Ray, or when one is gone, they are
recorded as unknown with one warning and the run goes on (pass ``mode=``).

:func:`import_results` (which needs no Ray) writes the same events from a
finished (or running) experiment folder.
"""

from __future__ import annotations

import numbers
import os
import time
import warnings
from typing import Any

from hptrack import api
from hptrack.errors import missing_extra
from hptrack.ray._import import finite as _finite
from hptrack.ray._import import flat_params as _params
from hptrack.ray._import import fork_facts, import_results, original_tag, parse_exploit, result_metrics, tag_resolver
from hptrack.ray._import import num as _num

__all__ = ["Callback", "import_results"]

POLICY_FILE = "pbt_global.txt"   # PopulationBasedTraining's documented record of every exploit

try:
    import ray
    from ray.tune import Callback as _TuneCallback
except ImportError as _err:  # import_results reads an experiment folder and needs no Ray
    _NO_RAY = _err

    class _TuneCallback:  # type: ignore[no-redef]
        def __new__(cls, *args, **kwargs):
            raise missing_extra(_NO_RAY, "hptrack.ray.Callback", "ray") from _NO_RAY


class Callback(_TuneCallback):
    """A Ray Tune callback that records every trial into an hptrack search.

    ``name`` defaults to ``ray-<start time>``; ``metric`` and ``mode`` default to
    the scheduler's. Pass Ray's ``PopulationBasedTraining`` as ``scheduler`` to
    record its exploit/explore decisions as forks, or an early-stopping scheduler
    to record the trials it stops as pruned.
    """

    def __init__(self, name: str | None = None, *, metric: str | None = None,
                 mode: str | None = None, scheduler: Any = None, store: Any = None,
                 **attrs: Any) -> None:
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.name = name
        self.scheduler = scheduler
        self.metric = metric
        self.mode = mode
        self.store = store
        self.attrs = attrs
        self._reset()

    def _reset(self) -> None:
        self.search = None
        self.trials = {}      # Ray trial_id -> the hptrack Trial recording it now (None: forking)
        self._lines = {}      # Ray trial_id -> per hptrack trial of it, its results so far
        self._pending = {}    # Ray trial_id -> (exploit, parent's trial id, its results, replaced)
        self._stopped = {}    # Ray trial_id -> iteration where Tune stopped it
        self._policy = None   # [pbt_global.txt path, bytes read] once the run's folder is known
        self._forks = 0
        self._unknown = set()  # scheduler settings this Ray does not keep where Ray 2 does

    # the Tuner pickles its run config (with this callback) to restore runs: the
    # open search and writer stay behind
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(search=None, trials={}, _lines={}, _pending={}, _stopped={}, _policy=None,
                     _forks=0, _unknown=set())
        return state

    # --- Tune hooks --------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        # TuneConfig(metric=, mode=) reaches the scheduler only once the run is set up
        self.metric = self.metric or getattr(self.scheduler, "metric", None)
        self.mode = self.mode or self._setting("mode") or "max"
        if not self.metric:
            raise ValueError("hptrack.ray.Callback needs the metric to record: pass metric= "
                             "(or a scheduler that has one)")

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._read_exploits(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._read_exploits(trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._read_exploits(trials)
        rid = trial.trial_id
        if rid in self.trials:
            return  # resumed after a pause (PBT): the same member, or a fork opened at its result
        self.trials[rid] = self._open().trial(_params(trial.config))
        self._lines[rid] = [[]]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        rid = trial.trial_id
        if rid in self._pending:
            self._fork(rid, [result])
        t = self.trials.get(rid)
        if t is not None and t.state == "running":
            value, step = result.get(self.metric), result.get("training_iteration")
            if _finite(value) and isinstance(step, numbers.Integral):
                self._lines[rid][-1].append({"training_iteration": int(step),
                                             self.metric: float(value)})
                t.report(int(step), float(value), **result_metrics(result, self.metric, t.params))
            # a result Tune marks done is one it stopped the trial at: a trial that
            # ends by itself ends with a result the callbacks never see
            if result.get("done") and self._prunes(trial, result):
                self._stopped[rid] = _iteration(result)
        # PBT writes an exploit of this result before the callbacks see it: read after
        self._read_exploits(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._read_exploits(trials)
        rid = trial.trial_id
        last = trial.last_result or {}
        if rid in self._pending:
            # an exploit of the member's final result: nothing ran after the copy, whose
            # result is the parent's at the copied step (as Ray's ResultGrid has it)
            step, info = self._fork(rid, [], last)
            t = self.trials[rid]
            if info["parent_score"] is None:
                t.fail(f"the trial ended without reporting {self.metric!r}")
            else:
                t.complete(info["parent_score"], training_iteration=step)
            return
        t = self.trials.get(rid)
        if t is None or t.state != "running":
            return
        if rid in self._stopped:
            t.prune(self._stopped.pop(rid))
            return
        value = last.get(self.metric)
        if value is None:
            t.fail(f"the trial ended without reporting {self.metric!r}")
        else:
            t.complete(value, training_iteration=last.get("training_iteration"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._read_exploits(trials)
        if trial.trial_id in self._pending:
            self._fork(trial.trial_id, [], trial.last_result)
        t = self.trials.get(trial.trial_id)
        if t is not None and t.state == "running":
            t.fail(_error_of(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._read_exploits(trials)
        if self.search is not None:
            for rid in list(self._pending):
                self._fork(rid, [], None)
            for t in self.trials.values():
                if t is not None and t.state == "running":
                    t.fail("the Tune run ended with the trial still running")
            if _is_pbt(self.scheduler) and not self._forks and any(
                    _params(t.config) != self.trials[t.trial_id].params
                    for t in trials if t.trial_id in self.trials):
                warnings.warn("hptrack.ray: PBT changed trial configs but wrote no pbt_global.txt "
                              "(PopulationBasedTraining(log_config=False)?): its exploits are not "
                              "recorded as forks", stacklevel=2)
            self.search.finish("ok", n_trials=len(trials))
        self._reset()

    # --- PBT exploits, from pbt_global.txt -------------------------------------------
    def _read_exploits(self, trials: list) -> None:
        """Record the exploits PBT appended to its policy file since the last look."""
        if not _is_pbt(self.scheduler) or not trials:
            return
        if self._policy is None:
            path = os.path.join(trials[0].local_experiment_path, POLICY_FILE)
            # PBT makes the file at its first exploit: one there now (a restored run)
            # holds the exploits of before, not this callback's
            self._policy = [path, os.path.getsize(path) if os.path.isfile(path) else 0]
        path, offset = self._policy
        if not os.path.isfile(path):
            return
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        whole = data[:data.rfind(b"\n") + 1]  # a line PBT is still writing waits
        self._policy[1] += len(whole)
        if not whole:
            return
        ray_id = tag_resolver({original_tag(t.experiment_tag): t.trial_id for t in trials},
                              [t.trial_id for t in trials])
        for line in whole.decode().splitlines():
            e = parse_exploit(line, ray_id)
            if e is not None and e.target in self.trials and e.parent in self.trials:
                self._exploited(e)

    def _exploited(self, e) -> None:
        # a member exploited (or copied) again before it resumed: its fork has no results
        for rid in (e.target, e.parent):
            if rid in self._pending:
                self._fork(rid, [], None)
        old = self.trials[e.target]
        replaced = self._lines[e.target][-1]
        if old is not None and old.state == "running":
            old.prune(replaced[-1]["training_iteration"] if replaced else None)
        parent_lines = [r for seg in self._lines[e.parent] for r in seg]
        parent = self.trials[e.parent]
        # the parent's trial as it is now; the child opens at its first result (the
        # copied step is one before it)
        self._pending[e.target] = (e, parent.trial_id, list(parent_lines), replaced, old.trial_id)
        self.trials[e.target] = None
        self._lines[e.target].append([])

    def _fork(self, rid: str, child_lines: list, last: dict | None = None) -> tuple[int, dict]:
        e, parent_id, parent_lines, replaced, replaced_id = self._pending.pop(rid)
        step, info = fork_facts(e, self.metric, parent_lines, replaced, child_lines, last)
        self.trials[rid] = self.search.fork(
            parent_id, _params(e.new_config), step=step, reason="pbt_exploit",
            replaced_trial_id=replaced_id, **info)
        self._forks += 1
        return step, info

    # --- early stopping --------------------------------------------------------------
    def _prunes(self, trial: Any, result: dict) -> bool:
        sched = self.scheduler
        if sched is None or _is_pbt(sched) or not hasattr(sched, "on_trial_result"):
            return False
        for key, limit in (getattr(trial, "stopping_criterion", None) or {}).items():
            if isinstance(result.get(key), numbers.Real) and result[key] >= limit:
                return False  # the run's own stop= criteria: the trial's budget
        budget, attr = self._setting("max_t"), self._setting("time_attr")
        used = result.get(attr) if attr else None
        # stopping at the budget is the trial finishing, not being pruned
        return not (isinstance(budget, numbers.Real) and isinstance(used, numbers.Real)
                    and used >= budget)

    # --- helpers ---------------------------------------------------------------------
    def _setting(self, name: str) -> Any:
        """A scheduler's constructor argument ``name``. Ray has no public accessor:
        Ray 2 keeps each as ``_<name>``. Unknown on another Ray or when it is gone
        (None, one warning per run), so a Ray upgrade never breaks the user's run."""
        sched = self.scheduler
        if sched is None:
            return None
        if ray.__version__.split(".")[0] == "2":
            try:
                return getattr(sched, "_" + name)
            except AttributeError:
                pass
        if not self._unknown:
            warnings.warn(f"hptrack.ray: cannot read the settings of {type(sched).__name__} on "
                          f"Ray {ray.__version__} (first: {name!r}); they are recorded as unknown"
                          + ("" if self.mode or name != "mode" else "; pass mode="),
                          stacklevel=3)
        self._unknown.add(name)
        return None

    def _open(self) -> api.Search:
        if self.search is None:
            name = self.name or f"ray-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            sched = self.scheduler
            self.search = api.search(
                name, strategy="pbt" if _is_pbt(sched) else "custom",
                direction="minimize" if self.mode == "min" else "maximize",
                metric=self.metric or "value", store=self.store, durability="trial",
                scheduler=None if sched is None else type(sched).__name__,
                pbt=self._pbt_settings(), **self.attrs)
        return self.search

    def _pbt_settings(self) -> dict | None:
        if not _is_pbt(self.scheduler):
            return None
        s = self._setting
        return {"perturbation_interval": _num(s("perturbation_interval")),
                "quantile_fraction": _num(s("quantile_fraction")),
                "resample_probability": _num(s("resample_probability")),
                "perturbation_factors": [_num(f) for f in s("perturbation_factors") or ()],
                "synch": s("synch"), "time_attr": s("time_attr")}


def _is_pbt(scheduler: Any) -> bool:
    from ray.tune.schedulers import PopulationBasedTraining  # a Callback exists, so Ray does

    return isinstance(scheduler, PopulationBasedTraining)


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

