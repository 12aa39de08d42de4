"""The fast paths of ``hptrack report`` (issue #16) against the slow obvious computations
they replace, on randomised inputs: every one must give the same answer, bit for bit."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import hptrack
from hptrack.analysis import stats as S
from hptrack.analysis.budget import BASES

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _same(a, b) -> bool:
    """Equal as floats, NaN equal to NaN (bit-level equality for the numbers that are not NaN)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# a k x B matrix whose values often tie (a few levels), sometimes NaN
_levels = st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 1e-300, np.nan])
_columns = st.integers(2, 7).flatmap(lambda k: st.lists(
    st.lists(st.one_of(_levels, st.floats(-1e6, 1e6)), min_size=k, max_size=k), min_size=1, max_size=12))


def _scipy_taus(y):
    """The slow obvious computation: one scipy call per column."""
    ref = -np.arange(y.shape[0], dtype=float)
    return np.array([sps.kendalltau(ref, y[:, b]).statistic for b in range(y.shape[1])])


@FAST
@given(_columns)
def test_kendall_tau_of_order_is_scipys_kendalltau_per_column(cols):
    y = np.array(cols, float).T                        # k x B
    assert _same(S.kendall_tau_of_order(y), _scipy_taus(y))


@FAST
@given(st.integers(1, 8), st.integers(2, 6), st.integers(1, 200), st.integers(0, 3), st.integers(1, 6),
       st.booleans())
def test_rank_stability_equals_the_per_resample_scipy_loop(c, n, n_boot, seed, top_k, ties):
    rng = np.random.default_rng(seed + 10 * c + 100 * n)
    m = rng.choice([0.7, 0.8, 0.9], size=(c, n)) if ties else rng.normal(0.8, 0.05, size=(c, n))
    fast = S.rank_stability(m, n_boot=n_boot, seed=seed, top_k=top_k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "kendall_tau_of_order", _scipy_taus)
        slow = S.rank_stability(m, n_boot=n_boot, seed=seed, top_k=top_k)
    assert _same(fast, slow)


def _bbc_reference(s, indices):
    """BBC-CV's out-of-bag scores the obvious way: one resample at a time."""
    oob = []
    for idx in indices:
        out = np.ones(s.shape[1], dtype=bool)
        out[idx] = False
        if out.any():
            oob.append(s[int(np.argmax(s[:, idx].mean(axis=1))), out].mean())
    return oob


@FAST
@given(st.integers(1, 9), st.integers(1, 12), st.integers(1, 150), st.integers(0, 3), st.booleans())
def test_bbc_cv_equals_the_per_resample_loop(c, n, n_boot, seed, ties):
    rng = np.random.default_rng(seed + 10 * c + 100 * n)
    m = rng.choice([0.7, 0.8, 0.9], size=(c, n)) if ties else rng.normal(0.8, 0.05, size=(c, n))
    indices = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    oob = _bbc_reference(m, indices)
    if not oob:
        with pytest.raises(ValueError, match="nothing out of bag"):
            S.bbc_cv(m, n_boot=n_boot, seed=seed)
        return
    r = S.bbc_cv(m, n_boot=n_boot, seed=seed)
    assert (r.estimate, r.n_boot) == (float(np.mean(oob)), len(oob))
    assert r.ci == tuple(np.quantile(oob, [0.025, 0.975]).tolist())


# --- the report: batched reads of a frozen snapshot vs per-search reads of the live views ----------
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
_KINDS = ("float", "log", "int", "cat", "bool")


