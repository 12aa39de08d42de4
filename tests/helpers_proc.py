"""Child-process programs for the crash and concurrency tests.

Run as a script (``python tests/helpers_proc.py MODE ...``) it is a fresh
interpreter that writes to a store through the real hptrack API, so the parent
can kill it with a real signal. Imported, it provides the workers that
multiprocessing starts (spawn or fork) and :func:`expected`, which says what a
trial numbered ``k`` must contain, so the parent can check every acknowledged
trial field by field without trusting anything the child wrote about it.

Protocol on stdout, one line per event, each line written and flushed only
after the call it reports has returned:

    START <pid>
    ACK <k> <trial_id> <n_events>      after trial k's complete() returned
    DONE                               the loop ended on its own
"""

from __future__ import annotations

import json
import os
import sys

CRASH_SEARCH = "crash-loop"
ACTS = ("relu", "tanh", "gelu")


def expected(k: int) -> dict:
    """The content of trial ``k``: a pure function of k, so the parent can rebuild it.

    Values are chosen to be exact in binary (k/8, halves) or to survive a JSON
    round trip (repr of a float), so equality checks are exact.
    """
    n_reports = 2 + k % 4
    return {
        "params": {"lr": 0.5 + k * 0.001, "momentum": 1.0 / (k + 3),
                   "depth": 1 + k % 7, "width": 16 * (1 + k % 5), "act": ACTS[k % 3]},
        "reports": [(step, k + step / 8, 0.1 / (step + 1)) for step in range(n_reports)],
        "score": (k / 3, "fold", k % 3),
        "value": k + 0.25,
        "n_events": 1 + n_reports + 1 + 1,  # started, reports, scored, completed
    }


def run_trial(s, k: int):
    """Log trial k through the public API; returns (trial_id, n_events written)."""
    e = expected(k)
    t = s.trial(e["params"])
    for step, value, lr in e["reports"]:
        t.report(step, value, lr=lr)
    value, split, fold = e["score"]
    t.score(value, split=split, fold=fold)
    t.complete(e["value"])
    return t.trial_id, e["n_events"]


def _tune_writer(root, seal_events, flush_interval, batch_events=None):
    """Set the process's writer thresholds (e.g. seal small logs often) before any search opens it."""
    from hptrack._write.writer import Writer

    w = Writer.for_store(root)
    if seal_events:
        w.seal_events = seal_events
    if flush_interval:
        w.flush_interval = flush_interval
    if batch_events:
        w.batch_events = batch_events
    return w


def crash_loop(root, k0, durability, seal_events, flush_interval, n_trials, batch_events=None):
    """Log trials k0, k0+1, ... forever (or n_trials of them), acknowledging each."""
    import hptrack

    out = sys.stdout
    out.write(f"START {os.getpid()}\n")
    out.flush()
    _tune_writer(root, seal_events, flush_interval, batch_events)
    s = hptrack.search(CRASH_SEARCH, strategy="random", direction="maximize",
                       store=root, durability=durability)
    k = k0
    while n_trials < 0 or k < k0 + n_trials:
        trial_id, n = run_trial(s, k)
        out.write(f"ACK {k} {trial_id} {n}\n")
        out.flush()
        k += 1
    out.write("DONE\n")
    out.flush()


def parse_acks(text: str) -> list[tuple[int, str, int]]:
    """(k, trial_id, n_events) of every complete ACK line (a torn last line is ignored)."""
    acks = []
    for line in text.splitlines(keepends=True):
        parts = line.split()
        if line.endswith("\n") and len(parts) == 4 and parts[0] == "ACK":
            acks.append((int(parts[1]), parts[2], int(parts[3])))
    return acks


# --- concurrency workers (started by multiprocessing) ------------------------

def conc_worker(root, name, k0, n_trials, barrier, seal_events=None, flush_interval=None,
                halfway=None):
    """One of several processes writing ``n_trials`` trials into the search ``name``.

    With ``halfway`` (a barrier shared with the parent) the worker stops after
    half its trials until the parent has read the store, then goes on.
    """
    import hptrack

    _tune_writer(root, seal_events, flush_interval)
    s = hptrack.search(name, strategy="random", store=root, durability="trial")
    barrier.wait(timeout=60)
    for k in range(k0, k0 + n_trials):
        if halfway is not None and k == k0 + n_trials // 2:
            halfway.wait(timeout=60)   # everyone is halfway: the parent reads now
            halfway.wait(timeout=60)   # the parent has read
        run_trial(s, k)


