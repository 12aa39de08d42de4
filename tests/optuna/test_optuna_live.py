"""The live Optuna paths (``@hptrack.track``, ``Callback``) and import, on real studies:
enqueued values typed by their distribution, the search started before its first
trial and finished when the study is, one name one experiment (issue 14 items 10, 12)."""

import json
import subprocess
import sys
import textwrap
import warnings

import optuna
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

import hptrack
from hptrack.errors import AppendingToSearch, SearchSettingsConflict
from hptrack.optuna import Callback, import_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
X, Y = load_iris(return_X_y=True)
N_TRIALS = 20


def objective(trial):
    C = trial.suggest_float("C", 1e-2, 1e2, log=True)
    gamma = trial.suggest_float("gamma", 1e-3, 1.0, log=True)
    return cross_val_score(SVC(C=C, gamma=gamma), X, Y, cv=3).mean()


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{n_jobs: study}: each optimized by a decorated objective ("dec-N") and a
    Callback ("cb-N"), its first trial enqueued with an int for a float distribution;
    the n_jobs=1 study is in SQLite and imported too ("imp-1")."""
    root = tmp_path_factory.mktemp("live")
    store = str(root / "store")
    studies = {}
    for n_jobs in (1, 2):
        storage = f"sqlite:///{root / 'studies.db'}" if n_jobs == 1 else None
        st = optuna.create_study(direction="maximize", storage=storage, study_name=f"svc-{n_jobs}",
                                 sampler=optuna.samplers.TPESampler(seed=n_jobs))
        st.enqueue_trial({"C": 1, "gamma": 0.1})  # C: an int, for a float distribution
        dec = hptrack.track(f"dec-{n_jobs}", store=store)(objective)
        st.optimize(dec, n_trials=N_TRIALS, n_jobs=n_jobs, callbacks=[Callback(f"cb-{n_jobs}", store=store)])
        studies[n_jobs] = st
    import_study(f"sqlite:///{root / 'studies.db'}", "svc-1", store=store, name="imp-1")
    return store, studies


NAMES = [("dec", 1), ("cb", 1), ("imp", 1), ("dec", 2), ("cb", 2)]


@pytest.mark.parametrize("path,n_jobs", NAMES)
def test_enqueued_int_is_stored_as_its_distribution_types_it(runs, path, n_jobs):
    store, studies = runs
    first = studies[n_jobs].trials[0]
    assert first.params["C"] == 1.0 and type(first.params["C"]) is float  # Optuna's own record
    (kind, value), = q(store, "SELECT p.kind, p.value_num FROM params p JOIN trials t USING (trial_id) "
                       "JOIN searches s ON s.search_id = t.search_id "
                       "WHERE s.name = ? AND t.recorded_number = 0 AND p.name = 'C'",
                       [f"{path}-{n_jobs}"])
    assert (kind, value) == ("float", 1.0)
    df = hptrack.trials(f"{path}-{n_jobs}", store=store)
    assert str(df.schema["C"]) == "Float64"
    by_number = {t.number: t.params for t in studies[n_jobs].trials}
    assert {r["trial_number"]: {"C": r["C"], "gamma": r["gamma"]} for r in df.iter_rows(named=True)} \
        == by_number or n_jobs == 2  # n_jobs=2: hptrack numbers trials by start time


@pytest.mark.parametrize("path,n_jobs", [n for n in NAMES if n[0] != "imp"])
def test_search_starts_no_later_than_its_first_trial(runs, path, n_jobs):
    store, studies = runs
    (started, first, n), = q(store, "SELECT s.started_at, min(t.started_at), count(*) FROM searches s "
                             "JOIN trials t USING (search_id) WHERE s.name = ? GROUP BY ALL",
                             [f"{path}-{n_jobs}"])
    assert n == N_TRIALS
    assert started <= first, f"search_started {started} after its first trial {first}"
    assert first == min(t.datetime_start for t in studies[n_jobs].trials).astimezone(first.tzinfo)


def test_a_trial_left_running_earlier_does_not_backdate_the_search(tmp_path):
    store = str(tmp_path)
    st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    zombie = st.ask()  # left running by a worker that crashed, before this run began
    dec, cb = hptrack.track("late", store=store)(objective), Callback("late-cb", store=store)
    st.optimize(dec, n_trials=3, callbacks=[cb])
    first = min(t.datetime_start for t in st.trials if t.number != zombie.number)
    for name in ("late", "late-cb"):
        (started, earliest), = q(store, "SELECT s.started_at, min(t.started_at) FROM searches s "
                                 "JOIN trials t USING (search_id) WHERE s.name = ? GROUP BY ALL", [name])
        assert started == earliest == first.astimezone(started.tzinfo), name


SCRIPT = textwrap.dedent("""
    import sys, optuna, hptrack
    from hptrack.optuna import Callback
    sys.path[:0] = [{tests!r}, {tests!r} + '/..']  # this test file, and tests/ for its helpers
    from test_optuna_live import objective
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    st.optimize(hptrack.track("dec", store={store!r})(objective), n_trials=5,
                callbacks=[Callback("cb", store={store!r})])