@st.composite
def plans(draw):
    """A store as the report sees them: searches of a few tasks, every param kind (some
    missing in some trials), trials in every state, reports with a learning rate, fold
    scores (repeated folds, sizes or none, two metrics), test scores, early stops,
    multi-objective searches; and the as-of cut (None: now)."""
    searches = []
    for i in range(draw(st.sampled_from([3, 2, 4, 1]))):
        trials = []
        folds = draw(st.sampled_from([0, 3, 4]))   # sklearn-like searches score every trial's folds
        for _ in range(draw(st.sampled_from([5, 8, 3, 10, 1, 0]))):
            trials.append({
                "params": {k: draw(st.integers(0, 3)) for k in draw(st.sets(st.sampled_from(_KINDS), max_size=4))},
                "state": draw(st.sampled_from(["complete"] * 4 + ["failed", "pruned", "running"])),
                "value": draw(st.sampled_from([0.5, 0.6, 0.7])) + draw(st.integers(0, 2)) / 100,
                "reports": draw(st.integers(0, 3)), "lr": draw(st.booleans()),
                "folds": folds - (folds > 0 and draw(st.integers(0, 9)) == 0), "sizes": draw(st.booleans()),
                "repeat_fold": draw(st.booleans()), "other_metric": draw(st.booleans()),
                "test": draw(st.booleans()), "stop": draw(st.booleans())})
        searches.append({"name": f"s{i}", "strategy": draw(st.sampled_from(["grid", "random", "tpe", "halving"])),
                         "direction": draw(st.sampled_from(["maximize"] * 3 + ["minimize"])),
                         "task": draw(st.sampled_from(["t1", "t1", "t2", None])), "seed": draw(st.integers(0, 2)),
                         "multi": draw(st.integers(0, 7)) == 0, "trials": trials})
    return {"searches": searches, "cut": draw(st.one_of(st.floats(0, 1), st.none())),
            "max_drawn": draw(st.sampled_from([3, 1000]))}


def _param(kind, k):
    return {"float": k / 3 - 0.5, "log": 10.0 ** -k, "int": k, "cat": "abcd"[k], "bool": k % 2 == 0}[kind]


def write_plan(store, plan):
    """Write ``plan`` with the public write API; every event at its own time. Returns the times."""
    clock = iter(T0 + timedelta(seconds=k) for k in range(10 ** 6))
    times = []

    def ts():
        times.append(next(clock))
        return times[-1]

    for s in plan["searches"]:
        attrs = {"task": s["task"]} if s["task"] else {}
        if s["multi"]:
            attrs["directions"] = [s["direction"], "minimize"]
        h = hptrack.search(s["name"], strategy=s["strategy"], direction=s["direction"], metric="acc", store=store,
                           seed=s["seed"], durability="batch", quiet=True, ts=ts(),
                           space={"log": {"low": 1e-3, "high": 1.0, "log": True}}, **attrs)
        for tr in s["trials"]:
            t = h.trial({f"p_{k}": _param(k, v) for k, v in tr["params"].items()}, ts=ts())
            for step in range(tr["reports"]):
                t.report(step, tr["value"] - 0.01 * step, ts=ts(), **({"lr": 0.1 / (step + 1)} if tr["lr"] else {}))
            for k in range(tr["folds"]):
                for metric in ["acc", "f1"] if tr["other_metric"] else ["acc"]:
                    sizes = {"n_train": 90, "n_test": 10 + k} if tr["sizes"] else {}
                    for _ in range(2 if tr["repeat_fold"] and k == 0 else 1):
                        t.score(tr["value"] + 0.01 * (k % 2), split="fold", fold=k, metric=metric, ts=ts(), **sizes)
            if tr["stop"] and tr["reports"]:
                h.writer.write({"type": "annotation", "search_id": h.search_id, "trial_id": t.trial_id,
                                "trial_number": t.number, "step": tr["reports"] - 1, "ts": ts(),
                                "payload": {"early_stopping": {"stop_step": tr["reports"] - 1, "best_step": 0,
                                                               "best_score": tr["value"], "restored": True}}})
            if tr["test"]:
                t.score(tr["value"] - 0.02, split="test", metric="acc", ts=ts())
            if tr["state"] == "complete":
                if s["multi"]:
                    t.complete(values=[tr["value"], 1 - tr["value"]], ts=ts())
                else:
                    t.complete(tr["value"], ts=ts())
            elif tr["state"] == "failed":
                t.fail("boom", ts=ts())
            elif tr["state"] == "pruned":
                t.prune(max(tr["reports"] - 1, 0), ts=ts())
        h.writer.flush()
    return times


