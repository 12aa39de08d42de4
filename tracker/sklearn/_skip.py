"""``hptrack.sklearn.track(..., skip_done=True)``: reuse fold results already recorded.

A fold's result depends on the estimator (class and every param), the data, the
split and the scoring. Each tracked ``fit`` (except halving, whose folds are
subsampled) writes one search-level ``annotation`` before its folds run, whose
payload holds ``evaluated`` (estimator class and all its params, cv, scoring,
dataset fingerprint, fit params' fingerprints) and ``candidates`` (trial id and
params of each candidate whose params are plain scalars). It is durable before
the first fold starts, so a run killed mid-grid leaves it beside every fold it
finished.

With ``skip_done=True`` a later fit looks for annotations of the same data,
cv, scoring and fit params, and for each of its candidates the folds recorded
with the same effective estimator params (fixed params with the candidate's
over them, compared as JSON, so ``1`` and ``1.0`` differ). Those folds are not
fitted: sklearn's ``_fit_and_score`` is stood in for by :class:`Reuser`, which
returns the recorded scores and times (one fit in another process reads them
from a spool file, not from its pickled arguments), so scikit-learn builds
``cv_results_``, picks the best and refits exactly as after a full run.

In the history, a reused fold is a ``trial_scored`` copy whose payload holds
``reused_from`` (the search and trial that measured it); a candidate whose
every fold was reused gets a trial annotation ``reused_from`` too, and
:mod:`hptrack.analysis.compare` leaves such trials out (no budget was spent on
them in this search). Copies are never reused; the originals are.

Only deterministic splits match: an int or None cv, a splitter that does not
shuffle, or one shuffling with an int ``random_state``, of a known
scikit-learn class. Scoring must be a name (or a list or dict of names).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from hptrack._described import estimator_params, jsonable
from hptrack._history import candidate_lists, original_folds
from hptrack.sklearn._describe import _array_fingerprint
from hptrack.sklearn._record import REUSED_KEY, Run, _Pending
from hptrack.sklearn._warnings import TrackingWarning

# splitters whose folds are a function of their settings (and of X, y and groups)
_SPLITTERS = frozenset({
    "KFold", "StratifiedKFold", "GroupKFold", "StratifiedGroupKFold", "LeaveOneOut", "LeavePOut",
    "LeaveOneGroupOut", "LeavePGroupsOut", "PredefinedSplit", "TimeSeriesSplit", "ShuffleSplit",
    "StratifiedShuffleSplit", "GroupShuffleSplit", "RepeatedKFold", "RepeatedStratifiedKFold"})
_ALWAYS_RANDOM = frozenset({"ShuffleSplit", "StratifiedShuffleSplit", "GroupShuffleSplit",
                            "RepeatedKFold", "RepeatedStratifiedKFold"})
_SCALARS = (bool, int, float, str, type(None))


class SkipDoneOff(TrackingWarning):
    """``skip_done=True`` cannot apply to this fit (a shuffling cv without a fixed
    ``random_state``, a callable scorer, halving, live recording off): every
    candidate runs, and is recorded as usual."""


def canonical(value: Any) -> str:
    """One text per JSON value: keys sorted, ints and floats kept apart."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def evaluation_of(search_cv: Any, attrs: Mapping[str, Any], fit_params: Mapping[str, Any]) -> dict:
    """What a fold result of this fit depends on, besides the candidate's params."""
    return {"estimator": attrs["estimator"], "estimator_params": estimator_params(search_cv.estimator),
            "cv": attrs["cv"], "scoring": attrs["scoring"],
            "dataset_fingerprint": attrs["dataset_fingerprint"],
            "fit_params": {str(k): _fit_param(v) for k, v in sorted(fit_params.items())}}


def _fit_param(v):
    if hasattr(v, "shape") or isinstance(v, (list, tuple)):
        return _array_fingerprint(v)
    return jsonable(v)


