"""Many writers, one search, no lock and no server.

Processes (spawned, and forked from a parent whose writer already holds a log
and buffered rows) and threads write into the same search at once. Afterwards
the search holds exactly the trials written, every event once, and each
writer's seq runs 0..n-1 with no gap; while they write, a reader never sees a
trial disappear or a writer's events with a hole in them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import helpers_proc as hp

import hptrack
from hptrack._files.store import Store
from hptrack._maintain.verification import verify
from hptrack._write.writer import Writer
from hptrack.api import search_id_for

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers_proc.py")


def n_events(ks) -> int:
    return sum(hp.expected(k)["n_events"] for k in ks)


def check_search(root, name, ks, writers):
    """The search ``name`` holds exactly trials ``ks``, complete; ``writers`` maps
    writer_id -> the number of events it must have written. Returns the connection."""
    st = Store(root)
    assert st.wal_files() == [], f"logs left unsealed after every writer exited: {st.wal_files()}"
    assert st.temp_files() == [], f"temporary files left: {st.temp_files()}"
    assert [p.message for p in verify(root).problems] == []
    con = hp.raw_connection(root)
    n = hp.check_events_consistent(con)
    (raw,), = con.sql("SELECT count(*) FROM raw").fetchall()
    assert raw == n, f"{raw - n} events stored twice although no writer crashed"
    sid = search_id_for(name)
    rows = con.sql("SELECT state, value FROM trials WHERE search_id = ? ORDER BY value",
                   params=[sid]).fetchall()
    assert len(rows) == len(ks)
    assert {r[0] for r in rows} == {"complete"}
    assert [r[1] for r in rows] == sorted(hp.expected(k)["value"] for k in ks)
    # every trial started exactly once: nobody re-wrote another writer's rows
    dup = con.sql("SELECT trial_id, count(*) AS c FROM events WHERE type = 'trial_started' "
                  "GROUP BY trial_id HAVING c > 1 LIMIT 5").fetchall()
    assert dup == []
    assert hp.seq_gaps(con) == []
    got = dict(con.sql("SELECT writer_id, count(*) FROM events GROUP BY writer_id").fetchall())
    assert got == writers
    return con


def watch_while_running(root, procs, min_reads=3):
    """Read the store over and over while ``procs`` write; nothing once seen may vanish."""
    seen: set[str] = set()
    reads = 0
    while any(p.is_alive() for p in procs) or reads < min_reads:
        con = hp.raw_connection(root) if os.path.isdir(root) else None
        if con is None:
            time.sleep(0.01)
            continue
        hp.check_events_consistent(con, live=True)
        # a live reader sees each writer's durable events as a prefix 0..n-1
        assert hp.seq_gaps(con) == [], f"read {reads}: a writer's events have a hole"
        now = {r[0] for r in con.sql("SELECT trial_id FROM trials WHERE state = 'complete'").fetchall()}
        assert seen <= now, f"read {reads}: {len(seen - now)} complete trials disappeared"
        seen = now
        reads += 1
    return reads


def test_four_spawned_processes_into_one_search(tmp_path):
    root = str(tmp_path / "store")
    name = "four-procs"
    ctx = multiprocessing.get_context("spawn")
    barrier, halfway = ctx.Barrier(4), ctx.Barrier(5)
    # small seal threshold: logs are sealed into Parquet while the parent reads
    procs = [ctx.Process(target=hp.conc_worker,
                         args=(root, name, i * 250, 250, barrier, 300, 0.02, halfway))
             for i in range(4)]
    for p in procs:
        p.start()
    try:
        halfway.wait(60)
        # every writer is alive, holding a log, with exactly 125 trials acknowledged
        assert all(p.is_alive() for p in procs)
        con = hp.raw_connection(root)
        hp.check_events_consistent(con, live=True)
        assert hp.seq_gaps(con) == []
        states = con.sql("SELECT state, count(*) FROM trials GROUP BY ALL").fetchall()
        assert dict(states).get("complete") == 500, states
        halfway.wait(60)
        reads = watch_while_running(root, procs)
    finally:
        halfway.abort()  # a failed assertion above must not leave workers waiting
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert reads >= 3
    con = hp.raw_connection(root)
    ids = [r[0] for r in con.sql("SELECT DISTINCT writer_id FROM events").fetchall()]
    assert len(ids) == 4
    # which writer wrote which k is not known, but each wrote one search_started and 250 trials
    per_writer = dict(con.sql(
        "SELECT writer_id, count(*) FILTER (WHERE type = 'trial_completed') FROM events GROUP BY ALL"
    ).fetchall())
    assert sorted(per_writer.values()) == [250] * 4
    sizes = dict(con.sql("SELECT writer_id, count(*) FROM events GROUP BY ALL").fetchall())
    assert sum(sizes.values()) == 4 + n_events(range(1000))
    check_search(root, name, range(1000), sizes)
    assert len(Store(root).segment_files()) > 4, "no seal happened while writing; lower the threshold"


def test_forked_children_get_their_own_writer(tmp_path):
    root = str(tmp_path / "store")
    name = "forked"
    proc = subprocess.run([sys.executable, HELPER, "fork-scenario", root, name, "4", "250"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["exitcodes"] == [0, 0, 0, 0], proc.stderr
    assert info["buffered_at_fork"] > 0, "the parent had nothing buffered: the test proves less"
    parent = info["writer_before"]
    assert info["writer_after"] == parent, "forking changed the parent's writer_id"
    con = hp.raw_connection(root)
    sizes = dict(con.sql("SELECT writer_id, count(*) FROM events GROUP BY ALL").fetchall())
    assert len(sizes) == 5 and parent in sizes
    # the parent's 15 trials (5 logged, 5 buffered at fork, 5 after) and nothing else
    assert sizes[parent] == 1 + n_events(range(15))
    mine = {r[0] for r in con.sql("SELECT DISTINCT trial_id FROM events WHERE writer_id = ? "
                                  "AND trial_id IS NOT NULL", params=[parent]).fetchall()}
    assert mine == set(info["parent_trials"])
    children = {w: n for w, n in sizes.items() if w != parent}
    assert sum(children.values()) == 4 + n_events(range(1000, 2000))
    check_search(root, name, list(range(15)) + list(range(1000, 2000)), sizes)


def test_threads_share_one_search(tmp_path):
    w = Writer.for_store(tmp_path)
    w.flush_interval = 3600  # only complete() writes: the reads below prove it did
    s = hptrack.search("threads", store=tmp_path, durability="trial")
    barrier = threading.Barrier(8)
    acks, errors = [], []

    def work(i):
        try:
            barrier.wait(10)
            for k in range(i * 100, i * 100 + 100):
                trial_id, n = hp.run_trial(s, k)
                acks.append((k, trial_id, n))
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, inside the writer's critical sections
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert len(acks) == 800
    # before any seal or close: every acknowledged trial is already in the log on disk
    assert Store(tmp_path).segment_files() == []
    con = hp.raw_connection(tmp_path)
    hp.check_events_consistent(con)
    hp.check_trials_summary(con, acks)
    w.close()
    con = check_search(tmp_path, "threads", range(800), {w.writer_id: 1 + n_events(range(800))})
    hp.check_trials_detail(con, acks)