def _canon(x):
    """A comparable form of report parts: frames as (columns, dtypes, rows), dataclasses as
    dicts, NaN equal to NaN, -0.0 told from 0.0."""
    import dataclasses
    import math

    import polars as pl

    if isinstance(x, pl.DataFrame):
        return ("frame", tuple(x.columns), tuple(map(str, x.dtypes)), _canon(x.rows()))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _canon({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
    if isinstance(x, dict):
        return ("dict", tuple((k, _canon(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return ("list", tuple(_canon(v) for v in x))
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else (x, math.copysign(1.0, x))
    if isinstance(x, np.ndarray):
        return _canon(x.tolist())
    return x


def _reference_series(con, sid, direction, drawn, top_ids):
    """The plot series of one search, each in its own query (the builder before the batch read)."""
    keep, params = "", [sid]
    if drawn is not None:
        keep, params = " AND r.trial_id IN (SELECT unnest(?::VARCHAR[]))", [sid, drawn]
    reports = con.sql("SELECT t.trial_number, t.state, r.step, r.value FROM reports r JOIN trials t "
                      f"USING (search_id, trial_id) WHERE r.search_id = ?{keep} ORDER BY t.trial_number, r.step, r.ts",
                      params=params).pl()
    folds = None
    if top_ids:
        folds = con.sql("SELECT t.trial_number, s.fold, s.value, s.metric FROM scores s JOIN trials t "
                        "USING (search_id, trial_id) WHERE s.search_id = ? AND s.split = 'fold' AND s.trial_id IN "
                        "(SELECT unnest(?::VARCHAR[])) ORDER BY t.value "
                        f"{'DESC' if direction == 'maximize' else 'ASC'}, s.fold, t.trial_number, s.ts",
                        params=[sid, top_ids]).pl()
    tests = con.sql("SELECT t.trial_number, t.value, last(s.value ORDER BY s.ts) AS test FROM scores s "
                    "JOIN trials t USING (search_id, trial_id) WHERE s.search_id = ? AND s.split = 'test' "
                    "GROUP BY ALL ORDER BY t.trial_number", params=[sid]).pl()
    return reports, folds, tests


# Each store is written and reported on whole: a bounded run here, a long one in `make test-slow`.
HARNESS = {"deadline": None, "derandomize": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=10, **HARNESS)
@given(plans())
def test_report_reads_equal_the_per_search_reads_of_the_live_views(plan):
    check_report_reads(plan)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=300, **HARNESS)
@given(plans())
def test_report_reads_equal_the_per_search_reads_of_the_live_views_long(plan):
    check_report_reads(plan)


def check_report_reads(plan):
    import polars as pl

    from hptrack.analysis.comparison import compare
    from hptrack.analysis.overfitting import diagnose
    from hptrack.analysis.report import builder
    from hptrack.analysis.source import search_space
    from hptrack.training import summary

    root = tempfile.mkdtemp()
    try:
        store = os.path.join(root, "store")
        times = write_plan(store, plan)
        as_of = None if plan["cut"] is None else times[int(plan["cut"] * (len(times) - 1))]
        spaces = {}
        with pytest.MonkeyPatch.context() as mp:
            # importance is fitted on what the report read (compared below: the trials, the space)
            mp.setattr(builder, "_importances", lambda reports, *_: spaces.update(
                {sr.search_id: sr.space for sr in reports}))
            mp.setattr(builder, "MAX_DRAWN", plan["max_drawn"])
            rep = builder.build(store=store, as_of=as_of, progress=False)
        live = hptrack.connect(store, as_of=as_of)
        n_events = live.sql("SELECT count(*) FROM events").fetchall()[0][0]
        assert rep.n_events == n_events
        for sr in rep.searches:
            sid = sr.search_id
            assert _canon(sr.trials) == _canon(hptrack.trials(sid, con=live))
            assert _canon(sr.diagnosis) == _canon(diagnose(sid, con=live))
            drawn = None if sr.drawn is None else sr.drawn.to_list()
            t = summary(sid, con=live, trial_ids=drawn)
            assert _canon(sr.training) == _canon(None if t.empty else t)
            assert spaces[sid] == search_space(live, sid)
            done = sr.trials.filter((pl.col("state") == "complete") & pl.col("value").is_not_null())
            top = done.sort("value", descending=sr.direction == "maximize").head(builder.TOP_CONFIGS)
            reports, folds, tests = _reference_series(live, sid, sr.direction, drawn, top["trial_id"].to_list())
            assert _canon(sr.reports) == _canon(reports)
            assert _canon(sr.tests) == _canon(tests)
            if folds is not None and folds.height and folds["metric"].n_unique() > 1:
                folds = folds.filter(pl.col("metric") == "acc")
            assert _canon(sr.folds) == _canon(folds)
        event(f"as of: {'now' if as_of is None else 'a past time'}")
        event(f"fold diagnostics: {any(s.diagnosis.n_tied is not None for s in rep.searches)}")
        event(f"drawn: {any(s.drawn is not None for s in rep.searches)}")
        event(f"comparisons: {sum(g.comparison is not None for g in rep.groups)}")
        for g in rep.groups:
            if g.comparison is not None:
                ids = [s.search_id for s in rep.searches if s.name in g.searches and s.best is not None]
                assert _canon(g.comparison) == _canon(compare(ids, con=live))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@st.composite
def fitted_plans(draw):
    """Searches big enough to fit (8-40 trials, random float/log/int/categorical params,
    some failed, some with two objectives), a few too small to, and a search whose only
    param never varies."""
    searches = []
    for i in range(draw(st.integers(2, 5))):
        kinds = draw(st.sets(st.sampled_from(_KINDS[:4]), min_size=1))
        const = draw(st.integers(0, 5)) == 0
        trials = [{"params": {k: (0 if const else draw(st.integers(0, 3))) for k in kinds},
                   "state": draw(st.sampled_from(["complete"] * 6 + ["failed"])),
                   "value": draw(st.floats(0, 1)), "reports": 0, "lr": False, "folds": 0, "sizes": False,
                   "repeat_fold": False, "other_metric": False, "test": False, "stop": False}
                  for _ in range(draw(st.sampled_from([40, 12, 25, 5])))]
        # a multi-objective search now and then: one fit per objective
        searches.append({"name": f"s{i}", "strategy": "random", "task": None, "seed": 0,
                         "multi": draw(st.integers(0, 3)) == 0,
                         "direction": draw(st.sampled_from(["maximize", "minimize"])), "trials": trials})
    return {"searches": searches}


_KEPT = ("importance", "marginals", "importance_sample", "importance_stability", "importance_note", "per_objective")


@settings(max_examples=3, **HARNESS)
@given(fitted_plans(), st.integers(0, 3))
def test_report_importances_fitted_in_worker_processes_equal_the_fits_in_this_process(plan, seed):
    check_fits_in_workers(plan, seed)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=40, **HARNESS)
@given(fitted_plans(), st.integers(0, 3))
def test_report_importances_fitted_in_worker_processes_equal_the_fits_in_this_process_long(plan, seed):
    check_fits_in_workers(plan, seed)


def check_fits_in_workers(plan, seed):
    from hptrack.analysis.report import builder

    root = tempfile.mkdtemp()
    try:
        store = os.path.join(root, "store")
        write_plan(store, plan)
        here = builder.build(store=store, progress=False, seed=seed, jobs=1)
        there = builder.build(store=store, progress=False, seed=seed, jobs=2, as_of=here.as_of)
        fitted = 0
        for a, b in zip(here.searches, there.searches, strict=True):
            assert _canon([getattr(a, k) for k in _KEPT]) == _canon([getattr(b, k) for k in _KEPT])
            fitted += a.importance is not None or bool(a.per_objective)
        event(f"searches fitted: {fitted}")
    finally:
        shutil.rmtree(root, ignore_errors=True)




def _importances(rep):
    return [_canon([getattr(sr, k) for k in _KEPT]) for sr in rep.searches]


def _counting_fits(mp):
    """Count the importance fits the report runs in this process (jobs=1)."""
    from hptrack.analysis.report import builder

    calls = []
    fit = builder._fit_importance
    mp.setattr(builder, "_fit_importance", lambda args: calls.append(1) or fit(args))
    return calls


@settings(max_examples=2, **HARNESS)
@given(fitted_plans(), st.integers(0, 2), st.data())
def test_report_importances_read_back_from_the_cache_equal_fresh_fits(plan, seed, data):
    check_cache_reads(plan, seed, data)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=40, **HARNESS)
@given(fitted_plans(), st.integers(0, 2), st.data())
def test_report_importances_read_back_from_the_cache_equal_fresh_fits_long(plan, seed, data):
    check_cache_reads(plan, seed, data)


def check_cache_reads(plan, seed, data):
    from hptrack.analysis.report import builder

    root = tempfile.mkdtemp()
    try:
        store = os.path.join(root, "store")
        write_plan(store, plan)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HPTRACK_CACHE_DIR", os.path.join(root, "cache"))
            fresh = builder.build(store=store, progress=False, seed=seed, jobs=1, cache=False)
            calls = _counting_fits(mp)
            cold = builder.build(store=store, progress=False, seed=seed, jobs=1, as_of=fresh.as_of)
            fitted = len(calls)
            warm = builder.build(store=store, progress=False, seed=seed, jobs=1, as_of=fresh.as_of)
            assert len(calls) == fitted, "a warm report fitted again"
            assert _importances(fresh) == _importances(cold) == _importances(warm)
            event(f"searches fitted: {fitted}")
            # one more trial in one search: that search, and only it, is fitted again (once
            # per objective)
            changed = data.draw(st.sampled_from(plan["searches"]))
            h = hptrack.search(changed["name"], store=store, quiet=True)
            t = h.trial({"p_float": 0.125}, ts=T0 + timedelta(days=1))
            t.complete(values=[0.5, 0.5] if changed["multi"] else [0.5], ts=T0 + timedelta(days=1))
            h.writer.flush()
            calls.clear()
            after = builder.build(store=store, progress=False, seed=seed, jobs=1)
            assert len(calls) <= (2 if changed["multi"] else 1)
            assert _importances(after) == _importances(
                builder.build(store=store, progress=False, seed=seed, jobs=1, as_of=after.as_of, cache=False))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _damage(entry, how):
    """Damage a cache entry (a folder of Arrow files and meta.json) the way a crash, a
    full disk or a stranger could."""
    meta = os.path.join(entry, "meta.json")
    arrow = os.path.join(entry, "importance.arrow")
    if how == "truncated arrow":
        with open(arrow, "r+b") as f:
            f.truncate(os.path.getsize(arrow) // 2)
    elif how == "garbage arrow":
        with open(arrow, "wb") as f:
            f.write(os.urandom(300))
    elif how == "missing marginal":
        os.remove(os.path.join(entry, "marginal-0.arrow"))
    elif how == "meta not json":
        with open(meta, "w") as f:
            f.write("{not json")
    elif how == "meta of the wrong types":
        with open(meta, "w") as f:
            f.write('{"marginals": "lr", "sample": [1.5, "x"], "stability": 3, "note": []}')
    elif how == "meta a folder":
        os.remove(meta)
        os.mkdir(meta)
    elif how == "entry a file":
        shutil.rmtree(entry)
        with open(entry, "w") as f:
            f.write("x")
    elif how == "entry a link":
        shutil.rmtree(entry)
        os.symlink("/", entry)


@pytest.mark.parametrize("how", ["truncated arrow", "garbage arrow", "missing marginal", "meta not json",
                                 "meta of the wrong types", "meta a folder", "entry a file",
                                 "entry a link"])
def test_a_damaged_cache_entry_is_a_miss_and_is_written_again(tmp_path, monkeypatch, how):
    from hptrack.analysis.report import builder, fit_cache

    plan = {"searches": [{"name": "s", "strategy": "random", "task": None, "seed": 0, "multi": False,
                          "direction": "maximize",
                          "trials": [{"params": {"float": k % 4, "int": k % 3}, "state": "complete",
                                      "value": (k % 4) / 4 + (k % 3) / 10, "reports": 0, "lr": False, "folds": 0,
                                      "sizes": False, "repeat_fold": False, "other_metric": False,
                                      "test": False, "stop": False} for k in range(20)]}]}
    store = str(tmp_path / "store")
    write_plan(store, plan)
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "cache"))
    fresh = builder.build(store=store, progress=False, jobs=1, cache=False)
    builder.build(store=store, progress=False, jobs=1, as_of=fresh.as_of)
    [name] = os.listdir(fit_cache.folder())
    _damage(os.path.join(fit_cache.folder(), name), how)
    calls = _counting_fits(monkeypatch)
    again = builder.build(store=store, progress=False, jobs=1, as_of=fresh.as_of)
    assert calls and _importances(again) == _importances(fresh)
    assert fit_cache.load(name) is not None  # written whole again


def test_a_cache_that_cannot_be_written_leaves_the_report_whole(tmp_path, monkeypatch):
    from hptrack.analysis.report import builder

    plan = {"searches": [{"name": "s", "strategy": "random", "task": None, "seed": 0, "multi": False,
                          "direction": "minimize",
                          "trials": [{"params": {"log": k % 4}, "state": "complete", "value": (k % 4) / 3,
                                      "reports": 0, "lr": False, "folds": 0, "sizes": False,
                                      "repeat_fold": False, "other_metric": False, "test": False,
                                      "stop": False} for k in range(12)]}]}
    store = str(tmp_path / "store")
    write_plan(store, plan)
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # no folder can be made there
    fresh = builder.build(store=store, progress=False, jobs=1, cache=False)
    for _ in range(2):
        rep = builder.build(store=store, progress=False, jobs=1, as_of=fresh.as_of)
        assert rep.searches[0].importance is not None
        assert _importances(rep) == _importances(fresh)


def test_two_reports_racing_for_the_same_cache_entries_both_finish_and_leave_them_whole(tmp_path, monkeypatch):
    import subprocess
    import sys

    from hptrack.analysis.report import fit_cache

    plan = {"searches": [{"name": f"s{i}", "strategy": "random", "task": None, "seed": 0, "multi": False,
                          "direction": "maximize",
                          "trials": [{"params": {"float": (k * (i + 1)) % 4, "cat": k % 3}, "state": "complete",
                                      "value": ((k * (i + 1)) % 4) / 4 + (k % 3) / 10, "reports": 0,
                                      "lr": False, "folds": 0, "sizes": False, "repeat_fold": False,
                                      "other_metric": False, "test": False, "stop": False}
                                     for k in range(15)]} for i in range(6)]}
    store = str(tmp_path / "store")
    write_plan(store, plan)
    env = {**os.environ, "HPTRACK_CACHE_DIR": str(tmp_path / "cache")}
    as_of = "2030-01-01T00:00:00Z"
    cmd = [sys.executable, "-m", "hptrack.cli", "--store", store, "report", "--jobs", "1", "--as-of", as_of]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    alone = subprocess.run([*cmd, "--no-cache"], env=env, capture_output=True, text=True, timeout=300)
    assert alone.stdout == outs[0][0]
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "cache"))
    names = os.listdir(fit_cache.folder())   # no temporary folder left behind either
    assert len(names) == 6 and all(fit_cache.load(n) is not None for n in names), names


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 60), st.integers(1, 5), st.integers(1, 4), st.integers(2, 15), st.integers(0, 5),
       st.booleans())
