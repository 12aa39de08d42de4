"""Stores written with schema v1 and v2 stay readable, and adding a column is not breaking.

tests/data/golden_store_v1/ (and _v2/, the same events with v2 event ids) was
written once by tests/data/make_golden_store.py
(two sealed Parquet segments of writer 601de0000000a001 and the unsealed
write-ahead log of a crashed writer 601de0000000b002) and is never regenerated:
every later hptrack must read it to exactly the contents hard-coded here. Each
test works on a copy, so nothing (compact, verify --quarantine) can alter the
committed files.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hptrack
from hptrack.schema import COLUMNS

VERSIONS = (1, 2)


def golden(version: int) -> Path:
    return Path(__file__).parents[1] / "data" / f"golden_store_v{version}"


def version_of(store: Path) -> int:
    return int(store.name.rsplit("_v", 1)[1])


# the first event id of each writer: v1 ids hold 30 bits of the writer id and
# 32 of seq, v2 ids the whole of both
FIRST_IDS = {
    1: ("019bc119-0100-7000-9807-780000000000", "019bc11c-0e40-7000-9807-780000000000"),
    2: ("019bc119-0100-7000-601de0000000a001-0000000000000000",
        "019bc11c-0e40-7000-601de0000000b002-0000000000000000"),
}
RF, SVM = "rf-grid-6ad4ba3ef0", "svm-random-4098dc0a92"
RF_SEGMENT = f"events/search={RF}/601de0000000a001-000000000000.parquet"
SVM_SEGMENT = f"events/search={SVM}/601de0000000a001-000000000017.parquet"
LOG = "wal/601de0000000b002-000000000000.wal"


def at(seconds):
    """The golden store's clock: 2026-01-15 10:00:00 UTC + seconds."""
    return datetime.fromtimestamp(datetime(2026, 1, 15, 10, tzinfo=timezone.utc).timestamp() + seconds,
                                  tz=timezone.utc)


@pytest.fixture(params=VERSIONS, ids=[f"v{v}" for v in VERSIONS])
def store(tmp_path, request):
    root = tmp_path / f"store_v{request.param}"
    shutil.copytree(golden(request.param), root)
    return root


def rows(con, sql):
    return con.sql(sql).fetchall()


# --- the golden files themselves ------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_golden_files_are_the_committed_ones(version):
    GOLDEN = golden(version)
    files = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file())
    assert files == [RF_SEGMENT, SVM_SEGMENT, LOG]
    for seg, n in ((RF_SEGMENT, 17), (SVM_SEGMENT, 7)):
        f = pq.ParquetFile(GOLDEN / seg)
        assert f.metadata.num_rows == n
        assert f.schema_arrow.names == list(COLUMNS)
    assert (GOLDEN / LOG).read_bytes()[:8] == b"HPTWAL01"


# --- every view, exactly ---------------------------------------------------------------

EXPECTED_SEARCHES = [
    # name, strategy, direction, metric, started_at, finished_at, n_trials, complete, failed, pruned,
    # running, seed, space
    ("rf-grid", "grid", "maximize", "f1", at(0), None, 5, 3, 1, 1, 0, 0,
     {"max_depth": [3, 5, 8], "criterion": ["gini", "entropy"]}),
    ("svm-random", "random", "minimize", "loss", at(100), at(106), 2, 2, 0, 0, 0, None, None),
]

EXPECTED_TRIALS = [
    # search, trial_id, number, state, value, started, finished, duration, last_step, n_reports,
    # error, metrics, recorded_number, writer_id
    (RF, "00000000000000a0", 0, "complete", 0.91, at(1), at(7), 6.0, 2, 2, None, {"test_f1": 0.88}, 0,
     "601de0000000a001"),
    (RF, "00000000000000a1", 1, "failed", None, at(10), at(11), 1.0, None, 0, "bad depth", None, 1,
     "601de0000000a001"),
    (RF, "00000000000000a2", 2, "pruned", None, at(20), at(22), 2.0, 1, 1, None, None, 2,
     "601de0000000a001"),
    # left running by the first writer; completed by the crashed writer's log
    (RF, "00000000000000a3", 3, "complete", 0.93, at(30), at(201), 171.0, 1, 1, None, None, 3,
     "601de0000000a001"),
    (RF, "00000000000000a4", 4, "complete", 0.89, at(202), at(204), 2.0, 1, 1, None, {"test_f1": 0.86}, 0,
     "601de0000000b002"),
    (SVM, "00000000000000b0", 0, "complete", 0.12, at(101), at(102), 1.0, None, 0, None, None, 0,
     "601de0000000a001"),
    (SVM, "00000000000000b1", 1, "complete", 0.1, at(104), at(105), 1.0, None, 0, None, None, 1,
     "601de0000000a001"),
]

