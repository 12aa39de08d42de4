"""Compaction next to other compactions and readers: real processes, real S3 (moto's server).

Two compactors on one store must never lose or double an event, whatever
order their steps interleave in: on S3 each runs with its own
HPTRACK_CACHE_DIR (two machines), so nothing on a machine serialises them;
on a local folder they share the folder. Readers opened before or during a
compaction keep answering: a compaction deletes the files it replaced only
after a grace period (``compact(grace=...)``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import helpers_proc as hp
import pytest

import hptrack
from hptrack._files.store import Store
from hptrack._maintain.compaction import compact
from hptrack._write.writer import Writer

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers_proc.py")
# each round: 48 acknowledged trials; one in the default run, many in `make test-slow`
ROUNDS = [1, pytest.param(int(os.environ.get("HPTRACK_RACE_ROUNDS", 8)),
                          marks=[pytest.mark.slow, pytest.mark.timeout(1800)])]

# Compacts in a loop until the file argv[2] exists; grace 0 (delete what was
# replaced at once) is the harshest setting for a racing compactor.
COMPACTOR = r"""
import inspect, os, sys
from hptrack._maintain.compaction import compact
root, stop = sys.argv[1], sys.argv[2]
progress = sys.argv[3] if len(sys.argv) > 3 else None  # a file holding the runs done so far
kw = {"grace": 0} if "grace" in inspect.signature(compact).parameters else {}
runs = errors = 0
while not os.path.exists(stop):
    try:
        compact(root, **kw)
    except Exception as exc:  # counted, so the store is still checked for losses
        errors += 1
        import traceback
        where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"
                 for f in traceback.extract_tb(exc.__traceback__)]
        print("ERROR", repr(exc)[:300], " <- ".join(reversed(where))[:600], file=sys.stderr, flush=True)
    runs += 1
    if progress:
        with open(progress + ".tmp", "w") as f:
            f.write(str(runs))
        os.replace(progress + ".tmp", progress)