def test_fanova_fit_unchecked_and_threaded_equals_the_checked_serial_fit(n, d, members, trees, seed, grid):
    import contextlib

    from hptrack.analysis import fanova

    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, d)) / 3 if grid else rng.random((n, d))   # grid: ties in every column
    y = X[:, 0] + X[:, -1] ** 2 + rng.normal(0, 0.01, n)
    points = fanova.qmc_points(d, seed, log2_n=8)

    def fit():
        ens = fanova.fit(X, y, seed=seed, n_members=members, n_trees=trees)
        return [ens.lo, ens.hi, ens.weight, ens.member, *fanova.total_variance(ens, points)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fanova, "THREADS_FROM", 0)        # members fitted in threads even when small
        fast = fit()
        mp.setattr(fanova, "THREADS_FROM", 10 ** 9)  # the obvious way: one by one, every check made
        mp.setattr(fanova, "_unchecked", contextlib.nullcontext)
        slow = fit()
    assert all(_same(a, b) for a, b in zip(fast, slow))


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 60), st.integers(1, 4), st.integers(1, 30), st.integers(1, 5), st.integers(0, 10 ** 6))
def test_fanova_boost_fits_what_sklearns_gradient_boosting_fits(n, d, trees, leaf, seed):
    """fanova.boost is sklearn's least-squares GradientBoostingRegressor written out: without a
    subsample both fit the same values on the training rows (elsewhere they may differ where two
    features split the rows equally well and each picked another one)."""
    from sklearn.ensemble import GradientBoostingRegressor

    from hptrack.analysis import fanova

    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(np.float32)
    y = np.sin(6 * X[:, 0]) + X[:, -1] + rng.normal(0, 0.1, n)
    start, fitted = fanova.boost(X, y, n_trees=trees, min_samples_leaf=leaf, seed=seed)
    ref = GradientBoostingRegressor(n_estimators=trees, max_depth=4, learning_rate=fanova.BOOSTING_RATE,
                                    min_samples_leaf=leaf, random_state=seed).fit(X, y)
    assert np.allclose(fanova._predict(start, fitted, X), ref.predict(X), rtol=0, atol=1e-9)