""")


def test_a_script_that_optimizes_leaves_its_searches_finished(tmp_path):
    """No finish() called: the searches are finished when the process exits."""
    import os
    store = str(tmp_path)
    code = SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), store=store)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = q(store, "SELECT name, n_trials, finished_at IS NOT NULL FROM searches ORDER BY name")
    assert rows == [("cb", 5, True), ("dec", 5, True)]
    for (payload,) in q(store, "SELECT payload FROM events WHERE type = 'search_finished'"):
        assert json.loads(payload)["status"] == "exited"
    # the script run again (another study, same name): it says it appends, once
    again = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.warns(AppendingToSearch, match="appending to 'dec', 5 trial") as seen:
        again.optimize(hptrack.track("dec", store=store)(objective), n_trials=2)
    assert len([w for w in seen if issubclass(w.category, AppendingToSearch)]) == 1


def finished_at(store, name):
    return q(store, "SELECT finished_at FROM searches WHERE name = ?", [name])[0][0]


def test_finish_and_optimize_again_reopens_cleanly(tmp_path):
    store = str(tmp_path)
    st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    dec = hptrack.track("dec", store=store)(objective)
    with Callback("cb", store=store) as cb:
        st.optimize(dec, n_trials=4, callbacks=[cb])
    assert dec.finish() is True and dec.finish() is False  # once
    first = {n: finished_at(store, n) for n in ("cb", "dec")}
    assert all(first.values())
    last_trial = max(t.datetime_complete for t in st.trials).astimezone(first["cb"].tzinfo)
    assert all(f >= last_trial for f in first.values())
    # optimized again later: running again while it optimizes, finished again after
    seen = []

    def watch(study, ft):
        hptrack.Writer.for_store(store).flush()
        seen.append((finished_at(store, "dec"), finished_at(store, "cb")))

    with Callback("cb", store=store) as cb, warnings.catch_warnings():
        warnings.simplefilter("error", AppendingToSearch)  # the same objective goes on: no notice
        st.optimize(dec, n_trials=3, callbacks=[cb, watch])
    dec.finish()
    assert seen[0] == (None, None) or seen[0][0] is None  # cb opens after watch on trial 1
    assert seen[-1] == (None, None)
    rows = q(store, "SELECT name, n_trials, finished_at > ? FROM searches ORDER BY name", [first["dec"]])
    assert rows == [("cb", 7, True), ("dec", 7, True)]
    (n_started,), = q(store, "SELECT count(*) FROM events WHERE type = 'search_started'")
    assert n_started == 4  # two opens of each, no more
    rec = hptrack.trials("dec", store=store)
    assert sorted(rec["value"].to_list()) == sorted(t.value for t in st.trials)


def test_an_optuna_study_of_the_other_direction_is_refused(tmp_path):
    """A minimize study recorded under a name that holds a maximize one."""
    store = str(tmp_path)
    up = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=2))
    with Callback("svc", store=store, metric="accuracy") as cb:
        up.optimize(objective, n_trials=3, callbacks=[cb])
    down = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=2))
    with pytest.raises(SearchSettingsConflict, match="direction='maximize'.*direction='minimize'"):
        down.optimize(lambda t: 1 - objective(t), n_trials=2,
                      callbacks=[Callback("svc", store=store, metric="accuracy")])
    with pytest.raises(SearchSettingsConflict, match="metric='accuracy'.*metric='error'"):
        up.optimize(objective, n_trials=1, callbacks=[Callback("svc", store=store, metric="error")])
    with pytest.raises(SearchSettingsConflict, match="strategy='random'.*strategy='tpe'"):
        optuna.create_study(direction="maximize").optimize(
            hptrack.track("svc", store=store)(objective), n_trials=1)
    # the trial whose callback was refused is Optuna's, not recorded: 3 as before
    assert q(store, "SELECT n_trials, direction, metric FROM searches") == [(3, "maximize", "accuracy")]