print("RUNS", runs, errors, flush=True)
"""


def start_writers(root, env, cwd, trials=24, seal_events=3):
    """Two writer processes, each acknowledging its trials; small segments, sealed often."""
    return [subprocess.Popen(
        [sys.executable, HELPER, "crash-loop", str(root), str(k0), "trial", str(seal_events), "0.01", str(trials)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env) for k0 in (0, 1000)]


def start_compactors(root, stop, envs, cwd):
    return [subprocess.Popen([sys.executable, "-c", COMPACTOR, str(root), str(stop)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
            for env in envs]


def finish(writers, compactors, stop):
    acks = []
    for p in writers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        acks += hp.parse_acks(out)
    stop.write_text("stop")
    runs, errors = [], []
    for p in compactors:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        runs.append(int(out.split()[-2]))
        errors += [line for line in err.splitlines() if line.startswith("ERROR")]
    return acks, runs, errors


def check_store(root, acks):
    """Every acknowledged trial once, whole; no event doubled or lost in the views."""
    con = hp.raw_connection(root)
    (n_search_events,), = con.sql("SELECT count(*) FROM events WHERE trial_id IS NULL").fetchall()
    assert hp.check_events_consistent(con) == sum(a[2] for a in acks) + n_search_events
    assert hp.seq_gaps(con) == []
    hp.check_trials_summary(con, acks)
    (n_trials,), = con.sql("SELECT count(*) FROM trials").fetchall()
    assert n_trials == len(acks)
    assert hptrack.verify(root).ok


def race(root, tmp_path, writer_env, compactor_envs, rounds):
    for r in range(rounds):
        stop = tmp_path / f"stop{r}"
        writers = start_writers(root, writer_env, tmp_path)
        compactors = start_compactors(root, stop, compactor_envs, tmp_path)
        acks, runs, errors = finish(writers, compactors, stop)
        assert len(acks) == 48 and min(runs) >= 1, (acks, runs)
        yield acks, errors


@pytest.mark.parametrize("rounds", ROUNDS)
def test_two_compactors_racing_on_s3_lose_nothing(s3_store, s3_env, tmp_path, rounds):
    env = {**os.environ, **s3_env}
    compactor_envs = [{**env, "HPTRACK_CACHE_DIR": str(tmp_path / f"machine{i}")} for i in (1, 2)]
    all_acks, all_errors = [], []
    for acks, errors in race(s3_store, tmp_path, env, compactor_envs, rounds=rounds):
        all_acks += acks
        all_errors += errors
        check_store(s3_store, all_acks)
    compact(s3_store, grace=0)
    check_store(s3_store, all_acks)
    assert all_errors == []  # checked after the store: a loss is the worse failure
    Writer.for_store(s3_store).close()


@pytest.mark.parametrize("rounds", ROUNDS)
def test_two_compactors_racing_on_a_local_folder_lose_nothing(tmp_path, rounds):
    root = tmp_path / "store"
    env = dict(os.environ)
    all_acks, all_errors = [], []
    for acks, errors in race(root, tmp_path, env, [env, env], rounds=rounds):
        all_acks += acks
        all_errors += errors
        check_store(root, all_acks)
    compact(root, grace=0)
    check_store(root, all_acks)
    assert all_errors == []
    assert len(Store(root).segment_files()) == 1


# A compactor paused just before it writes its merged file, while a segment
# arrives and a second compactor (another machine) merges everything: the
# interleaving that lost events when merged files were named after their first
# event (the slow one overwrote the fast one's file, then deleted its sources).
SLOW_COMPACTOR = r"""
import inspect, os, sys, time
from hptrack._files import store as store_mod
from hptrack._maintain.compaction import compact
root, paused, go = sys.argv[1:4]
write_file = store_mod.Store.write_file
def slow_write_file(self, table, directory, name, *args, **kwargs):
    if name.startswith("compact-") and not os.path.exists(go):
        open(paused, "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)
    return write_file(self, table, directory, name, *args, **kwargs)
store_mod.Store.write_file = slow_write_file
compact(root, **({"grace": 0} if "grace" in inspect.signature(compact).parameters else {}))
"""


def record_sealed(root, name, ks):
    s = hptrack.search(name, store=root, strategy="random")
    w = Writer.for_store(root)
    for k in ks:
        with s.trial({"k": k}) as t:
            t.complete(float(k))
        w.seal()  # one segment per trial, in the bucket


@pytest.mark.parametrize("where", ["s3", "local"])
def test_paused_compactor_overtaken_by_another_loses_nothing(where, request, tmp_path):
    if where == "s3":
        root = request.getfixturevalue("s3_store")
        env = {**os.environ, **request.getfixturevalue("s3_env")}
    else:
        root, env = str(tmp_path / "store"), dict(os.environ)
    machine = [{**env, "HPTRACK_CACHE_DIR": str(tmp_path / f"machine{i}")} for i in (1, 2)]
    record_sealed(root, "alpha", range(6))
    paused, go = tmp_path / "paused", tmp_path / "go"
    slow = subprocess.Popen([sys.executable, "-c", SLOW_COMPACTOR, root, str(paused), str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=machine[0])
    try:
        deadline = time.monotonic() + 120
        while not paused.exists():
            assert slow.poll() is None and time.monotonic() < deadline, slow.communicate()
            time.sleep(0.01)
        record_sealed(root, "alpha", range(6, 9))  # arrives after the slow one listed the folder
        fast = subprocess.run([sys.executable, "-c", "import sys; from hptrack._maintain.compaction import compact; "
                               "import inspect; compact(sys.argv[1], **({'grace': 0} if 'grace' in "
                               "inspect.signature(compact).parameters else {}))", root],
                              capture_output=True, text=True, env=machine[1], timeout=120)
        assert fast.returncode == 0, fast.stderr[-3000:]
    finally:
        go.write_text("go")
        _, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err[-3000:]
    con = hptrack.connect(root)
    assert con.sql("SELECT count(*), count(DISTINCT trial_id), sum(value) FROM trials").fetchall() == \
        [(9, 9, float(sum(range(9))))]
    assert con.sql("SELECT count(*) = count(DISTINCT event_id) FROM events").fetchall() == [(True,)]
    compact(root, grace=0)
    con = hptrack.connect(root)
    assert con.sql("SELECT count(*), sum(value) FROM trials").fetchall() == [(9, float(sum(range(9))))]
    assert len(Store(root).segment_files()) == 1


# --- readers ----------------------------------------------------------------

def write_small_segments(root, n_trials=30, seal_every=2):
    w = Writer.for_store(root)
    for name in ("alpha", "beta"):
        s = hptrack.search(name, store=root, strategy="random")
        for i in range(n_trials):
            with s.trial({"i": i, "lr": i / 7}) as t:
                t.report(1, i / 3)
                t.complete(float(i))
            if i % seal_every == 0:
                w.seal()
        s.finish()
    w.seal()


def answers(con):
    return (con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall(),
            con.sql("SELECT search_id, trial_id, state, value FROM trials ORDER BY ALL").fetchall(),
            con.sql("SELECT search_id, trial_id, name, value FROM params ORDER BY ALL").fetchall(),
            con.sql("SELECT name, n_trials, n_complete FROM searches ORDER BY ALL").fetchall())


def test_connection_opened_before_compact_answers_the_same_after_it(tmp_path):
    root = tmp_path / "store"
    write_small_segments(root)
    con = hptrack.connect(root)
    before = answers(con)
    assert before[0][0][0] > 100
    compact(root)
    assert answers(con) == before  # the files it planned to read are still there
    assert answers(hptrack.connect(root)) == before
    # and one that reads stored folds, opened before the next compaction
    write_small_segments(root, n_trials=4)
    compact(root)
    con = hptrack.connect(root)
    before = answers(con)
    write_small_segments(root, n_trials=4)
    compact(root)
    assert answers(con) == before
    assert answers(hptrack.connect(root))[0][0][0] > before[0][0][0]


def test_connection_opened_before_compact_on_s3(s3_store):
    write_small_segments(s3_store, n_trials=12)
    Writer.for_store(s3_store).close()
    con = hptrack.connect(s3_store)
    before = answers(con)
    compact(s3_store)
    assert answers(con) == before
    assert answers(hptrack.connect(s3_store)) == before


QUERY = ("SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT event_id) FROM events), "
         "(SELECT count(*) FROM trials WHERE state = 'complete'), (SELECT sum(n_trials) FROM searches)")


def queries_during_compactions(tmp_path, n_queries, grace, run=None):
    """``n_queries`` runs of ``hptrack query`` (the library call the CLI makes) while
    writers append and a compactor runs again and again; returns the failures."""
    root = tmp_path / "store"
    write_small_segments(root, n_trials=6)
    stop = tmp_path / "stop"
    env = dict(os.environ)
    writers = start_writers(root, env, tmp_path, trials=200, seal_events=2)
    code = COMPACTOR.replace('{"grace": 0}', f'{{"grace": {grace}}}')
    progress = tmp_path / "compactions"
    compactor = subprocess.Popen([sys.executable, "-c", code, str(root), str(stop), str(progress)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    from hptrack._read.sql import query

    def compactions() -> int:
        return int(progress.read_text()) if progress.exists() else 0

    failures, last, done = [], 0, 0
    deadline = time.monotonic() + 120
    try:
        # n_queries, and on a slow machine more, until two compactions have run beside them
        while done < n_queries or (compactions() < 2 and time.monotonic() < deadline):
            done += 1
            try:
                (n, distinct, complete, n_trials), = (run or (lambda: query(QUERY, root).rows()))()
            except Exception as exc:  # any failure is what we count
                failures.append(repr(exc)[:300])
                continue
            assert n == distinct, (n, distinct)         # nothing doubled
            assert complete >= last, (complete, last)   # nothing lost since the last look
            last = complete
    finally:
        for p in writers:
            p.kill()
            p.wait()
        stop.write_text("stop")
        out, err = compactor.communicate(timeout=300)
    assert compactor.returncode == 0, err[-3000:]
    assert int(out.split()[-2]) >= 2 and "ERROR" not in err, (out, err[-3000:])
    return failures


def test_queries_during_repeated_compactions_never_fail(tmp_path):
    assert queries_during_compactions(tmp_path, 12, grace=900) == []


def test_connect_lists_again_when_a_compaction_deletes_at_once(tmp_path):
    # grace=0: what a compaction replaces goes at once, so a file connect() listed
    # can vanish before its views are bound; connect lists again instead of failing
    def connect_only():
        hptrack.connect(tmp_path / "store")
        return [(1, 1, 0, 0)]

    assert queries_during_compactions(tmp_path, 15, grace=0, run=connect_only) == []


@pytest.mark.slow
def test_queries_during_repeated_compactions_never_fail_many(tmp_path):
    assert queries_during_compactions(tmp_path, 60, grace=900) == []