EXPECTED_PARAMS = sorted([
    (RF, "00000000000000a0", "max_depth", "int", 3.0, None, "3"),
    (RF, "00000000000000a0", "criterion", "str", None, "gini", "gini"),
    (RF, "00000000000000a0", "bootstrap", "bool", 1.0, None, "true"),
    (RF, "00000000000000a0", "lr", "float", 0.1, None, "0.1"),
    (RF, "00000000000000a0", "cap", "null", None, None, "null"),
    (RF, "00000000000000a0", "big", "int", 9007199254740992.0, "9007199254740993", "9007199254740993"),
    (RF, "00000000000000a0", "huge", "int", 1.8446744073709552e19, "18446744073709551616",
     "18446744073709551616"),
    (RF, "00000000000000a0", "tiny", "float", 5e-324, None, "5e-324"),
    (RF, "00000000000000a0", "label", "str", None, "ünï 🎉 \"q\" it's", "ünï 🎉 \"q\" it's"),
    (RF, "00000000000000a1", "max_depth", "int", 5.0, None, "5"),
    (RF, "00000000000000a1", "criterion", "str", None, "entropy", "entropy"),
    (RF, "00000000000000a1", "bootstrap", "bool", 0.0, None, "false"),
    (RF, "00000000000000a1", "lr", "float", 0.2, None, "0.2"),
    (RF, "00000000000000a1", "cap", "int", 10.0, None, "10"),
    (RF, "00000000000000a1", "big", "int", -1.152921504606847e18, "-1152921504606846976",
     "-1152921504606846976"),
    (RF, "00000000000000a1", "huge", "int", -1.1805916207174113e21, "-1180591620717411303424",
     "-1180591620717411303424"),
    (RF, "00000000000000a1", "tiny", "float", -0.5, None, "-0.5"),
    (RF, "00000000000000a1", "label", "str", None, "", ""),
    (RF, "00000000000000a2", "max_depth", "int", 8.0, None, "8"),
    (RF, "00000000000000a2", "criterion", "str", None, "gini", "gini"),
    (RF, "00000000000000a3", "max_depth", "int", 3.0, None, "3"),
    (RF, "00000000000000a3", "criterion", "str", None, "entropy", "entropy"),
    (RF, "00000000000000a4", "max_depth", "int", 8.0, None, "8"),
    (RF, "00000000000000a4", "criterion", "str", None, "entropy", "entropy"),
    (RF, "00000000000000a4", "bootstrap", "bool", 1.0, None, "true"),
    # the forked trial's params are on both its trial_forked and trial_started: last wins (same values)
    (SVM, "00000000000000b0", "C", "float", 1.5, None, "1.5"),
    (SVM, "00000000000000b0", "kernel", "str", None, "rbf", "rbf"),
    (SVM, "00000000000000b1", "C", "float", 3.0, None, "3.0"),
    (SVM, "00000000000000b1", "kernel", "str", None, "rbf", "rbf"),
])

EXPECTED_REPORTS = [
    (RF, "00000000000000a0", 1, 50.0, 0.8, {"lr": 0.01}, at(2)),
    (RF, "00000000000000a0", 2, 100.0, 0.85, None, at(3)),
    (RF, "00000000000000a2", 1, None, 0.5, None, at(21)),
    (RF, "00000000000000a3", 1, None, 0.7, None, at(31)),
    (RF, "00000000000000a4", 1, None, 0.6, None, at(203)),
]

EXPECTED_SCORES = [
    (RF, "00000000000000a0", "fold", 0, "f1", 0.9, at(4), None),
    (RF, "00000000000000a0", "fold", 1, "f1", 0.92, at(5), None),
    (RF, "00000000000000a0", "test", None, "value", 0.88, at(6), {"n_samples": 114}),
]

EXPECTED_EVENT_TYPES = [("annotation", 1), ("search_finished", 2), ("search_started", 3),
                        ("trial_completed", 5), ("trial_failed", 1), ("trial_forked", 1),
                        ("trial_pruned", 1), ("trial_reported", 5), ("trial_scored", 3),
                        ("trial_started", 7)]


def _j(text):
    return None if text is None else json.loads(text)


