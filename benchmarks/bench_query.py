"""Query benchmark at scale: a store of N trials, before and after compaction,
beside Optuna's SQLite and journal storages.

Run it on purpose (it is not part of the test suite)::

    .venv/bin/python benchmarks/bench_query.py                 # 1,000,000 trials, 200 searches
    .venv/bin/python benchmarks/bench_query.py --trials 200000
    .venv/bin/python benchmarks/bench_query.py --quick         # 20,000 trials, smoke run

Every trial has 12 events: trial_started with 5 params, 10 trial_reported,
then one terminal event (85% completed, 10% pruned, 5% failed). One search
holds a tenth of the trials (the ``hptrack report`` target); the others share
the rest. The store is built directly in the writer's row format
(``hptrack._files.rows.to_table`` + ``Store.write_segments``), one small segment per
simulated writer, because going through the per-trial API for a million trials
would measure the writer, not the reader (bench_write.py does that).

Figures printed, all from one run:

a. before compaction (many small files): connect, best-per-search, trial
   counts by state, a group-by over a param;
b. ``compact()`` time and the files it leaves (compact also stores each
   search's fold, see hptrack._read.projections);
c. the same queries after compaction, once folding the events
   (``connect(projections=False)``) and once reading the stored folds;
d. ``hptrack.report`` of the big search (library, quiet) in a subprocess:
   seconds and peak RSS;
e. Optuna: the big search's trials bulk-inserted into RDBStorage (SQLite) and a
   JournalStorage file (Optuna would take hours to add them one by one), then
   loaded in a fresh process: ``study.trials_dataframe()`` and
   ``study.best_trial``, against hptrack's ``hptrack.trials()`` and best-trial
   query on the same search from a fresh process. Optuna keeps one study per
   query, so the comparison is per study, at the big search's size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

STEPS = 10
OPTIMIZERS = ("adam", "sgd", "rmsprop")
BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
QUERIES = {
    "best per search": (
        "SELECT search_id, name, CASE WHEN direction = 'minimize' THEN lo ELSE hi END AS best, "
        "CASE WHEN direction = 'minimize' THEN lo_trial ELSE hi_trial END AS best_trial FROM ("
        "SELECT t.search_id, s.name, s.direction, min(t.value) AS lo, max(t.value) AS hi, "
        "arg_min(t.trial_number, t.value) AS lo_trial, arg_max(t.trial_number, t.value) AS hi_trial "
        "FROM trials t JOIN searches s USING (search_id) WHERE t.state = 'complete' "
        "GROUP BY t.search_id, s.name, s.direction)"),
    "trials by state": "SELECT state, count(*) FROM trials GROUP BY 1 ORDER BY 1",
    "group-by param": (
        "SELECT p.value AS optimizer, count(*) AS n, avg(t.value) AS mean_value "
        "FROM params p JOIN trials t USING (search_id, trial_id) "
        "WHERE p.name = 'optimizer' AND t.state = 'complete' GROUP BY 1 ORDER BY 1"),
}


def log(msg):
    print(msg, flush=True)


# --- building the store ---------------------------------------------------------------
def layout(n_trials, n_searches, per_segment):
    """[(search index, first trial number, n trials)] per segment: search 0 holds a
    tenth of the trials, the others share the rest."""
    big = max(1, n_trials // 10) if n_searches > 1 else n_trials
    counts = [big] + ([0] * (n_searches - 1))
    rest = n_trials - big
    for i in range(1, n_searches):
        counts[i] = rest // (n_searches - 1) + (1 if i - 1 < rest % (n_searches - 1) else 0)
    segs = []
    for s, c in enumerate(counts):
        for first in range(0, c, per_segment):
            segs.append((s, first, min(per_segment, c - first)))
    return segs, counts


def trial_params(rng, n):
    lr = 10 ** rng.uniform(-5, -1, n)
    layers = rng.integers(1, 9, n)
    dropout = rng.uniform(0, 0.5, n)
    opt = rng.integers(0, 3, n)
    batch = 2 ** rng.integers(4, 10, n)
    score = (0.9 - 0.05 * (np.log10(lr) + 3) ** 2 - 0.01 * np.abs(layers - 4) - 0.1 * dropout
             + 0.02 * (opt == 0) + rng.normal(0, 0.01, n))
    return lr, layers, dropout, opt, batch, score


def segment_rows(seg_index, search_index, search_id, first_number, n, seed):
    """Rows (writer form, with seq) of one simulated writer's segment."""
    rng = np.random.default_rng([seed, seg_index])
    lr, layers, dropout, opt, batch, score = trial_params(rng, n)
    fate = rng.random(n)
    rows = []
    seq = 0
    t = BASE_US + search_index * 3_600_000_000 + first_number * 2_000_000 // 1 + seg_index * 7
    if first_number == 0:
        space = {"lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
                 "n_layers": {"type": "int", "low": 1, "high": 8},
                 "dropout": {"type": "float", "low": 0.0, "high": 0.5},
                 "optimizer": {"type": "categorical", "choices": list(OPTIMIZERS)},
                 "batch_size": {"type": "int", "low": 16, "high": 512, "log": True}}
        payload = json.dumps({"name": f"search-{search_index:03d}", "strategy": "random",
                              "direction": "maximize", "metric": "accuracy", "space": space, "seed": 0})
        rows.append((seq, t, "search_started", search_id, None, None, None, None, None, None, None, None,
                     None, payload))
        seq += 1
        t += 1000
    for i in range(n):
        number = first_number + i
        trial_id = f"{seg_index:08x}{i:08x}{search_index:016x}"
        params = [["lr", "float", float(lr[i]), None], ["n_layers", "int", float(layers[i]), None],
                  ["dropout", "float", float(dropout[i]), None], ["optimizer", "str", None, OPTIMIZERS[opt[i]]],
                  ["batch_size", "int", float(batch[i]), None]]
        rows.append((seq, t, "trial_started", search_id, trial_id, number, None, None, None, None, None, None,
                     params, None))
        seq += 1
        final = float(score[i])
        for step in range(STEPS):
            t += 100_000
            rows.append((seq, t, "trial_reported", search_id, trial_id, None, step, float(step + 1),
                         final * (1 - 1 / (step + 2)), None, None, None, None, None))
            seq += 1
        t += 100_000
        if fate[i] < 0.85:
            rows.append((seq, t, "trial_completed", search_id, trial_id, None, None, None, final,
                         None, None, None, None, None))
        elif fate[i] < 0.95:
            rows.append((seq, t, "trial_pruned", search_id, trial_id, None, STEPS - 1, None, None,
                         None, None, None, None, None))
        else:
            rows.append((seq, t, "trial_failed", search_id, trial_id, None, None, None, None,
                         None, None, None, None, json.dumps({"error": "ValueError: diverged"})))
        seq += 1
        t += 10_000
    return rows