def fork_scenario(root, name, n_children, n_trials):
    """A parent with a live writer (a log on disk and rows still buffered) forks children.

    Prints one JSON line: the parent's writer_id before and after, the trials it
    logged (k, trial_id) and the children's exit codes.
    """
    import multiprocessing

    import hptrack

    w = _tune_writer(root, None, 3600.0)  # no background flush: rows stay buffered
    s = hptrack.search(name, strategy="random", store=root, durability="batch")
    parent = [run_trial(s, k)[0] for k in range(5)]
    w.flush()                              # a live, locked log exists when we fork
    parent += [run_trial(s, k)[0] for k in range(5, 10)]
    buffered = len(w._pending)             # how many rows a child could wrongly re-write
    writer_before = w.writer_id
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n_children)
    procs = [ctx.Process(target=conc_worker,
                         args=(root, name, 1000 + i * n_trials, n_trials, barrier))
             for i in range(n_children)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    parent += [run_trial(s, k)[0] for k in range(10, 15)]
    print(json.dumps({"writer_before": writer_before, "writer_after": w.writer_id,
                      "buffered_at_fork": buffered, "parent_trials": parent,
                      "exitcodes": [p.exitcode for p in procs]}), flush=True)
    # leave through the normal exit path: atexit seals the parent's rows


def main(argv):
    mode = argv[0]
    if mode == "crash-loop":
        root, k0, durability, seal_events, flush_interval, n_trials = argv[1:7]
        batch_events = int(argv[7]) if len(argv) > 7 else None
        crash_loop(root, int(k0), durability, int(seal_events), float(flush_interval), int(n_trials),
                   batch_events)
    elif mode == "fork-scenario":
        root, name, n_children, n_trials = argv[1:5]
        fork_scenario(root, name, int(n_children), int(n_trials))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])


# --- checks on a store, shared by the crash and concurrency tests ------------
# They read the files themselves (segments through read_parquet, logs through
# read_log) as well as through hptrack.connect, so a reader bug that hides a
# problem in the views cannot also hide it here.

def raw_connection(root):
    """A DuckDB connection with ``raw``: every physical row, duplicates included,
    and ``ev``: the ``events`` view of hptrack.connect."""
    import hptrack
    from hptrack._files.store import Store
    from hptrack._read.views import wal_table

    st = Store(root)
    con = hptrack.connect(root)
    wal, left_out = wal_table(st)
    assert left_out == [], left_out
    con.register("_check_wal", wal)
    segs = st.segment_files()
    if segs:
        files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in segs) + "]"
        con.sql(f"CREATE VIEW raw AS SELECT * FROM read_parquet({files}, union_by_name = true) "
                "UNION ALL BY NAME SELECT * FROM _check_wal")
    else:
        con.sql("CREATE VIEW raw AS SELECT * FROM _check_wal")
    return con


def check_events_consistent(con, live=False) -> int:
    """Every event once in the view, duplicates on disk identical, ids unique. Returns the count.

    ``live``: writers are still running, so ``raw`` (read after the view's
    snapshot) may hold more events than the view, never fewer.
    """
    # full scan of every column: a partial or corrupt file fails here
    full = con.sql("SELECT * FROM events").to_arrow_table()
    (n, ids, keys), = con.sql(
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT (writer_id, seq)) FROM events").fetchall()
    assert full.num_rows == n
    assert n == ids, f"{n - ids} events share an event_id in the events view"
    assert n == keys, f"{n - keys} events share a (writer_id, seq) under different event_ids"
    (raw_ids,), = con.sql("SELECT count(DISTINCT event_id) FROM raw").fetchall()
    if live:
        assert raw_ids >= n, f"events vanished between two reads: {n} then {raw_ids}"
    else:
        assert raw_ids == n, f"the events view shows {n} events but the files hold {raw_ids} distinct ids"
    # a row stored twice (a log sealed just before a crash) must be the same event
    conflicts = con.sql(
        "SELECT event_id, count(DISTINCT (ts, writer_id, seq, type, search_id, trial_id, step, value, "
        "split, fold, payload, params::VARCHAR)) AS versions FROM raw GROUP BY event_id "
        "HAVING versions > 1 LIMIT 5").fetchall()
    assert not conflicts, f"different events stored under one event_id: {conflicts}"
    return n


