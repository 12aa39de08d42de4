"""The live recording behind :func:`hptrack.sklearn.track`.

BaseSearchCV.fit runs every (candidate, fold) through the module-level
``_fit_and_score`` of ``sklearn.model_selection._search``, possibly in loky
worker processes. During ``fit`` that name is bound to a :class:`FoldRecorder`:
a small picklable callable that carries the store path, the search id and the
trial id of each candidate. In whichever process it runs, it calls sklearn's
own ``_fit_and_score`` and writes the fold's scores with that process's own
Writer, fsynced before the result goes back, so a crash or Ctrl-C keeps every
fold that finished.

The parent process (:class:`Run`) gives each candidate its trial id before
its folds are dispatched (the fold scores carry it), and starts and ends the
trial from the results that ``evaluate_candidates`` returns, which are the
very arrays that become ``cv_results_``: the recorded values equal
``cv_results_`` exactly. Each trial gets exactly one terminal event (the read
side takes the first one).

A trial's time is its folds' time, as measured in the process that ran them:
it starts when its first fold started (before that fold's fit) and ends when
its last fold ended (after its scoring), so ``duration_s`` is the span of its
own fits and scores, not the time it waited in sklearn's queue behind the
other candidates. (Run one by one, that is the sum of its folds' fit_time and
score_time plus the recording; run in parallel, its folds overlap.) The price:
a trial appears in the ``trials`` view only once its batch returns (its fold
scores are written live all along); if the fit raises, the trials not yet
started are started and failed at that moment.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import secrets
import tempfile
import threading
import time
import warnings
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hptrack import api
from hptrack._described import recorded_value
from hptrack.sklearn import _clock, _compat
from hptrack.sklearn._warnings import LiveRecordingOff, RecordingFailed

DONE_KEY = "_hptrack_done_us"
START_KEY = "_hptrack_start_us"
ERROR_KEY = "_hptrack_fold_error"   # a fold the worker could not record: the parent writes it after fit
REUSED_KEY = "_hptrack_reused_from"  # a fold returned from the store, not fitted (hptrack.sklearn._skip)

_patch_lock = threading.Lock()


def _now_us() -> int:
    return time.time_ns() // 1000


class FoldRecorder:
    """Stands in for sklearn's ``_fit_and_score`` during one ``evaluate_candidates`` call."""

    def __init__(self, fit_and_score: Callable[..., dict[str, Any]], store_root: str, search_id: str,
                 trial_ids: Sequence[str], trial_numbers: Sequence[int], metric: str, step: int | None = None,
                 resource: float | None = None) -> None:
        self.fit_and_score = fit_and_score  # sklearn's own; pickles by its module and name
        self.store_root = store_root
        self.search_id = search_id
        # by candidate index within this call; packed, as every task pickles its recorder
        # (ids are 16 hex digits today; any other form is kept as a list)
        packable = all(len(t) == 16 for t in trial_ids) and _is_hex("".join(trial_ids))
        self.trial_ids = bytes.fromhex("".join(trial_ids)) if packable else list(trial_ids)
        self.trial_numbers = array("i", trial_numbers).tobytes()
        self.metric = metric                # the name of a single metric
        self.step = step                    # halving iteration, else None
        self.resource = resource

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        start = _now_us()
        result = self.fit_and_score(*args, **kwargs)
        reused = result.pop(REUSED_KEY, None)  # never reaches sklearn
        # when this fold started and ended, in this process: the parent pops them
        # (sklearn never sees them) to date the trial by its own folds, not by the batch
        result[START_KEY], result[DONE_KEY] = start, _now_us()
        try:
            self._record(kwargs, result, reused)
        except Exception as exc:  # tracking must never break the user's search: the parent
            # learns of it from the result, warns once and writes the fold from cv_results_
            result[ERROR_KEY] = f"{type(exc).__name__}: {exc}"
        return result

    def _trial_id(self, cand):
        ids = self.trial_ids
        return ids[8 * cand:8 * cand + 8].hex() if isinstance(ids, bytes) else ids[cand]

    def _record(self, kwargs, result, reused=None):
        cand = (kwargs.get("candidate_progress") or (None,))[0]
        fold = (kwargs.get("split_progress") or (None,))[0]
        if cand is None or fold is None or result.get("fit_error") is not None:
            return  # a failed fit ends its trial as failed, from the parent
        attrs = {k: _num(result[k]) for k in ("fit_time", "score_time", "n_test_samples") if k in result}
        # the fold's own sizes (a halving rung's are those of its subsample): the
        # corrected t-test of hptrack.analysis.diagnose needs n_test / n_train
        attrs.update({f"n_{k}": len(kwargs[k]) for k in ("train", "test") if kwargs.get(k) is not None})
        if self.step is not None:
            attrs["iter"] = self.step
            attrs["n_resources"] = _num(self.resource)
        if reused is not None:
            attrs["reused_from"] = reused
        scores = {}
        for split, key in (("fold", "test_scores"), ("fold_train", "train_scores")):
            value = result.get(key)
            if value is not None:
                named = value if isinstance(value, dict) else {self.metric: value}
                scores.update({(split, name): float(v) for name, v in named.items()})
        api.score_fold(self.search_id, self._trial_id(cand), fold, scores,
                       trial_number=array("i", self.trial_numbers)[cand], step=self.step,
                       resource=_num(self.resource), store=self.store_root, **attrs)