def _write_segments(args):
    root, jobs, seed = args
    from hptrack._files.rows import to_table
    from hptrack._files.store import Store
    from hptrack.api import search_id_for

    st = Store(root)
    n_events = 0
    for seg_index, search_index, first, n in jobs:
        sid = search_id_for(f"search-{search_index:03d}")
        rows = segment_rows(seg_index, search_index, sid, first, n, seed)
        writer_id = f"{seg_index:08x}" + "b" * 24
        st.write_segments(to_table(rows, writer_id), f"{writer_id}-{0:012d}.parquet")
        n_events += len(rows)
    return n_events


def build_store(root, n_trials, n_searches, per_segment, seed, procs):
    from multiprocessing import Pool

    segs, counts = layout(n_trials, n_searches, per_segment)
    jobs = [(i, s, first, n) for i, (s, first, n) in enumerate(segs)]
    chunks = [jobs[k::procs] for k in range(procs)]
    with Pool(procs) as pool:
        n_events = sum(pool.map(_write_segments, [(root, c, seed) for c in chunks]))
    return len(segs), n_events, counts


# --- measuring ----------------------------------------------------------------------
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


QUERY_CODE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import hptrack
from bench_query import QUERIES
t0 = time.perf_counter()
con = hptrack.connect(sys.argv[1], projections=sys.argv[3] == "1")
out = {"connect": time.perf_counter() - t0}
for name, sql in QUERIES.items():
    t0 = time.perf_counter()
    rows = con.sql(sql).fetchall()
    out[name] = time.perf_counter() - t0
    out["rows " + name] = len(rows)
    if name == "trials by state":
        out["states"] = dict(rows)
print(json.dumps(out))
"""


def run_queries(root, label, projections=True):
    """connect and each query, timed in a fresh process (as a user would run them)."""
    out, _, _ = in_subprocess(QUERY_CODE, root, os.path.join(REPO, "benchmarks"), "1" if projections else "0")
    log(f"  [{label}] connect: {out['connect']:.2f} s")
    for name in QUERIES:
        log(f"  [{label}] {name}: {out[name]:.2f} s ({out['rows ' + name]} rows)")
    return out


def in_subprocess(code, *args, timeout=None):
    """Run ``code`` in a fresh interpreter; returns (its JSON result, peak RSS in MiB)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"subprocess failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: only a new maximum is ours
    return json.loads(proc.stdout.strip().splitlines()[-1]), max(peak, before) / 1024, peak > before


REPORT_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import hptrack
rep = hptrack.report([sys.argv[2]], store=sys.argv[1], quiet=True)
dt = time.perf_counter() - t0
sr = rep.searches[0]
print(json.dumps({"seconds": dt, "n_trials": int(sr.trials.height), "best": sr.best["value"],
                  "importance": sr.importance_note or "computed",
                  # VmHWM, not ru_maxrss: after fork+exec that starts at the parent's size
                  "rss": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024}))