def not_reusable(search_cv: Any, evaluation: Mapping[str, Any]) -> str | None:
    """Why this fit's folds cannot be matched with recorded ones, or None."""
    cv = evaluation["cv"]
    kind = cv.get("type")
    if kind not in ("int", "default"):
        if kind not in _SPLITTERS:
            return (f"cv {kind} is not a scikit-learn splitter known to be deterministic "
                    "(pass an int or a KFold-like splitter)")
        shuffles = kind in _ALWAYS_RANDOM or cv.get("shuffle") is True
        rs = cv.get("random_state")
        if shuffles and not (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
            return (f"cv {kind} shuffles with random_state={rs!r}: its folds differ from run to run "
                    "(fix an int random_state)")
    scoring = search_cv.scoring
    names = list(scoring) if isinstance(scoring, (dict, list, tuple, set)) else [scoring]
    if not all(s is None or isinstance(s, str) for s in names) or isinstance(scoring, dict) and not all(
            isinstance(v, str) for v in scoring.values()):
        return f"scoring {evaluation['scoring']!r} is not a scorer name (a callable cannot be matched)"
    return None


def candidate_key(fixed: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    """The effective estimator params of a candidate as canonical JSON; None if a
    candidate value is not a plain scalar (an estimator, a callable: not matched)."""
    values = {str(k): jsonable(v) for k, v in params.items()}
    if not all(isinstance(v, _SCALARS) for v in values.values()):
        return None
    return canonical({**fixed, **values})


def _context(evaluation: Mapping[str, Any]) -> str:
    return canonical({k: v for k, v in evaluation.items() if k != "estimator_params"})


def recorded_folds(store: Any, evaluation: Mapping[str, Any], metrics: list[str],
                   train: bool) -> dict[str, dict[int, dict]]:
    """``{candidate_key: {fold: result}}`` of the folds recorded under ``evaluation``
    (originals only, not reused copies), each with every metric of ``metrics`` (and
    their train scores when ``train``)."""
    context = _context(evaluation)
    owners: dict[str, tuple[str, str]] = {}   # trial_id -> (search_id, candidate key)
    for sid, payload in candidate_lists(store, evaluation["dataset_fingerprint"]["X"]["sha256"]):
        ev = payload.get("evaluated") or {}
        if _context(ev) != context:
            continue
        fixed = ev.get("estimator_params") or {}
        for trial_id, params in payload.get("candidates") or []:
            key = candidate_key(fixed, params)
            if key is not None:
                owners[trial_id] = (sid, key)
    if not owners:
        return {}
    folds = original_folds(store, sorted({s for s, _ in owners.values()}), sorted(owners))
    by_trial: dict[tuple[str, int], dict] = {}
    for trial_id, fold, split, metric, value, payload in folds:
        entry = by_trial.setdefault((trial_id, int(fold)), {"test": {}, "train": {}, "payload": None})
        part = entry["test" if split == "fold" else "train"]
        part.setdefault(metric, value)
        if split == "fold" and entry["payload"] is None:
            entry["payload"] = payload
    out: dict[str, dict[int, dict]] = {}
    for (trial_id, fold), entry in by_trial.items():
        if not all(m in entry["test"] for m in metrics) or (train and not all(m in entry["train"] for m in metrics)):
            continue
        sid, key = owners[trial_id]
        payload = entry["payload"] or {}
        out.setdefault(key, {}).setdefault(fold, {
            "test": {m: entry["test"][m] for m in metrics},
            "train": {m: entry["train"][m] for m in metrics} if train else None,
            "fit_time": payload.get("fit_time", 0.0), "score_time": payload.get("score_time", 0.0),
            "source": {"search_id": sid, "trial_id": trial_id}})
    return out


_TABLES: dict[str, dict] = {}   # spool path -> its table, once per process


class Reuser:
    """Stands in for sklearn's ``_fit_and_score``: a (candidate, fold) with a recorded
    result returns it, anything else is fitted. Pickles as its spool file's path."""

    def __init__(self, fit_and_score: Any, path: str, table: dict[str, dict], multimetric: bool) -> None:
        self.fit_and_score = fit_and_score
        self.path = path
        self.multimetric = multimetric
        _TABLES[path] = table

    def _table(self) -> dict:
        table = _TABLES.get(self.path)
        if table is None:
            with open(self.path) as f:
                table = _TABLES[self.path] = json.load(f)
        return table

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        cand = (kwargs.get("candidate_progress") or (None,))[0]
        fold = (kwargs.get("split_progress") or (None,))[0]
        entry = self._table().get(f"{cand}/{fold}")
        # the candidate's params checked again, in the process that would fit it
        if entry is None or candidate_key(entry["fixed"], kwargs.get("parameters") or {}) != entry["key"]:
            return self.fit_and_score(*args, **kwargs)
        done = entry["done"]

        def scores(part):
            return dict(part) if self.multimetric else next(iter(part.values()))
        result: dict[str, Any] = {"fit_error": None, "test_scores": scores(done["test"])}
        if kwargs.get("return_train_score"):
            result["train_scores"] = scores(done["train"])
        if kwargs.get("return_n_test_samples"):
            result["n_test_samples"] = len(kwargs["test"])
        if kwargs.get("return_times"):
            result["fit_time"], result["score_time"] = done["fit_time"], done["score_time"]
        if kwargs.get("return_parameters"):
            result["parameters"] = kwargs.get("parameters")
        result[REUSED_KEY] = done["source"]
        return result


class ReusingRun(Run):
    """A :class:`Run` that announces its candidates (see the module doc) and, with
    ``skip_done``, has the folds recorded before returned instead of fitted."""

    def __init__(self, search_cv: Any, hp_search: Any, metric: str, evaluation: dict, skip_done: bool) -> None:
        super().__init__(search_cv, hp_search, metric=metric, value_key=None, halving=False)
        self.evaluation = evaluation
        reason = not_reusable(search_cv, evaluation)
        self.announce = reason is None
        self.skip_done = skip_done and reason is None
        self.reused: dict[int, list] = {}     # trial index -> the sources of its reused folds
        self.n_reused_folds = 0
        self.spools: list[str] = []
        if skip_done and reason is not None:
            _off(f"{reason}; every candidate runs")

    def start(self) -> Callable[[], None]:
        remove = super().start()
        if self.skip_done and not self.live:
            _off("live recording is off, and with it the stand-in for fitted folds; every candidate runs")

        def undo():
            remove()
            self.cleanup()
        return undo

    def _dispatch(self, candidate_params, more_results, fit_and_score):
        table = self._reusable(candidate_params) if self.skip_done and fit_and_score is not None else {}
        if table:
            fd, path = tempfile.mkstemp(prefix="hptrack-reuse-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(table, f)
            self.spools.append(path)
            fit_and_score = Reuser(fit_and_score, path, table, multimetric=self._multimetric())
        recorder = super()._dispatch(candidate_params, more_results, fit_and_score)
        indices = self.last_call
        for slot, folds in self._by_candidate(table).items():
            self.reused[indices[slot]] = folds
        if self.announce:
            fixed = self.evaluation["estimator_params"]
            listed = [[self.trials[i].trial_id, {str(k): jsonable(v) for k, v in p.items()}]
                      for i, p in zip(indices, candidate_params) if candidate_key(fixed, p) is not None]
            self.hp.annotate(None, evaluated=self.evaluation, candidates=listed)
            self.hp.writer.flush()
        return recorder

    def _multimetric(self) -> bool:
        return isinstance(self.cv.scoring, (dict, list, tuple, set))

    def _reusable(self, candidate_params) -> dict[str, dict]:
        """``"<candidate>/<fold>" -> recorded result`` for this call's candidates."""
        scoring = self.cv.scoring
        metrics = [str(m) for m in scoring] if self._multimetric() else [self.metric]
        train = bool(getattr(self.cv, "return_train_score", False))
        found = recorded_folds(self.hp.writer.store.root, self.evaluation, metrics, train)
        fixed = self.evaluation["estimator_params"]
        n_splits = int(self.cv.n_splits_)
        table = {}
        for c, params in enumerate(candidate_params):
            key = candidate_key(fixed, params)
            for fold, done in (found.get(key) or {}).items() if key is not None else ():
                if 0 <= fold < n_splits:
                    table[f"{c}/{fold}"] = {"key": key, "fixed": fixed, "done": done}
        return table

    @staticmethod
    def _by_candidate(table) -> dict[int, list]:
        out: dict[int, list] = {}
        for slot, entry in table.items():
            out.setdefault(int(slot.split("/")[0]), []).append(entry["done"]["source"])
        return out

    def _started(self, i, ts=None):
        fresh = isinstance(self.trials[i], _Pending)
        t = super()._started(i, ts)
        sources = self.reused.get(i)
        if fresh and sources:
            self.n_reused_folds += len(sources)
            if len(sources) >= int(self.cv.n_splits_):
                t.set_params({}, ts=ts, reused_from=sources[0], reused_folds=len(sources))
            else:
                t.set_params({}, ts=ts, reused_folds=len(sources))
        return t

    def cleanup(self) -> None:
        for path in self.spools:
            _TABLES.pop(path, None)
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.spools = []


def reused_rows(run: Run) -> dict[int, dict]:
    """``cv_results_`` row -> the source of its folds, for the rows with no fold fitted now."""
    reused = getattr(run, "reused", {})
    n_splits = int(getattr(run.cv, "n_splits_", 0) or 0)
    return {r: reused[i][0] for r, i in enumerate(run.row_trial) if len(reused.get(i, ())) >= n_splits > 0}


def _off(why: str) -> None:
    warnings.warn(f"hptrack.sklearn: skip_done=True does not apply: {why}", SkipDoneOff, stacklevel=4)


def run_for(search_cv: Any, hp_search: Any, metric: str, strategy: str, attrs: Mapping[str, Any],
            fit_params: Mapping[str, Any], skip_done: bool) -> Run:
    """The recording of one fit: halving as before; any other search announces its
    candidates, and with ``skip_done`` reuses what was recorded."""
    if strategy == "halving":
        if skip_done:
            _off("successive halving fits its folds on subsamples; every candidate runs")
        return Run(search_cv, hp_search, metric=metric, value_key=None, halving=True)
    return ReusingRun(search_cv, hp_search, metric, evaluation_of(search_cv, attrs, fit_params), skip_done)