def assert_golden_views(con, store):
    """Every view of the golden store, exactly."""
    v = version_of(store)
    assert rows(con, "SELECT type, count(*) FROM events GROUP BY 1 ORDER BY 1") == EXPECTED_EVENT_TYPES
    assert rows(con, "SELECT writer_id, min(seq), max(seq), count(*), min(event_id), "
                     "min(schema_version), max(schema_version) FROM events GROUP BY 1 ORDER BY 1") == [
        ("601de0000000a001", 0, 23, 24, FIRST_IDS[v][0], v, v),
        ("601de0000000b002", 0, 4, 5, FIRST_IDS[v][1], v, v),
    ]
    got = [(*r[:12], _j(r[12])) for r in rows(
        con, "SELECT name, strategy, direction, metric, started_at, finished_at, n_trials, n_complete, "
             "n_failed, n_pruned, n_running, seed, space FROM searches ORDER BY name")]
    assert got == EXPECTED_SEARCHES
    (payload,), = rows(con, f"SELECT payload FROM searches WHERE search_id = '{RF}'")
    assert json.loads(payload)["dataset"] == "breast_cancer"
    got = [(*r[:11], _j(r[11]), *r[12:]) for r in rows(
        con, "SELECT search_id, trial_id, trial_number, state, value, started_at, finished_at, duration_s, "
             "last_step, n_reports, error, metrics, recorded_number, writer_id FROM trials "
             "ORDER BY search_id, trial_number")]
    assert got == EXPECTED_TRIALS
    assert rows(con, "SELECT search_id, trial_id, name, kind, value_num, value_str, value FROM params "
                     "ORDER BY ALL") == EXPECTED_PARAMS
    got = [(*r[:5], _j(r[5]), r[6]) for r in rows(
        con, "SELECT search_id, trial_id, step, resource, value, metrics, ts FROM reports ORDER BY ts")]
    assert got == EXPECTED_REPORTS
    got = [(*r[:7], _j(r[7])) for r in rows(
        con, "SELECT search_id, trial_id, split, fold, metric, value, ts, payload FROM scores ORDER BY ts")]
    assert got == EXPECTED_SCORES
    (fork,), = rows(con, "SELECT payload FROM events WHERE type = 'trial_forked'")
    assert json.loads(fork) == {"parent_trial_id": "00000000000000b0", "reason": "exploit"}


def assert_golden_trials_frames(con):
    df = hptrack.trials("rf-grid", con=con)
    assert df.columns == ["trial_number", "trial_id", "state", "value", "started_at", "finished_at",
                          "duration_s", "last_step", "error", "big", "bootstrap", "cap", "criterion",
                          "huge", "label", "lr", "max_depth", "tiny"]
    assert {c: str(t) for c, t in df.schema.items() if c in ("big", "bootstrap", "cap", "criterion", "huge",
                                                                  "label", "lr", "max_depth", "tiny")} == {
        "big": "Int64", "bootstrap": "Boolean", "cap": "Int64", "criterion": "String", "huge": "String",
        "label": "String", "lr": "Float64", "max_depth": "Int64", "tiny": "Float64"}
    assert df["big"].to_list() == [2**53 + 1, -(2**60), None, None, None]
    assert df["huge"].to_list() == [str(2**64), str(-(2**70)), None, None, None]
    assert df["cap"].to_list() == [None, 10, None, None, None]
    assert df["bootstrap"].to_list() == [True, False, None, None, True]
    assert df["max_depth"].to_list() == [3, 5, 8, 3, 8]
    assert df["tiny"].to_list() == [5e-324, -0.5, None, None, None]
    assert df["label"].to_list() == ["ünï 🎉 \"q\" it's", "", None, None, None]
    assert df["state"].to_list() == ["complete", "failed", "pruned", "complete", "complete"]
    assert df["value"].to_list() == [0.91, None, None, 0.93, 0.89]
    svm = hptrack.trials("svm-random", con=con)
    assert svm.select("trial_id", "value", "C", "kernel").rows() == [
        ("00000000000000b0", 0.12, 1.5, "rbf"), ("00000000000000b1", 0.1, 3.0, "rbf")]


def test_golden_store_views(store):
    con = hptrack.connect(store)
    assert_golden_views(con, store)
    assert_golden_trials_frames(con)


def test_golden_store_as_of(store):
    """Before the crashed writer re-opened rf-grid (t=200), trial a3 was running
    and the search finished at t=41."""
    con = hptrack.connect(store, as_of=at(150))
    assert rows(con, "SELECT name, finished_at, n_trials, n_complete, n_running FROM searches ORDER BY 1") == [
        ("rf-grid", at(41), 4, 1, 1), ("svm-random", at(106), 2, 2, 0)]
    assert rows(con, "SELECT state, value, last_step FROM trials WHERE trial_id = '00000000000000a3'") == [
        ("running", None, 1)]


def test_golden_store_verifies_with_only_the_orphan_log(store):
    report = hptrack.verify(store)
    assert report.ok
    assert (report.n_segments, report.n_logs, report.n_events, report.n_searches) == (2, 1, 29, 2)
    assert [(p.kind, os.path.relpath(p.path, store)) for p in report.problems] == [("orphan_log", LOG)]