def _is_hex(text):
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False


class _Hook:
    """An instance-level override of a search method, for the duration of one fit.

    sklearn passes the search itself to every fold (``caller=self``), so it is
    pickled to the workers: the hook pickles as nothing, instead of dragging the
    parent's Writer (locks, open files) along. Workers never call it."""

    def __init__(self, fn):
        self.fn = fn
        self.__signature__ = inspect.signature(fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __reduce__(self):
        return (_absent, ())


def _absent():
    return None


def _num(v):
    if v is None:
        return None
    return v.item() if hasattr(v, "item") else v


class Run:
    """One tracked ``fit``: hooks into the search object and records as it goes.

    Live (the default), it overrides two methods on the instance and swaps
    ``_fit_and_score`` for each ``evaluate_candidates`` call. If
    :func:`hptrack.sklearn._compat.live_unavailable` names a reason, or recording
    raises mid-fit, the search runs untouched from then on and :meth:`replay`
    records the rows of ``cv_results_`` not yet recorded, after fit. Nothing
    recording raises reaches the fit; the first problem warns, once."""

    def __init__(self, search_cv: Any, hp_search: api.Search, metric: str, value_key: str | None,
                 halving: bool) -> None:
        self.cv = search_cv
        self.hp = hp_search                 # an open hptrack Search
        self.metric = metric                # name of the single metric (fold events)
        self.value_key = value_key          # "mean_test_<name>" or None: decided at the first results
        self.halving = halving
        self.trials = []                    # one per candidate: a _Pending, then its hptrack Trial
        self.row_trial = []                 # cv_results_ row -> index into trials
        self.row_step = []
        self.by_params = {}                 # id(params dict) -> trial index (halving re-evaluates them)
        self._keep = []                     # keeps those dicts alive, so ids are not reused
        self.row_errors = {}                # row -> error text of its first failed fold
        self.row_done = {}                  # row -> when its last fold ended (µs)
        self.row_start = {}                 # row -> when its first fold started (µs)
        self.done_rows = 0                  # rows whose trials are recorded (ended, or a rung reported)
        self.live_rows = 0                  # rows whose folds went through a FoldRecorder
        self.missing_folds = set()          # (row, fold) a worker could not record
        self.last_call = []                 # trial indices of the latest call
        self.live = True                    # False: the fit runs untouched, replay() records it
        self.warned = False
        self.clock_path = None              # the FoldClock's spool, in fallback mode

    # --- never break the fit -------------------------------------------
    def warn(self, category: type[Warning], message: str) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(message, category, stacklevel=3)

    def failed(self, exc: BaseException, where: str) -> None:
        """Recording raised: live recording stops for the rest of this fit; warn once."""
        self.live = False
        self.warn(RecordingFailed,
                  f"hptrack.sklearn: recording search {self.hp.name!r} raised {type(exc).__name__}: {exc} "
                  f"({where}); live per-fold recording is off for the rest of this fit, which goes on; "
                  "what cv_results_ holds is recorded after it where the store allows")

    @contextlib.contextmanager
    def guard(self, where: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.failed(exc, where)

    # --- hooks ---------------------------------------------------------
    def start(self) -> Callable[[], None]:
        """Before ``fit``: the live hooks, or (when they cannot apply) the fallback and its
        one warning. Returns a function that undoes whatever was set."""
        reason = _compat.live_unavailable(self.cv)
        if reason is None:
            try:
                return self.install()
            except Exception as exc:
                reason = f"installing the hooks raised {type(exc).__name__}: {exc}"
        self.live = False
        self.warn(LiveRecordingOff,
                  f"hptrack.sklearn: {reason}; live per-fold recording is off: search "
                  f"{self.hp.name!r} is recorded from cv_results_ after fit")
        return self._set_clock()

    def _set_clock(self):
        """The public sklearn.callback API (1.9+) times the folds of an untouched fit."""
        if not hasattr(self.cv, "set_callbacks"):
            return lambda: None
        before = _compat.callbacks_of(self.cv)
        try:
            fd, path = tempfile.mkstemp(prefix="hptrack-folds-", suffix=".jsonl")
            os.close(fd)
            self.cv.set_callbacks(*before, _clock.FoldClock(path))
        except Exception:
            return lambda: None
        self.clock_path = path

        def remove():
            try:
                self.cv.set_callbacks(*before)
            except Exception:
                pass
        return remove

    def install(self) -> Callable[[], None]:
        """Bind the instance hooks; returns a function that removes them."""
        cls_run = type(self.cv)._run_search
        cls_format = type(self.cv)._format_results
        run = self

        def format_results(candidate_params, n_splits, out, more_results=None):
            run._collect_folds(n_splits, out)
            return cls_format(run.cv, candidate_params, n_splits, out, more_results)

        if _compat.takes_callback_ctx(cls_run):
            def run_search(evaluate_candidates, callback_ctx=None):
                return cls_run(run.cv, run.wrap(evaluate_candidates), callback_ctx=callback_ctx)
        else:
            def run_search(evaluate_candidates):
                return cls_run(run.cv, run.wrap(evaluate_candidates))

        self.cv._run_search = _Hook(run_search)
        self.cv._format_results = _Hook(format_results)

        def remove():
            for k in ("_run_search", "_format_results"):
                self.cv.__dict__.pop(k, None)
        return remove

    def wrap(self, evaluate: Callable[..., Any]) -> Callable[..., Any]:
        import importlib

        unsupported = _compat.evaluate_unsupported(evaluate)
        if unsupported:
            self.failed(RuntimeError(unsupported), "wrapping evaluate_candidates")
            return evaluate
        sk_search = importlib.import_module(_compat.SEARCH_MODULE)

        def evaluate_candidates(candidate_params, cv=None, more_results=None, **kw):
            if not self.live:
                return evaluate(candidate_params, cv, more_results=more_results, **kw)
            candidate_params = list(candidate_params)
            recorder = None
            try:
                recorder = self._dispatch(candidate_params, more_results,
                                          sk_search.__dict__.get(_compat.FIT_AND_SCORE))
            except Exception as exc:
                self.failed(exc, "starting a batch of candidates")
            if recorder is None:
                return evaluate(candidate_params, cv, more_results=more_results, **kw)
            with _patch_lock:
                previous = sk_search.__dict__[_compat.FIT_AND_SCORE]
                sk_search.__dict__[_compat.FIT_AND_SCORE] = recorder
            self.live_rows = len(self.row_trial)
            try:
                results = evaluate(candidate_params, cv, more_results=more_results, **kw)
            finally:
                sk_search.__dict__[_compat.FIT_AND_SCORE] = previous
            with self.guard("recording a batch of results"):
                self._record_results(results)
            return results

        return evaluate_candidates

    def _dispatch(self, candidate_params, more_results, fit_and_score):
        """Give the candidates their trials; the recorder their folds will run through."""
        if fit_and_score is None:
            raise RuntimeError(f"{_compat.SEARCH_MODULE}.{_compat.FIT_AND_SCORE} went missing during fit")
        step = resource = None
        if more_results and self.halving:
            step = _num((more_results.get("iter") or [None])[0])
            resource = _num((more_results.get("n_resources") or [None])[0])
        indices = self._assign(candidate_params, step)
        self.hp.writer.flush()
        return FoldRecorder(
            fit_and_score, self.hp.writer.store.root, self.hp.search_id,
            [self.trials[i].trial_id for i in indices], [self.trials[i].number for i in indices],
            self.metric, step, resource)

    def _assign(self, candidate_params, step) -> list[int]:
        """The rows of one evaluate_candidates call: each its candidate's trial (halving:
        the one of its earlier rungs; the candidates not carried on are pruned)."""
        prev_step = self.row_step[-1] if self.row_step else None
        previous = self.last_call
        indices = [self._trial_for(p) for p in candidate_params]
        self.last_call = indices
        self.row_trial.extend(indices)
        self.row_step.extend([step] * len(indices))
        if self.halving and previous:
            self._prune_dropped(previous, set(indices), prev_step)
        return indices

    # --- parent-side events --------------------------------------------
    def _trial_for(self, params) -> int:
        if self.halving:
            known = self.by_params.get(id(params))
            if known is not None:
                return known
        encoded = {k: recorded_value(v) for k, v in params.items()}
        idx = len(self.trials)
        self.trials.append(_Pending(secrets.token_hex(8), idx, encoded))
        self.by_params[id(params)] = idx
        self._keep.append(params)
        return idx

    def _collect_folds(self, n_splits, out):
        """Each new row's first fit error, the start of its first fold and the end of its last
        (the keys are popped whatever happens: they must never reach cv_results_)."""
        for j in range(self.done_rows * n_splits, len(out)):
            row = j // n_splits
            done, start = out[j].pop(DONE_KEY, None), out[j].pop(START_KEY, None)
            if out[j].pop(ERROR_KEY, None) is not None:
                self.missing_folds.add((row, j % n_splits))
            err = out[j].get("fit_error")
            if err is not None:
                self.row_errors.setdefault(row, err)
            if done is not None:
                self.row_done[row] = max(done, self.row_done.get(row, done))
            if start is not None:
                self.row_start[row] = min(start, self.row_start.get(row, start))

    def _started(self, i, ts=None):
        """Candidate ``i``'s Trial, started at ``ts`` (its first fold's start) if not yet."""
        t = self.trials[i]
        if isinstance(t, _Pending):
            t = self.trials[i] = self.hp.trial(t.params, trial_number=t.number, ts=ts,
                                               trial_id=t.trial_id)
        return t

    def _record_results(self, results):
        """End (or, for halving, report) the trials of the rows this call added."""
        if self.value_key is None:
            self.value_key = _value_key(results, self.hp.metric)
        names = _metrics(results)
        for r in range(self.done_rows, len(self.row_trial)):
            trial = self._started(self.row_trial[r], self.row_start.get(r))
            if trial.state != "running":
                self.done_rows = r + 1
                continue
            ts = self.row_done.get(r)  # None (now) if no fold said when it ended
            if r in self.row_errors:
                if self.halving:  # the rung still counts the candidate, as n_candidates_ does
                    trial.report(int(self.row_step[r]), float(results[self.value_key][r]),
                                 resource=_resource(results, r), ts=ts)
                trial.fail(f"fit failed (error_score={self.cv.error_score!r}): "
                           f"{self.row_errors[r].strip().splitlines()[-1]}", ts=ts)
                self.done_rows = r + 1
                continue
            metrics = {}
            for m in names:
                mean = float(results[f"mean_test_{m}"][r])
                metrics[f"mean_test_{m}"] = mean
                metrics[f"std_test_{m}"] = float(results[f"std_test_{m}"][r])
                if f"mean_train_{m}" in results:
                    metrics[f"mean_train_{m}"] = float(results[f"mean_train_{m}"][r])
                trial.score(mean, split="validation", metric=self._name(m), ts=ts,
                            **({"iter": self.row_step[r]} if self.halving else {}))
            for k in ("mean_fit_time", "mean_score_time"):
                metrics[k] = float(results[k][r])
            value = float(results[self.value_key][r])
            if self.halving:
                trial.report(int(self.row_step[r]), value, resource=_resource(results, r), ts=ts, **metrics)
            else:
                trial.complete(value, ts=ts, **metrics)
            self.done_rows = r + 1
        self.hp.writer.flush()

    def _name(self, m):
        """The recorded name of cv_results_'s metric ``m`` (a single scorer's is its name)."""
        return self.metric if m == "score" else m

    def _prune_dropped(self, previous, kept, step):
        for i in previous:
            t = self.trials[i]
            if i not in kept and not isinstance(t, _Pending) and t.state == "running":
                t.prune(None if step is None else int(step))

    # --- after fit -----------------------------------------------------
    def replay(self, results: dict[str, Any]) -> None:
        """Record the rows of ``cv_results_`` not recorded live, as the live path would
        have: each row's folds (``split{k}_test_<m>`` / ``_train_``), its validation
        means and its end, rung by rung for halving; a row with a non-finite fold score
        of the objective is a failed fit (``error_score=nan``)."""
        if self.value_key is None:
            self.value_key = _value_key(results, self.hp.metric)
        params, n = results["params"], len(results["params"])
        iters = results.get("iter") if self.halving else None
        times = self._clock_times(results, iters)
        while self.done_rows < n:
            first = self.done_rows
            if first >= len(self.row_trial):  # not dispatched live: assign it as evaluate_candidates did
                last = first + 1
                while last < n and (iters is None or iters[last] == iters[first]):
                    last += 1
                self._assign(params[first:last], None if iters is None else _num(iters[first]))
            for r in range(first, len(self.row_trial)):
                self._replay_row(results, r, times)
            self._record_results(results)

    def _clock_times(self, results, iters) -> dict:
        if self.clock_path is None:
            return {}
        try:
            sizes = [len(results["params"])] if iters is None else \
                [int((iters == i).sum()) for i in sorted(set(iters.tolist()))]
            return _clock.fold_times(self.clock_path, sizes, int(self.cv.n_splits_))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.clock_path)
            self.clock_path = None

    def _replay_row(self, results, r, times):
        n_splits = int(self.cv.n_splits_)
        spans = [times[r, k] for k in range(n_splits) if (r, k) in times]
        if spans and r not in self.row_start:
            self.row_start[r] = min(s[0] for s in spans)
            self.row_done[r] = max(s[1] for s in spans)
        objective = self.value_key[len("mean_test_"):]
        bad = [k for k in range(n_splits)
               if not math.isfinite(float(results[f"split{k}_test_{objective}"][r]))]
        if bad and r not in self.row_errors:
            self.row_errors[r] = (f"cv_results_ holds {results[f'split{bad[0]}_test_{objective}'][r]} "
                                  f"for fold(s) {bad} (scikit-learn's FitFailedWarning has the error)")
        if r >= self.live_rows:
            for k in range(n_splits):
                self._write_fold(results, r, k, times.get((r, k)))

    def _write_fold(self, results, r, k, span=None):
        """Row ``r``'s fold ``k`` from ``cv_results_``: its finite test (and train) scores."""
        scores = {}
        for m in _metrics(results):
            for split, part in (("fold", "test"), ("fold_train", "train")):
                key = f"split{k}_{part}_{m}"
                if key in results and math.isfinite(float(results[key][r])):
                    scores[(split, self._name(m))] = float(results[key][r])
        if not scores:
            return
        step, resource = self.row_step[r], _resource(results, r)
        attrs = {}
        if span is not None:
            attrs.update(n_train=span[2], wall_time=(span[1] - span[0]) / 1e6)
        if step is not None:
            attrs.update(iter=step, n_resources=resource)
        trial = self.trials[self.row_trial[r]]
        api.score_fold(self.hp.search_id, trial.trial_id, k, scores, trial_number=trial.number,
                       step=step, resource=None if step is None else resource,
                       store=self.hp.writer.store.root, ts=None if span is None else span[1],
                       durable=False, **attrs)

    def finish(self, results: dict[str, Any]) -> None:
        """After fit: what live recording left out, then the halving survivors' ends."""
        with self.guard("recording from cv_results_ after fit"):
            if self.missing_folds:
                self.failed(RuntimeError(f"{len(self.missing_folds)} fold(s) could not be written "
                                         "by the process that ran them"), "recording folds")
                for r, k in sorted(self.missing_folds):
                    self._write_fold(results, r, k)
            self.replay(results)
            self.finish_trials(results)

    def finish_trials(self, results: dict[str, Any]) -> None:
        """After fit: halving survivors complete with their last rung's score."""
        if not self.halving:
            return
        last_row = {}
        for r, i in enumerate(self.row_trial):
            last_row[i] = r
        for i, t in enumerate(self.trials):
            if not isinstance(t, _Pending) and t.state == "running":
                r = last_row[i]
                t.complete(float(results[self.value_key][r]), ts=self.row_done.get(r), rung=int(self.row_step[r]))

    def abort(self, exc: BaseException) -> None:
        """The fit raised: every trial still running ends failed with the reason
        (one never started starts now: its folds' times never came back)."""
        with self.guard("recording the fit's error"):
            if self.clock_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.clock_path)
            for i in range(len(self.trials)):
                t = self._started(i)
                if t.state == "running":
                    t.fail(exc)
            self.hp.writer.flush()


class _Pending:
    """A candidate dispatched to sklearn whose trial is not started yet: its id and
    number are fixed (its folds record them), its start waits for its folds' times."""
    state = "pending"

    def __init__(self, trial_id, number, params):
        self.trial_id, self.number, self.params = trial_id, number, params


def _resource(results, r):
    return _num(results["n_resources"][r]) if "n_resources" in results else None


def _metrics(results) -> list[str]:
    return sorted(k[len("mean_test_"):] for k in results if k.startswith("mean_test_"))


def _value_key(results, objective) -> str:
    if f"mean_test_{objective}" in results:
        return f"mean_test_{objective}"
    if "mean_test_score" in results:
        return "mean_test_score"
    return sorted(k for k in results if k.startswith("mean_test_"))[0]
