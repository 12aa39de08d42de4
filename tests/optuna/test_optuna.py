"""hptrack.optuna: Optuna studies recorded live (decorator, callback) or imported, checked
against ``study.trials``."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import timezone

import optuna
import pytest
from objectives import sgd_partial_fit
from sklearn.datasets import load_digits

import hptrack
from hptrack._read.read import resolve_search
from hptrack.optuna import Callback, import_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

X, Y = load_digits(return_X_y=True)
X = X / 16.0
XTR, YTR, XVA, YVA = X[:500], Y[:500], X[500:800], Y[500:800]
STATE = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def sgd_objective(trial, epochs=6):
    """SGDClassifier with partial_fit: validation accuracy per epoch, pruned by the study."""
    return sgd_partial_fit(trial, (XTR, YTR, XVA, YVA), epochs)


def study(storage=None, name=None, seed=0, **kw):
    return optuna.create_study(
        direction="maximize", storage=storage, study_name=name,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1), **kw)


def recorded(store, name):
    """{optuna number: dict(state, value, params, reports, last_step, started_at, finished_at)}."""
    con = hptrack.connect(store)
    sid, _ = resolve_search(con, name)
    out = {}
    for tid, num, state, value, last_step, start, end in con.sql(
            "SELECT trial_id, recorded_number, state, value, last_step, started_at, finished_at "
            "FROM trials WHERE search_id = ?", params=[sid]).fetchall():
        assert num not in out, f"trial {num} recorded twice"
        params = {n: (json.loads(v) if k != "str" else v) for n, k, v in con.sql(
            "SELECT name, kind, value FROM params WHERE trial_id = ?", params=[tid]).fetchall()}
        reports = dict(con.sql("SELECT step, value FROM reports WHERE trial_id = ?",
                               params=[tid]).fetchall())
        out[num] = {"state": state, "value": value, "params": params, "reports": reports,
                    "last_step": last_step, "started_at": start, "finished_at": end, "trial_id": tid}
    return out


def assert_matches(rec, trials, *, times=False):
    assert sorted(rec) == sorted(t.number for t in trials)
    for ft in trials:
        r = rec[ft.number]
        assert r["state"] == STATE[ft.state.name], ft.number
        assert r["params"] == ft.params
        assert r["reports"] == ft.intermediate_values
        if ft.state.name == "COMPLETE":
            assert r["value"] == ft.value
        if ft.state.name == "PRUNED":
            assert r["last_step"] == ft.last_step
        if times:
            assert r["started_at"] == ft.datetime_start.astimezone(timezone.utc)
            assert r["finished_at"] == ft.datetime_complete.astimezone(timezone.utc)


def test_decorator_median_pruner_digits_equals_study_trials(tmp_path):
    store = str(tmp_path)
    objective = hptrack.track("sgd-digits", store=store)(sgd_objective)
    st = study()
    st.optimize(objective, n_trials=14)
    rec = recorded(store, "sgd-digits")
    assert_matches(rec, st.trials)
    pruned = [t for t in st.trials if t.state.name == "PRUNED"]
    assert pruned, "MedianPruner pruned nothing: the test would not check pruning"
    con = hptrack.connect(store)
    pruned_steps = dict(con.sql("SELECT trial_id, step FROM events WHERE type = 'trial_pruned'"
                                ).fetchall())
    for ft in pruned:  # the step at which it stopped, written as the trial_pruned step
        assert pruned_steps[rec[ft.number]["trial_id"]] == ft.last_step < 5
    payload = json.loads(con.sql("SELECT payload FROM searches").fetchall()[0][0])
    assert payload["strategy"] == "tpe" and payload["direction"] == "maximize"
    assert payload["sampler"]["class"] == "optuna.samplers.TPESampler"
    assert payload["sampler"]["settings"]["n_startup_trials"] == 4
    assert payload["pruner"] == {"class": "optuna.pruners.MedianPruner", "settings": {
        "percentile": 50.0, "n_startup_trials": 3, "n_warmup_steps": 1, "interval_steps": 1,
        "n_min_trials": 1}}
    # every suggest_* is a param with its distribution
    dists = {}
    for (p,) in con.sql("SELECT payload FROM events WHERE type = 'annotation' "
                        "AND (payload->'distributions') IS NOT NULL").fetchall():
        dists.update(json.loads(p)["distributions"])
    expected = {k: json.loads(optuna.distributions.distribution_to_json(d))
                for k, d in st.trials[0].distributions.items()}
    assert dists == expected
    assert dists["alpha"]["attributes"]["log"] is True
    # user attrs of completed trials are kept
    attrs = con.sql("SELECT count(*) FROM events WHERE (payload->'user_attrs'->>'epochs_run') = '6'")
    assert attrs.fetchall()[0][0] == sum(t.state.name == "COMPLETE" for t in st.trials)


def test_reports_are_written_when_they_happen(tmp_path):
    """A live report is readable by another connection while the trial still runs."""
    store = str(tmp_path)
    seen = []

    @hptrack.track("live", store=store)
    def objective(trial):
        x = trial.suggest_int("x", 0, 10)
        trial.report(0.5, 0, lr=0.1)
        hptrack.Writer.for_store(store).flush()
        con = hptrack.connect(store)
        seen.append(con.sql("SELECT state, n_reports FROM trials").fetchall())
        seen.append(con.sql("SELECT name, value FROM params").fetchall())
        seen.append(con.sql("SELECT metrics->>'lr' FROM reports").fetchall())
        return x

    optuna.create_study().optimize(objective, n_trials=1)
    assert seen[0] == [("running", 1)]
    assert [name for name, _ in seen[1]] == ["x"]
    assert seen[2] == [("0.1",)]


def test_callback_and_decorator_give_the_same_trials_table(tmp_path):
    store = str(tmp_path)
    objective = hptrack.track("via-decorator", store=store)(sgd_objective)
    st = study(seed=1)
    st.optimize(objective, n_trials=10, callbacks=[Callback("via-callback", store=store)])
    drop = ["trial_id", "finished_at", "duration_s"]
    a = hptrack.trials("via-decorator", store=store).drop(drop)
    b = hptrack.trials("via-callback", store=store).drop(drop)
    assert a.equals(b), (a, b)
    assert set(a["state"]) >= {"complete", "pruned"}
    # the callback keeps Optuna's own start and completion times
    assert_matches(recorded(store, "via-callback"), st.trials, times=True)


def test_trial_pruned_inside_a_trial_is_recorded_pruned_and_reraised(tmp_path):
    s = hptrack.search("prunes", store=tmp_path)
    with pytest.raises(optuna.TrialPruned):
        with s.trial({"a": 2}):      # Optuna's is re-raised so Optuna sees it
            raise optuna.TrialPruned()
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT state, last_step FROM trials").fetchall() == [("pruned", None)]


def test_failures_and_pruning_exceptions(tmp_path):
    store = str(tmp_path)

    @hptrack.track("odd", store=store)
    def objective(trial):
        kind = trial.suggest_categorical("kind", ["ok", "boom", "prune", "nan"])
        trial.report(1.0, 3)
        if kind == "boom":
            raise ValueError("boom")
        if kind == "prune":
            raise optuna.TrialPruned()
        return float("nan") if kind == "nan" else 1.0

    st = optuna.create_study()
    for kind in ["ok", "boom", "prune", "nan"]:
        st.enqueue_trial({"kind": kind})
    st.optimize(objective, n_trials=4, catch=(ValueError,))
    rows = {r["kind"]: r for r in hptrack.trials("odd", store=store).iter_rows(named=True)}
    assert rows["ok"]["state"] == "complete"
    assert rows["boom"]["state"] == "failed" and rows["boom"]["error"] == "boom"
    assert rows["prune"]["state"] == "pruned" and rows["prune"]["last_step"] == 3
    assert rows["nan"]["state"] == "failed" and "nan" in rows["nan"]["error"]
    assert [t.state.name for t in st.trials] == ["COMPLETE", "FAIL", "PRUNED", "FAIL"]


def test_multi_objective_records_all_values(tmp_path):
    store = str(tmp_path)

    @hptrack.track("multi", store=store)
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        return x, (1 - x) ** 2

    st = optuna.create_study(directions=["minimize", "minimize"],
                             sampler=optuna.samplers.RandomSampler(seed=3))
    st.optimize(objective, n_trials=5, callbacks=[Callback("multi-cb", store=store)])
    con = hptrack.connect(store)
    for name in ("multi", "multi-cb"):
        sid, _ = resolve_search(con, name)
        got = {n: (v, json.loads(p)["values"]) for n, v, p in con.sql(
            "SELECT t.recorded_number, t.value, e.payload FROM trials t JOIN events e "
            "USING (trial_id) WHERE e.type = 'trial_completed' AND t.search_id = ?",
            params=[sid]).fetchall()}
        assert got == {t.number: (t.values[0], t.values) for t in st.trials}
        payload = json.loads(con.sql("SELECT payload FROM searches WHERE search_id = ?",
                                     params=[sid]).fetchall()[0][0])
        assert payload["directions"] == ["minimize", "minimize"]
        assert payload["strategy"] == "random"


def test_threads_n_jobs_2(tmp_path):
    store = str(tmp_path)
    objective = hptrack.track("threads", store=store)(sgd_objective)
    st = study(seed=2)
    st.optimize(objective, n_trials=12, n_jobs=2, callbacks=[Callback("threads-cb", store=store)])
    assert len(st.trials) == 12
    assert_matches(recorded(store, "threads"), st.trials)
    assert_matches(recorded(store, "threads-cb"), st.trials)
    assert hptrack.verify(store).ok


CHILD = textwrap.dedent("""
    import sys, optuna
    sys.path[:0] = [{tests!r}, {tests!r} + '/..']  # this test file, and tests/ for its helpers
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    import hptrack
    from hptrack.optuna import Callback
    from test_optuna import sgd_objective
    storage = JournalStorage(JournalFileBackend({journal!r}))
    st = optuna.load_study(study_name="shared", storage=storage)
    st.optimize(hptrack.track("shared", store={store!r})(sgd_objective), n_trials=6,
                callbacks=[Callback("shared-cb", store={store!r})])