def _reference_boxes(tree, d):
    """The obvious walk: down every path from the root, narrowing the box at each split."""
    t = tree.tree_
    out = []

    def walk(node, lo, hi):
        if t.children_left[node] < 0:
            out.append((lo, hi, t.value[node].ravel()[0]))
            return
        f, thr = t.feature[node], min(max(t.threshold[node], 0.0), 1.0)
        walk(t.children_left[node], lo, np.where(np.arange(d) == f, np.minimum(hi, thr), hi))
        walk(t.children_right[node], np.where(np.arange(d) == f, np.maximum(lo, thr), lo), hi)

    walk(0, np.zeros(d), np.ones(d))
    return out


@FAST
@given(st.integers(2, 80), st.integers(1, 5), st.integers(1, 6), st.integers(1, 8), st.integers(0, 10 ** 6))
def test_fanova_forest_boxes_are_each_trees_boxes_from_the_obvious_walk(n, d, n_trees, depth, seed):
    from sklearn.tree import DecisionTreeRegressor

    from hptrack.analysis import fanova

    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    trees = [DecisionTreeRegressor(max_depth=int(rng.integers(1, depth + 1)), random_state=i)
             .fit(X, np.cos(5 * X[:, 0]) + rng.normal(0, 1, n)) for i in range(n_trees)]
    lo, hi, value, tree = fanova.forest_boxes(trees, d)
    # leaves in tree order, and within a tree in node order (the walk's leaves sorted by node)
    ref = []
    for i, t in enumerate(trees):
        boxes = _reference_boxes(t, d)
        leaves = np.flatnonzero(t.tree_.children_left < 0)
        order = np.argsort(np.argsort(leaves))  # the walk visits leaves in ascending node id
        ref += [(i, *boxes[k]) for k in order]
    assert tree.tolist() == [r[0] for r in ref]
    assert _same(lo, np.array([r[1] for r in ref]).reshape(-1, d))
    assert _same(hi, np.array([r[2] for r in ref]).reshape(-1, d))
    assert _same(value, [r[3] for r in ref])


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(20, 300), st.integers(1, 6), st.integers(0, 10 ** 6), st.booleans())
def test_fanova_small_fits_few_variance_points_give_the_fractions_of_many(n, d, seed, interacting):
    """Below FEW_POINTS_BELOW trials the total variance is integrated on 2^12 points: the main-effect
    fractions must stay within 0.01 of those on 2^16 points."""
    from hptrack.analysis import fanova

    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = np.sin(2 * np.pi * X[:, 0]) + (X[:, -1] * X[:, 0] * 3 if interacting else X[:, -1]) + rng.normal(0, 0.3, n)
    ens = fanova.fit(X, y, seed=seed, n_members=4, n_trees=60)
    main = fanova.main_variances(ens)[0]
    few = main / fanova.total_variance(ens, fanova.variance_points(d, seed, n))[0]
    many = main / fanova.total_variance(ens, fanova.qmc_points(d, seed, 16))[0]
    assert len(fanova.variance_points(d, seed, n)) == 2 ** 12
    assert np.max(np.abs(few - many)) < 0.01


