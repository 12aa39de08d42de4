"""Write tests/data/golden_store_v<N>/: a small store in the current event
schema (v<N>, hptrack.schema.SCHEMA_VERSION), kept byte-for-byte in git so
later versions of hptrack must still read it. golden_store_v1 was written by
hptrack with schema v1, golden_store_v2 by schema v2 (same events; only the
event ids differ).

Run once per version (it refuses to overwrite): ``python tests/data/make_golden_store.py``.
Everything is fixed: writer ids, trial ids and every timestamp, so the expected
view contents in tests/core/test_schema_evolution.py can be hard-coded.

Contents:
- writer 601de0000000a001 wrote two sealed Parquet segments:
  * search "rf-grid" (grid, maximize f1): 4 trials: complete (reports, fold and
    test scores, metrics, params of every kind), failed, pruned at step 1, and
    one left running; an annotation; search_finished.
  * search "svm-random" (random, minimize loss): a complete trial, and a trial
    forked from it (trial_forked + trial_started) that completes.
- writer 601de0000000b002 crashed leaving an unsealed write-ahead log (two
  records): it re-opened "rf-grid", completed the running trial, and ran one
  more trial. Its header names host "golden-host", so the log is an orphan.
"""

import os
import sys
from datetime import datetime, timezone

from hptrack import schema
from hptrack._files.wal import LogFile, encode_rows
from hptrack._write.writer import Writer
from hptrack.api import search_id_for

HERE = os.path.dirname(os.path.abspath(__file__))

OUT = os.path.join(HERE, f"golden_store_v{schema.SCHEMA_VERSION}")
T0 = int(datetime(2026, 1, 15, 10, 0, tzinfo=timezone.utc).timestamp()) * 1_000_000
RF, SVM = search_id_for("rf-grid"), search_id_for("svm-random")


def ts(seconds):
    return T0 + int(seconds * 1_000_000)


def started(sid, name, strategy, direction, metric, space, seed, at):
    return {"type": "search_started", "search_id": sid, "ts": ts(at),
            "payload": {"name": name, "strategy": strategy, "direction": direction, "metric": metric,
                        "space": space, "seed": seed, "durability": "trial", "code_version": None,
                        "host": "golden-host", "user": "golden", "pid": 4242, "python": "3.11.9",
                        "dataset": "breast_cancer"}}


def rf_events():
    sid = RF
    ev = [started(sid, "rf-grid", "grid", "maximize", "f1",
                  {"max_depth": [3, 5, 8], "criterion": ["gini", "entropy"]}, 0, 0)]
    t = "00000000000000a0"
    ev += [
        {"type": "trial_started", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(1),
         "params": {"max_depth": 3, "criterion": "gini", "bootstrap": True, "lr": 0.1, "cap": None,
                    "big": 2**53 + 1, "huge": 2**64, "tiny": 5e-324, "label": "ünï 🎉 \"q\" it's"}},
        {"type": "trial_reported", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(2),
         "step": 1, "value": 0.8, "resource": 50.0, "payload": {"metrics": {"lr": 0.01}}},
        {"type": "trial_reported", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(3),
         "step": 2, "value": 0.85, "resource": 100.0},
        {"type": "trial_scored", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(4),
         "value": 0.9, "split": "fold", "fold": 0, "metric": "f1"},
        {"type": "trial_scored", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(5),
         "value": 0.92, "split": "fold", "fold": 1, "metric": "f1"},
        {"type": "trial_scored", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(6),
         "value": 0.88, "split": "test", "payload": {"n_samples": 114}},
        {"type": "trial_completed", "search_id": sid, "trial_id": t, "trial_number": 0, "ts": ts(7),
         "value": 0.91, "payload": {"metrics": {"test_f1": 0.88}}},
    ]
    t = "00000000000000a1"
    ev += [
        {"type": "trial_started", "search_id": sid, "trial_id": t, "trial_number": 1, "ts": ts(10),
         "params": {"max_depth": 5, "criterion": "entropy", "bootstrap": False, "lr": 0.2, "cap": 10,
                    "big": -(2**60), "huge": -(2**70), "tiny": -0.5, "label": ""}},
        {"type": "trial_failed", "search_id": sid, "trial_id": t, "trial_number": 1, "ts": ts(11),
         "payload": {"error_type": "ValueError", "error": "bad depth",
                     "traceback": "Traceback (most recent call last):\nValueError: bad depth\n"}},
    ]
    t = "00000000000000a2"
    ev += [
        {"type": "trial_started", "search_id": sid, "trial_id": t, "trial_number": 2, "ts": ts(20),
         "params": {"max_depth": 8, "criterion": "gini"}},
        {"type": "trial_reported", "search_id": sid, "trial_id": t, "trial_number": 2, "ts": ts(21),
         "step": 1, "value": 0.5},
        {"type": "trial_pruned", "search_id": sid, "trial_id": t, "trial_number": 2, "ts": ts(22), "step": 1},
    ]
    t = "00000000000000a3"  # left running here; the crashed writer's log completes it
    ev += [
        {"type": "trial_started", "search_id": sid, "trial_id": t, "trial_number": 3, "ts": ts(30),
         "params": {"max_depth": 3, "criterion": "entropy"}},
        {"type": "trial_reported", "search_id": sid, "trial_id": t, "trial_number": 3, "ts": ts(31),
         "step": 1, "value": 0.7},
        {"type": "annotation", "search_id": sid, "ts": ts(40), "payload": {"text": "first pass done"}},
        {"type": "search_finished", "search_id": sid, "ts": ts(41), "payload": {"status": "ok"}},
    ]
    return ev