""")


def test_two_processes_share_one_study(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    store, journal = str(tmp_path / "store"), str(tmp_path / "journal.log")
    storage = JournalStorage(JournalFileBackend(journal))
    study(storage=storage, name="shared")
    code = CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)), journal=journal, store=store)
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
    st = optuna.load_study(study_name="shared", storage=storage)
    assert len(st.trials) == 12
    for name in ("shared", "shared-cb"):
        rec = recorded(store, name)
        assert_matches(rec, st.trials)
        writers = hptrack.connect(store).sql(
            "SELECT count(DISTINCT writer_id) FROM trials t JOIN searches s USING (search_id) "
            "WHERE s.name = ?", params=[name]).fetchall()[0][0]
        assert writers == 2


def test_import_sqlite_study_keeps_trials_and_timestamps(tmp_path):
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    st = study(storage=storage, name="old-study", seed=4)
    st.set_user_attr("dataset", "digits")
    st.optimize(sgd_objective, n_trials=10)
    store = str(tmp_path / "store")
    sid = import_study(storage, "old-study", store=store)
    old = optuna.load_study(study_name="old-study", storage=storage).trials
    rec = recorded(store, "old-study")
    assert_matches(rec, old, times=True)
    con = hptrack.connect(store)
    (started, finished, payload), = con.sql(
        "SELECT started_at, finished_at, payload FROM searches WHERE search_id = ?",
        params=[sid]).fetchall()
    assert started == min(t.datetime_start for t in old).astimezone(timezone.utc)
    assert finished == max(t.datetime_complete for t in old).astimezone(timezone.utc)
    payload = json.loads(payload)
    assert payload["pruner"]["class"] == "optuna.pruners.MedianPruner"
    assert payload["user_attrs"] == {"dataset": "digits"}
    assert set(payload["space"]) == {"alpha", "loss", "eta0"}
    # old history is queryable as of a time inside the study
    mid = old[4].datetime_complete.astimezone(timezone.utc)
    as_of = hptrack.connect(store, as_of=mid).sql(
        "SELECT count(*) FILTER (WHERE state != 'running'), count(*) FROM trials").fetchall()
    assert as_of == [(5, 5)]


@pytest.mark.filterwarnings("error::hptrack.errors.AppendingToSearch")
def test_import_again_adds_only_what_is_new(tmp_path):
    storage = f"sqlite:///{tmp_path / 'grow.db'}"
    st = study(storage=storage, name="grow", seed=5)
    st.optimize(sgd_objective, n_trials=4)
    live = st.ask()                       # a trial still running at the first import
    live.suggest_float("alpha", 1e-5, 1e-1, log=True)
    live.report(0.5, 0)
    store = str(tmp_path / "store")
    import_study(storage, "grow", store=store)

    def finished(store):
        return hptrack.connect(store).sql("SELECT finished_at FROM searches").fetchall()[0][0]

    def counts():
        return hptrack.connect(store).sql(
            "SELECT count(*), count(*) FILTER (WHERE state = 'running'), "
            "(SELECT count(*) FROM events) FROM trials").fetchall()[0]

    first = counts()
    assert first[:2] == (5, 1)
    assert finished(store) is None        # a trial still runs: the study is not over
    import_study(storage, "grow", store=store)
    assert counts() == first              # nothing new: not one event written
    live.report(0.6, 1)
    st.tell(live, 0.61)
    st.optimize(sgd_objective, n_trials=2)
    import_study(storage, "grow", store=store)
    old = optuna.load_study(study_name="grow", storage=storage).trials
    rec = recorded(store, "grow")
    assert_matches(rec, old, times=True)
    assert counts()[:2] == (7, 0)
    assert finished(store) == max(t.datetime_complete for t in old).astimezone(timezone.utc)
    assert rec[live.number]["reports"] == {0: 0.5, 1: 0.6}
    assert rec[live.number]["value"] == 0.61


def test_import_hptrack_does_not_import_optuna():
    code = ("import sys, hptrack; assert 'optuna' not in sys.modules, 'optuna imported'; "
            "assert hptrack.optuna.Callback and hptrack.pbt.PBT and hptrack.EarlyStopping")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plain_track_still_works_with_optuna_loaded(tmp_path):
    @hptrack.track("plain", store=str(tmp_path))
    def f(a, b=2):
        return a + b
    assert f(1) == 3
    row = hptrack.trials("plain", store=str(tmp_path)).row(0, named=True)
    assert (row["a"], row["b"], row["value"]) == (1, 2, 3.0)


def test_lr_schedule_example_records_the_lr_of_every_step(tmp_path):
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "lr_schedules.py")
    spec = importlib.util.spec_from_file_location("lr_schedules", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    store = str(tmp_path)
    st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for schedule in ("step", "exponential", "cosine"):
        st.enqueue_trial({"schedule": schedule})
    st.optimize(ex.make_objective("lrs", store), n_trials=3)
    con = hptrack.connect(store)
    rec = recorded(store, "lrs")
    assert_matches(rec, st.trials)
    for ft in st.trials:
        p = ft.params
        if p["schedule"] == "step":
            def expected(e, p=p):
                return ex.step_lr(p["lr0"], e, p["step_size"], p["step_gamma"])
        elif p["schedule"] == "exponential":
            def expected(e, p=p):
                return ex.exponential_lr(p["lr0"], e, p["exp_gamma"])
        else:
            def expected(e, p=p):
                return ex.cosine_lr(p["lr0"], e, p["lr_min"])
        rows = con.sql("SELECT step, (metrics->>'lr')::DOUBLE, (metrics->>'train_loss')::DOUBLE "
                       "FROM reports WHERE trial_id = ? ORDER BY step",
                       params=[rec[ft.number]["trial_id"]]).fetchall()
        assert [r[0] for r in rows] == sorted(ft.intermediate_values)
        for step, lr, loss in rows:
            assert lr == pytest.approx(expected(step), rel=1e-12) and loss > 0
