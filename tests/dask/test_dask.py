"""Trials spread over Dask workers, recorded live by the workers into one store.

Two ways people use Dask for tuning: scikit-learn searches run through
``joblib.parallel_backend("dask")``, and Optuna studies optimised from several
workers sharing one storage. Both must end up in one hptrack store, each fold or
trial written by the process that computed it, with the same numbers as the
tuner's own results. Skipped when ``dask[distributed]`` is not installed
(``pip install hptrack[dask]``).
"""

import os
import sys

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                  "(pip install 'dask[distributed]' or hptrack[dask])")
optuna = pytest.importorskip("optuna")

import cloudpickle  # comes with distributed
import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

import hptrack
import hptrack.sklearn as hs
from hptrack._files.wal import read_log

# the workers are fresh processes that cannot import this test module by name
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def q(store, sql, params=None):
    return hptrack.connect(store).sql(sql, params=params).fetchall()


def live_log_pids(store):
    """writer_id -> pid from the headers of the logs still in wal/ (live writers hold theirs)."""
    wal = os.path.join(store, "wal")
    out = {}
    for name in os.listdir(wal) if os.path.isdir(wal) else []:
        header = read_log(os.path.join(wal, name)).header
        if header:
            out[header["writer_id"]] = header["pid"]
    return out


def test_grid_search_folds_written_by_dask_workers(tmp_path, client):
    store = str(tmp_path / "store")
    X, y = load_breast_cancer(return_X_y=True)
    gs = GridSearchCV(LogisticRegression(solver="liblinear"), {"C": [0.01, 0.1, 1.0, 10.0]},
                      scoring="f1", cv=StratifiedKFold(3), return_train_score=True)
    with joblib.parallel_backend("dask"):
        ts = hs.track(gs, name="lr-dask", store=store).fit(X, y)
    res = ts.cv_results_
    n = len(res["params"])
    assert n == 4

    trials = {tid: (state, value) for tid, state, value in
              q(store, "SELECT trial_id, state, value FROM trials WHERE search_id = ?", [ts.search_id])}
    assert len(trials) == n
    folds = {}
    for tid, fold, metric, split, value in q(
            store, "SELECT trial_id, fold, metric, split, value FROM events "
                   "WHERE type = 'trial_scored' AND split IN ('fold', 'fold_train') AND search_id = ?",
            [ts.search_id]):
        assert (tid, fold, split) not in folds, "fold recorded twice"
        assert metric == "f1"
        folds[(tid, fold, split)] = value
    assert len(folds) == n * 3 * 2
    for r in range(n):
        tid = ts.trial_id_of(r)
        assert trials[tid] == ("complete", res["mean_test_score"][r])
        for k in range(3):
            assert folds[(tid, k, "fold")] == res[f"split{k}_test_score"][r]
            assert folds[(tid, k, "fold_train")] == res[f"split{k}_train_score"][r]

    # every fold came from a Dask worker process, not from this one
    parent = hptrack.Writer.for_store(store).writer_id
    fold_writers = {w for w, in q(store, "SELECT DISTINCT writer_id FROM events "
                                         "WHERE split = 'fold' AND search_id = ?", [ts.search_id])}
    assert parent not in fold_writers
    worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids
    pids = live_log_pids(store)  # the workers are alive and still hold their logs
    assert fold_writers <= set(pids), "a fold writer's log is not in wal/"
    assert {pids[w] for w in fold_writers} <= worker_pids
    assert hptrack.verify(store).ok


def optimise_on_worker(journal, store, n_trials, seed, env=None):
    """Runs inside a Dask worker: join the shared study and optimise it there.

    ``env``: what the worker's machine sets to reach a bucket store; the worker
    then seals its log into the bucket before returning, as a machine that
    leaves would."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    import hptrack

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    @hptrack.track("dask-optuna", store=store)
    def objective(trial):
        x = trial.suggest_float("x", -4.0, 4.0)
        depth = trial.suggest_int("depth", 1, 6)
        for step in range(3):
            trial.report((x - 1.0) ** 2 + depth / (step + 1), step)
        if depth == 6:
            raise ValueError("depth 6 is not allowed")  # some failed trials too
        return (x - 1.0) ** 2 + depth

    study = optuna.load_study(study_name="shared",
                              storage=JournalStorage(JournalFileBackend(journal)),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    if env:
        os.environ.update(env)
    study.optimize(objective, n_trials=n_trials, catch=(ValueError,))
    writer = hptrack.Writer.for_store(store)
    if env:
        writer.close()
    return os.getpid(), writer.writer_id


def test_optuna_study_optimised_from_dask_workers(tmp_path, client):
    check_shared_study(client, str(tmp_path / "store"), str(tmp_path / "journal.log"))


def test_optuna_from_dask_workers_into_a_bucket(tmp_path, client, s3_store, s3_env, monkeypatch):
    """The workers' machines write into one bucket; a reader elsewhere sees every trial there."""
    worker_env = {**s3_env, "HPTRACK_CACHE_DIR": str(tmp_path / "worker-disk")}
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "reader-disk"))  # none of their logs here
    check_shared_study(client, s3_store, str(tmp_path / "journal.log"), worker_env)


def check_shared_study(client, store, journal, env=None):
    """Two workers optimise one Optuna study; every trial is recorded by the worker that ran it."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(journal))
    optuna.create_study(study_name="shared", storage=storage, direction="minimize")
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2
    futures = [client.submit(optimise_on_worker, journal, store, 8, seed, env, workers=[w], pure=False)
               for seed, w in enumerate(workers)]
    done = client.gather(futures)
    pids, writer_ids = {p for p, _ in done}, {w for _, w in done}
    assert len(pids) == 2 and os.getpid() not in pids

    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 16
    # recorded_number is Optuna's number; trial_number is start order, which two
    # workers racing for the journal may not give in the same order
    rows = q(store, "SELECT t.recorded_number, t.trial_id, t.state, t.value, t.writer_id "
                    "FROM trials t JOIN searches s USING (search_id) WHERE s.name = 'dask-optuna'")
    rec = {n: (tid, state, value, wid) for n, tid, state, value, wid in rows}
    assert len(rows) == len(rec) == len(study.trials)
    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.FAIL: "failed"}
    con = hptrack.connect(store)
    for ft in study.trials:
        tid, state, value, wid = rec[ft.number]
        assert state == states[ft.state]
        assert value == (ft.value if ft.state == optuna.trial.TrialState.COMPLETE else None)
        assert wid in writer_ids
        params = dict(con.sql("SELECT name, value_num FROM params WHERE trial_id = ?",
                              params=[tid]).fetchall())
        assert params == ft.params
        reports = dict(con.sql("SELECT step, value FROM reports WHERE trial_id = ?",
                               params=[tid]).fetchall())
        assert reports == ft.intermediate_values
    # both workers did some of the work, each with its own writer
    assert {wid for *_, wid in rec.values()} == writer_ids
    assert hptrack.verify(store).ok