"""

HPTRACK_LOAD_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import hptrack
t1 = time.perf_counter()
df = hptrack.trials(sys.argv[2], store=sys.argv[1])
t2 = time.perf_counter()
con = hptrack.connect(sys.argv[1])
best = con.sql("SELECT trial_number, value FROM trials WHERE search_id = ? AND state = 'complete' "
               "ORDER BY value DESC, trial_number LIMIT 1", params=[sys.argv[2]]).fetchall()[0]
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "dataframe": t2 - t1, "best": t3 - t2, "n": df.height,
                  "best_value": best[1]}))
"""

OPTUNA_LOAD_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalStorage, JournalFileBackend
t1 = time.perf_counter()
kind, url, name = sys.argv[1:4]
storage = (RDBStorage(url) if kind == "sqlite" else JournalStorage(JournalFileBackend(url)))
study = optuna.load_study(study_name=name, storage=storage)
df = study.trials_dataframe()
t2 = time.perf_counter()
study = optuna.load_study(study_name=name, storage=(RDBStorage(url) if kind == "sqlite"
                                                   else JournalStorage(JournalFileBackend(url))))
best = study.best_trial
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "dataframe": t2 - t1, "best": t3 - t2, "n": len(df),
                  "best_value": best.value}))
"""


# --- Optuna stores, bulk-built from the same trials -----------------------------------
def _search_trials(root, search_id):
    """The big search's trials as hptrack recorded them (one row per trial, params as columns)."""
    import hptrack

    con = hptrack.connect(root)
    df = hptrack.trials(search_id, con=con)
    reps = con.sql("SELECT trial_id, step, value FROM reports WHERE search_id = ? ORDER BY trial_id, step",
                   params=[search_id]).fetchall()
    inter: dict[str, list] = {}
    for tid, step, v in reps:
        inter.setdefault(tid, []).append((step, v))
    return df, inter


def _distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution, distribution_to_json

    return {"lr": distribution_to_json(FloatDistribution(1e-5, 0.1, log=True)),
            "n_layers": distribution_to_json(IntDistribution(1, 8)),
            "dropout": distribution_to_json(FloatDistribution(0.0, 0.5)),
            "optimizer": distribution_to_json(CategoricalDistribution(list(OPTIMIZERS))),
            "batch_size": distribution_to_json(IntDistribution(16, 512, log=True))}


def _internal(name, v):
    return float(OPTIMIZERS.index(v)) if name == "optimizer" else float(v)


_STATE = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def build_optuna_sqlite(path, name, df, inter):
    import sqlite3

    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    storage = RDBStorage(url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
    storage.engine.dispose() if hasattr(storage, "engine") else None
    del storage
    dists = _distributions()
    db = sqlite3.connect(path)
    trials, params, values, inters = [], [], [], []
    for tid, row in enumerate(df.iter_rows(named=True), start=1):
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        trials.append((tid, row["trial_number"], study_id, _STATE[row["state"]],
                       row["started_at"].strftime(fmt), row["finished_at"].strftime(fmt)))
        for p in dists:
            params.append((tid, p, _internal(p, row[p]), dists[p]))
        if row["state"] == "complete":
            values.append((tid, 0, row["value"], "FINITE"))
        for step, v in inter.get(row["trial_id"], ()):
            inters.append((tid, step, v, "FINITE"))
    with db:
        db.executemany("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
                       "datetime_complete) VALUES (?, ?, ?, ?, ?, ?)", trials)
        db.executemany("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                       "VALUES (?, ?, ?, ?)", params)
        db.executemany("INSERT INTO trial_values (trial_id, objective, value, value_type) "
                       "VALUES (?, ?, ?, ?)", values)
        db.executemany("INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, "
                       "intermediate_value_type) VALUES (?, ?, ?, ?)", inters)
    db.close()
    return url


def build_optuna_journal(path, name, df, inter):
    """The journal as Optuna's own add_trial writes it: one CREATE_TRIAL line per finished trial."""
    dists = _distributions()
    state = {"complete": 1, "pruned": 2, "failed": 3}
    worker = "bench-0000"
    with open(path, "w") as f:
        f.write(json.dumps({"op_code": 0, "worker_id": worker, "study_name": name, "directions": [2]}) + "\n")
        for row in df.iter_rows(named=True):
            done = row["state"] == "complete"
            f.write(json.dumps({
                "op_code": 4, "worker_id": worker, "study_id": 0, "state": state[row["state"]],
                "value": row["value"] if done else None, "values": None,
                "datetime_start": row["started_at"].isoformat(timespec="microseconds"),
                "datetime_complete": row["finished_at"].isoformat(timespec="microseconds"),
                "distributions": dists, "params": {p: _internal(p, row[p]) for p in dists},
                "user_attrs": {}, "system_attrs": {},
                "intermediate_values": {str(s): v for s, v in inter.get(row["trial_id"], ())},
            }) + "\n")
    return path


# --- main ----------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--segments", type=int, default=2000, help="sealed files before compaction")
    ap.add_argument("--quick", action="store_true", help="20,000 trials, 20 searches, 100 segments")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temp dir in the repo)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--no-optuna", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--report-timeout", type=float, default=1800, help="seconds before the report is abandoned")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.quick:
        a.trials, a.searches, a.segments = 20_000, 20, 100
    per_segment = max(1, math.ceil(a.trials / a.segments))
    base = a.dir or os.path.join(REPO, ".bench-query")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_query-", dir=base)
    root = os.path.join(work, "store")
    try:
        return _run(a, root, work, per_segment)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