def svm_events():
    sid = SVM
    ev = [started(sid, "svm-random", "random", "minimize", "loss", None, None, 100)]
    ev += [
        {"type": "trial_started", "search_id": sid, "trial_id": "00000000000000b0", "trial_number": 0,
         "ts": ts(101), "params": {"C": 1.5, "kernel": "rbf"}},
        {"type": "trial_completed", "search_id": sid, "trial_id": "00000000000000b0", "trial_number": 0,
         "ts": ts(102), "value": 0.12},
        {"type": "trial_forked", "search_id": sid, "trial_id": "00000000000000b1", "trial_number": 1,
         "ts": ts(103), "step": 0, "params": {"C": 3.0, "kernel": "rbf"},
         "payload": {"parent_trial_id": "00000000000000b0", "reason": "exploit"}},
        {"type": "trial_started", "search_id": sid, "trial_id": "00000000000000b1", "trial_number": 1,
         "ts": ts(104), "params": {"C": 3.0, "kernel": "rbf"}},
        {"type": "trial_completed", "search_id": sid, "trial_id": "00000000000000b1", "trial_number": 1,
         "ts": ts(105), "value": 0.1},
        {"type": "search_finished", "search_id": sid, "ts": ts(106), "payload": {"status": "ok"}},
    ]
    return ev


def crashed_writer_events():
    sid = RF
    return [
        started(sid, "rf-grid", "grid", "maximize", "f1",
                {"max_depth": [3, 5, 8], "criterion": ["gini", "entropy"]}, 0, 200),
        {"type": "trial_completed", "search_id": sid, "trial_id": "00000000000000a3", "trial_number": 3,
         "ts": ts(201), "value": 0.93},
        {"type": "trial_started", "search_id": sid, "trial_id": "00000000000000a4", "trial_number": 0,
         "ts": ts(202), "params": {"max_depth": 8, "criterion": "entropy", "bootstrap": True}},
        {"type": "trial_reported", "search_id": sid, "trial_id": "00000000000000a4", "trial_number": 0,
         "ts": ts(203), "step": 1, "value": 0.6},
        {"type": "trial_completed", "search_id": sid, "trial_id": "00000000000000a4", "trial_number": 0,
         "ts": ts(204), "value": 0.89, "payload": {"metrics": {"test_f1": 0.86}}},
    ]


def main():
    if os.path.exists(OUT):
        sys.exit(f"{OUT} exists; the golden store is written once and never regenerated")
    w = Writer(OUT)
    w.writer_id = "601de0000000a001"  # fixed, so event ids are too
    for e in rf_events():
        w.write(e)
    w.seal()
    for e in svm_events():
        w.write(e)
    w.close()

    rows = [schema.validate(e, 0) for e in crashed_writer_events()]
    os.makedirs(os.path.join(OUT, "wal"), exist_ok=True)
    writer_id = "601de0000000b002"
    log = LogFile(os.path.join(OUT, "wal", f"{writer_id}-{0:012d}.wal"),
                  {"writer_id": writer_id, "schema_version": schema.SCHEMA_VERSION,
                   "pid": 4243, "host": "golden-host"})
    log.append(encode_rows(0, rows[:2]), sync=True)
    log.append(encode_rows(2, rows[2:]), sync=True)
    log.close()
    for dirpath, _, files in sorted(os.walk(OUT)):
        for f in sorted(files):
            print(os.path.relpath(os.path.join(dirpath, f), OUT))


if __name__ == "__main__":
    main()