@FAST
@given(st.lists(st.dictionaries(st.sampled_from(sorted(BASES.values())), st.integers(1, 4)), max_size=4),
       st.randoms())
def test_budget_describe_does_not_depend_on_the_order_trials_were_read(bases, rnd):
    """The frozen snapshot reads trials in another order than the views: the sentence must not change."""
    from hptrack.analysis import budget

    shuffled = [dict(rnd.sample(list(b.items()), len(b))) for b in bases]
    rnd.shuffle(shuffled)
    assert budget.describe({"basis": b} for b in shuffled) == budget.describe({"basis": b} for b in bases)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=0, max_size=30), st.floats(allow_nan=False)), min_size=1, max_size=20),
       st.lists(st.tuples(st.text(min_size=13, max_size=40), st.floats(allow_nan=False)), min_size=1, max_size=20),
       st.booleans())
def test_a_fits_name_is_the_same_for_the_same_trials_however_they_were_read(mine, others, first):
    """The report slices every search's trials out of one read (tracker/_read/read.py:
    trials_of). The entry's name must depend on the trials only: not on the other
    searches' rows beside them (polars' string views keep their buffers) nor on chunks."""
    import polars as pl

    from hptrack.analysis.report import fit_cache

    def frame(rows):
        return pl.DataFrame({"trial_id": [r[0] for r in rows], "value": [r[1] for r in rows]})

    alone = frame(mine)
    both = pl.concat([frame(mine), frame(others)] if first else [frame(others), frame(mine)], rechunk=True)
    sliced = both.slice(0 if first else len(others), len(mine))
    assert sliced.equals(alone)
    settings_ = {"direction": "maximize", "seed": 0}
    assert fit_cache.key({"source": sliced, **settings_}) == fit_cache.key({"source": alone, **settings_})
