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

import inspect
from array import array
import threading
import warnings

from hptrack import schema
from hptrack._write.writer import Writer, now_us

DONE_KEY = "_hptrack_done_us"
START_KEY = "_hptrack_start_us"

_patch_lock = threading.Lock()


class FoldRecorder:
    """Stands in for sklearn's ``_fit_and_score`` during one ``evaluate_candidates`` call."""

    def __init__(self, store_root, search_id, trial_ids, trial_numbers, metric, step=None,
                 resource=None):
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

    def __call__(self, *args, **kwargs):
        from sklearn.model_selection._validation import _fit_and_score

        start = now_us()
        result = _fit_and_score(*args, **kwargs)
        # when this fold started and ended, in this process: the parent pops them
        # (sklearn never sees them) to date the trial by its own folds, not by the batch
        result[START_KEY], result[DONE_KEY] = start, now_us()
        try:
            self._record(kwargs, result)
        except Exception as exc:  # tracking must never break the user's search
            warnings.warn(f"hptrack: could not record a fold: {exc}", RuntimeWarning, stacklevel=2)
        return result

    def _trial_id(self, cand):
        ids = self.trial_ids
        return ids[8 * cand:8 * cand + 8].hex() if isinstance(ids, bytes) else ids[cand]

    def _record(self, kwargs, result):
        cand = (kwargs.get("candidate_progress") or (None,))[0]
        fold = (kwargs.get("split_progress") or (None,))[0]
        if cand is None or fold is None or result.get("fit_error") is not None:
            return  # a failed fit ends its trial as failed, from the parent
        writer = Writer.for_store(self.store_root)
        attrs = {k: _num(result[k]) for k in ("fit_time", "score_time", "n_test_samples") if k in result}
        # the fold's own sizes (a halving rung's are those of its subsample): the
        # corrected t-test of hptrack.analysis.diagnose needs n_test / n_train
        attrs.update({f"n_{k}": len(kwargs[k]) for k in ("train", "test") if kwargs.get(k) is not None})
        if self.step is not None:
            attrs["iter"] = self.step
            attrs["n_resources"] = _num(self.resource)
        base = {"type": "trial_scored", "search_id": self.search_id,
                "trial_id": self._trial_id(cand),
                "trial_number": array("i", self.trial_numbers)[cand],
                "fold": fold, "step": self.step, "resource": _num(self.resource), "payload": attrs}
        seq = None
        for split, key in (("fold", "test_scores"), ("fold_train", "train_scores")):
            scores = result.get(key)
            if scores is None:
                continue
            named = scores if isinstance(scores, dict) else {self.metric: scores}
            for name, value in named.items():
                seq = writer.write({**base, "split": split, "metric": name, "value": float(value)})
        if seq is not None:
            writer.flush(upto=seq)


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
    """One tracked ``fit``: hooks into the search object and records as it goes."""

    def __init__(self, search_cv, hp_search, metric, value_key, halving):
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
        self.done_rows = 0
        self.last_call = []                 # trial indices of the latest call

    # --- hooks ---------------------------------------------------------
    def install(self):
        """Bind the instance hooks; returns a function that removes them."""
        cls_run = type(self.cv)._run_search
        cls_format = type(self.cv)._format_results
        run = self

        def format_results(candidate_params, n_splits, out, more_results=None):
            run._collect_folds(n_splits, out)
            return cls_format(run.cv, candidate_params, n_splits, out, more_results)

        if "callback_ctx" in inspect.signature(cls_run).parameters:
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

    def wrap(self, evaluate):
        import sklearn.model_selection._search as sk_search

        def evaluate_candidates(candidate_params, cv=None, more_results=None, **kw):
            candidate_params = list(candidate_params)
            step = resource = None
            if more_results and self.halving:
                step = _num((more_results.get("iter") or [None])[0])
                resource = _num((more_results.get("n_resources") or [None])[0])
            if self.halving and self.last_call:
                self._prune_dropped(candidate_params)
            indices = [self._trial_for(p) for p in candidate_params]
            self.last_call = indices
            self.row_trial.extend(indices)
            self.row_step.extend([step] * len(indices))
            self.hp.writer.flush()
            recorder = FoldRecorder(
                self.hp.writer.store.root, self.hp.search_id,
                [self.trials[i].trial_id for i in indices], [self.trials[i].number for i in indices],
                self.metric, step, resource)
            with _patch_lock:
                previous = sk_search.__dict__["_fit_and_score"]
                sk_search._fit_and_score = recorder
            try:
                results = evaluate(candidate_params, cv, more_results=more_results, **kw)
            finally:
                sk_search._fit_and_score = previous
            self._record_results(results)
            return results

        return evaluate_candidates

    # --- parent-side events --------------------------------------------
    def _trial_for(self, params) -> int:
        if self.halving:
            known = self.by_params.get(id(params))
            if known is not None:
                return known
        encoded = {k: _param_value(v) for k, v in params.items()}
        idx = len(self.trials)
        self.trials.append(_Pending(self.hp.writer.new_id(), idx, encoded))
        self.by_params[id(params)] = idx
        self._keep.append(params)
        return idx

    def _collect_folds(self, n_splits, out):
        """Each new row's first fit error, the start of its first fold and the end of its last."""
        for j in range(self.done_rows * n_splits, len(out)):
            row = j // n_splits
            err = out[j].get("fit_error")
            if err is not None:
                self.row_errors.setdefault(row, err)
            done = out[j].pop(DONE_KEY, None)
            if done is not None:
                self.row_done[row] = max(done, self.row_done.get(row, done))
            start = out[j].pop(START_KEY, None)
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
        names = sorted(k[len("mean_test_"):] for k in results if k.startswith("mean_test_"))
        for r in range(self.done_rows, len(self.row_trial)):
            trial = self._started(self.row_trial[r], self.row_start.get(r))
            if trial.state != "running":
                continue
            ts = self.row_done.get(r)  # None (now) if no fold said when it ended
            if r in self.row_errors:
                if self.halving:  # the rung still counts the candidate, as n_candidates_ does
                    trial.report(int(self.row_step[r]), float(results[self.value_key][r]),
                                 resource=_resource(results, r), ts=ts)
                trial.fail(f"fit failed (error_score={self.cv.error_score!r}): "
                           f"{self.row_errors[r].strip().splitlines()[-1]}", ts=ts)
                continue
            metrics = {}
            for m in names:
                mean = float(results[f"mean_test_{m}"][r])
                metrics[f"mean_test_{m}"] = mean
                metrics[f"std_test_{m}"] = float(results[f"std_test_{m}"][r])
                if f"mean_train_{m}" in results:
                    metrics[f"mean_train_{m}"] = float(results[f"mean_train_{m}"][r])
                trial.score(mean, split="validation", metric=m if m != "score" else self.metric, ts=ts,
                            **({"iter": self.row_step[r]} if self.halving else {}))
            for k in ("mean_fit_time", "mean_score_time"):
                metrics[k] = float(results[k][r])
            value = float(results[self.value_key][r])
            if self.halving:
                trial.report(int(self.row_step[r]), value, resource=_resource(results, r), ts=ts, **metrics)
            else:
                trial.complete(value, ts=ts, **metrics)
        self.done_rows = len(self.row_trial)
        self.hp.writer.flush()

    def _prune_dropped(self, next_params):
        kept = {self.by_params.get(id(p)) for p in next_params}
        step = self.row_step[-1] if self.row_step else None
        for i in self.last_call:
            t = self.trials[i]
            if i not in kept and t.state == "running":
                t.prune(None if step is None else int(step))

    def finish_trials(self, results):
        """After fit: halving survivors complete with their last rung's score."""
        if not self.halving:
            return
        last_row = {}
        for r, i in enumerate(self.row_trial):
            last_row[i] = r
        for i, t in enumerate(self.trials):
            if t.state == "running":
                r = last_row[i]
                t.complete(float(results[self.value_key][r]), ts=self.row_done.get(r), rung=int(self.row_step[r]))

    def abort(self, exc):
        """The fit raised: every trial still running ends failed with the reason
        (one never started starts now: its folds' times never came back)."""
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


def _value_key(results, objective) -> str:
    if f"mean_test_{objective}" in results:
        return f"mean_test_{objective}"
    if "mean_test_score" in results:
        return "mean_test_score"
    return sorted(k for k in results if k.startswith("mean_test_"))[0]


def _param_value(v):
    """A param the schema can hold: scalars as they are, anything else as its repr."""
    v = _num(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    try:
        schema.encode_param("p", v)
        return v
    except TypeError:
        return repr(v)