def test_golden_store_compacts_to_the_same_views(store):
    result = hptrack.compact(store)
    assert (result.sealed_logs, result.events, result.files_after) == (1, 29, 2)
    assert not list((store / "wal").glob("*.wal"))
    report = hptrack.verify(store)
    assert report.ok and report.problems == []
    con = hptrack.connect(store)
    assert_golden_views(con, store)
    assert_golden_trials_frames(con)


def test_golden_store_accepts_new_events(store):
    """A current writer appends to the old store; old and new events fold together."""
    with hptrack.search("rf-grid", store=store) as s:
        with s.trial({"max_depth": 3, "criterion": "gini"}) as t:
            t.complete(0.95)
    s.writer.close()
    con = hptrack.connect(store)
    assert rows(con, "SELECT n_trials, n_complete FROM searches WHERE name = 'rf-grid'") == [(6, 4)]
    assert rows(con, "SELECT trial_number, value FROM trials WHERE search_id = ? ORDER BY trial_number DESC "
                     "LIMIT 1".replace("?", f"'{RF}'")) == [(5, 0.95)]
    assert hptrack.verify(store).ok


# --- schema evolution: an added column, a missing column ------------------------------------

def _rewrite(path, table):
    pq.write_table(table, path, compression="zstd")


def test_extra_column_is_not_breaking(store):
    """A segment with every v1 column plus a new nullable one (as a later minor
    version would write) reads through connect() and every view; the new column
    appears in ``events``, null for rows of older files and of write-ahead logs."""
    path = store / RF_SEGMENT
    table = pq.read_table(path)
    gpu = pa.array([f"gpu{i % 2}" if i % 3 else None for i in range(table.num_rows)], pa.string())
    _rewrite(path, table.append_column("gpu", gpu))
    con = hptrack.connect(store)
    assert_golden_views(con, store)
    assert_golden_trials_frames(con)
    columns = [r[0] for r in rows(con, "DESCRIBE events")]
    assert columns[:17] == list(COLUMNS) and columns[17:] == ["gpu"]
    assert rows(con, "SELECT writer_id, count(gpu), count(*) FROM events GROUP BY 1 ORDER BY 1") == [
        ("601de0000000a001", 11, 24), ("601de0000000b002", 0, 5)]
    assert rows(con, f"SELECT count(*) FROM events WHERE search_id = '{SVM}' AND gpu IS NOT NULL") == [(0,)]
    report = hptrack.verify(store)
    assert report.ok and [p.kind for p in report.problems] == ["orphan_log"]


def test_extra_column_survives_compaction(store):
    path = store / RF_SEGMENT
    table = pq.read_table(path)
    _rewrite(path, table.append_column("gpu", pa.array(["a100"] * table.num_rows)))
    hptrack.compact(store)
    con = hptrack.connect(store)
    assert_golden_views(con, store)
    assert rows(con, "SELECT count(gpu) FROM events") == [(17,)]


def test_missing_column_is_refused_by_verify(store):
    """A segment lacking a v1 column (here ``resource``, null in most rows) is not
    an event file of any version: versions only add columns. ``verify`` reports
    it as a ``missing_columns`` error naming the file and the column, and
    ``compact`` leaves it in place."""
    path = store / SVM_SEGMENT
    _rewrite(path, pq.read_table(path).drop_columns(["resource"]))
    report = hptrack.verify(store)
    assert not report.ok
    (problem,) = report.errors
    assert problem.kind == "missing_columns" and problem.path == str(path)
    assert SVM_SEGMENT in problem.message and "resource" in problem.message
    hptrack.compact(store)
    assert path.exists()


def test_missing_column_segment_is_left_out_by_connect(store):
    """connect() leaves the defective file out with a warning naming it and the
    column, reads every other file completely, and refuses with strict=True."""
    path = store / SVM_SEGMENT
    _rewrite(path, pq.read_table(path).drop_columns(["resource"]))
    with pytest.warns(RuntimeWarning, match="resource") as caught:
        con = hptrack.connect(store)
    assert SVM_SEGMENT in str(caught[0].message)
    got = rows(con, "SELECT trial_id, state, value FROM trials ORDER BY search_id, trial_number")
    assert got == [(t[1], t[3], t[4]) for t in EXPECTED_TRIALS if t[0] == RF]
    assert rows(con, "SELECT count(*), count(DISTINCT search_id) FROM events") == [(22, 1)]
    assert rows(con, "SELECT count(*) FROM reports") == [(5,)]
    with pytest.raises(hptrack.StoreError, match="resource"):
        hptrack.connect(store, strict=True)