def seq_gaps(con, where="true") -> list:
    """(writer_id, n, min_seq, max_seq) of every writer whose seq is not exactly 0..n-1."""
    return con.sql(
        f"SELECT writer_id, count(*) AS n, min(seq), max(seq) FROM events WHERE {where} "
        "GROUP BY writer_id HAVING min(seq) <> 0 OR max(seq) <> n - 1 OR count(DISTINCT seq) <> n"
    ).fetchall()


def check_trials_summary(con, acks) -> None:
    """Each acknowledged (k, trial_id, n_events): complete, right value, all its events, in SQL."""
    import pyarrow as pa

    if not acks:
        return
    exp = pa.table({"k": [a[0] for a in acks], "trial_id": [a[1] for a in acks],
                    "n_events": [a[2] for a in acks],
                    "want": [expected(a[0])["value"] for a in acks]})
    con.register("_expected", exp)
    bad = con.sql("""
        WITH ev AS (
            SELECT trial_id, count(*) AS n,
                   count(*) FILTER (WHERE type = 'trial_started') AS n_started,
                   count(*) FILTER (WHERE type = 'trial_completed') AS n_completed
            FROM events WHERE trial_id IN (SELECT trial_id FROM _expected) GROUP BY trial_id)
        SELECT x.k, x.trial_id, t.state, t.value, x.want, ev.n, x.n_events, ev.n_started, ev.n_completed
        FROM _expected x LEFT JOIN trials t USING (trial_id) LEFT JOIN ev USING (trial_id)
        WHERE t.state IS DISTINCT FROM 'complete' OR t.value IS DISTINCT FROM x.want
           OR ev.n IS DISTINCT FROM x.n_events OR ev.n_started <> 1 OR ev.n_completed <> 1
        ORDER BY x.k LIMIT 10""").fetchall()
    con.unregister("_expected")
    assert not bad, ("acknowledged trials missing or wrong "
                     "(k, trial_id, state, value, want, n_events, want_n, started, completed): "
                     f"{bad}")


def check_trials_detail(con, acks) -> None:
    """Field-by-field: params, every report, the score and the final value of each trial."""
    import pyarrow as pa

    if not acks:
        return
    con.register("_ids", pa.table({"trial_id": [a[1] for a in acks]}))
    rows = con.sql(
        "SELECT trial_id, type, step, value, split, fold, params, payload FROM events "
        "WHERE trial_id IN (SELECT trial_id FROM _ids) ORDER BY trial_id, seq").fetchall()
    con.unregister("_ids")
    by_trial: dict[str, list] = {}
    for r in rows:
        by_trial.setdefault(r[0], []).append(r[1:])
    for k, trial_id, n_events in acks:
        e = expected(k)
        got = by_trial.get(trial_id, [])
        assert len(got) == n_events == e["n_events"], (k, trial_id, got)
        started = [g for g in got if g[0] == "trial_started"]
        assert len(started) == 1, (k, got)
        params = {}
        for p in started[0][5]:
            params[p["name"]] = {"float": p["num"], "int": None if p["num"] is None else int(p["num"]),
                                 "str": p["str"]}[p["kind"]]
            expected_kind = {float: "float", int: "int", str: "str"}[type(e["params"][p["name"]])]
            assert p["kind"] == expected_kind, (k, p)
        assert params == e["params"], (k, params)
        reports = sorted((g[1], g[2], json.loads(g[6])["metrics"]["lr"])
                         for g in got if g[0] == "trial_reported")
        assert reports == e["reports"], (k, reports)
        scores = [(g[2], g[3], g[4]) for g in got if g[0] == "trial_scored"]
        assert scores == [e["score"]], (k, scores)
        completed = [g[2] for g in got if g[0] == "trial_completed"]
        assert completed == [e["value"]], (k, completed)