def _run(a, root, work, per_segment):
    import duckdb

    import hptrack
    from hptrack.api import search_id_for

    log(f"hptrack query benchmark: {a.trials:,} trials x 12 events, {a.searches} searches; "
        f"python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus")
    dt, (n_segs, n_events, counts) = timed(lambda: build_store(root, a.trials, a.searches, per_segment,
                                                                a.seed, a.procs))
    log(f"built {n_events:,} events in {n_segs:,} segments in {dt:.1f} s (not part of any figure)")
    res = {"before": run_queries(root, "before compaction")}
    dt, cr = timed(lambda: hptrack.compact(root))
    res["compact"] = dt
    log(f"  compact: {dt:.1f} s, files {cr.files_before:,} -> {cr.files_after:,}, {cr.events:,} events")
    res["folded"] = run_queries(root, "after compaction, folding events", projections=False)
    res["after"] = run_queries(root, "after compaction")
    expected = sum(counts)
    if any(sum(res[k]["states"].values()) != expected for k in ("before", "folded", "after")):
        got = sum(res["after"]["states"].values())
        log(f"INVALID: the store holds {got} trials, expected {expected}")
    big_id = search_id_for("search-000")
    big_n = counts[0]
    if not a.no_report:
        try:
            # peak RSS as the report process saw its own (the children's maximum may be a builder's)
            out, _, _ = in_subprocess(REPORT_CODE, root, big_id, timeout=a.report_timeout)
            log(f"  hptrack report of a {big_n:,}-trial search: {out['seconds']:.1f} s, peak RSS "
                f"{out['rss']:,.0f} MiB; importance {out['importance']}")
        except subprocess.TimeoutExpired:
            log(f"  hptrack report of a {big_n:,}-trial search: did not finish in {a.report_timeout:.0f} s")
    if not a.no_optuna:
        _optuna(a, root, work, big_id, big_n)
    log("")
    log("summary (seconds)          before   after compaction: folding events / stored folds")
    for q in ("connect", *QUERIES):
        log(f"  {q:<24} {res['before'][q]:7.2f} {res['folded'][q]:14.2f} {res['after'][q]:14.2f}")
    log(f"  compact: {res['compact']:.1f} s, {cr.files_before:,} files -> {cr.files_after:,}")
    return 0


def _optuna(a, root, work, big_id, big_n):
    dt, (df, inter) = timed(lambda: _search_trials(root, big_id))
    name = "search-000"
    dt_s, url = timed(lambda: build_optuna_sqlite(os.path.join(work, "optuna.db"), name, df, inter))
    dt_j, jpath = timed(lambda: build_optuna_journal(os.path.join(work, "optuna.jsonl"), name, df, inter))
    log(f"  optuna stores of the {big_n:,}-trial search bulk-built (sqlite {dt_s:.1f} s, journal {dt_j:.1f} s)")
    h, _, _ = in_subprocess(HPTRACK_LOAD_CODE, root, big_id)
    rows = [("hptrack (compacted)", h)]
    for kind, target in (("sqlite", url), ("journal", jpath)):
        o, _, _ = in_subprocess(OPTUNA_LOAD_CODE, kind, target, name)
        if o["n"] != h["n"] or abs(o["best_value"] - h["best_value"]) > 1e-12:
            log(f"  MISMATCH {kind}: {o['n']} trials best {o['best_value']} vs hptrack {h['n']} {h['best_value']}")
        rows.append((f"optuna {kind}", o))
    log(f"  fresh process, one {big_n:,}-trial study/search:   dataframe    best trial   (import excluded)")
    for label, o in rows:
        rd = o["dataframe"] / h["dataframe"]
        rb = o["best"] / h["best"]
        log(f"    {label:<22} {o['dataframe']:8.2f} s ({rd:5.1f}x) {o['best']:8.2f} s ({rb:5.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
