"""Damaged stores: connect reads the rest and names what it left out (or refuses
with --strict); verify --quarantine moves bad files aside without deleting them."""

import os
import shutil
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hptrack
from hptrack._maintain.verification import verify
from hptrack.errors import StoreError


@pytest.fixture()
def store(tmp_path):
    root = tmp_path / "store"
    with hptrack.search("good", store=root) as s:
        for i in range(3):
            s.trial({"i": i}).complete(i / 10)
    hptrack.Writer.for_store(root).close()  # sealed: one clean segment
    return root


def one_segment(root):
    (path,) = hptrack.Store(root).segment_files()
    return path


def damage(root, kind, good):
    """Add one damaged file of ``kind`` next to the good segment; return its path."""
    part = os.path.dirname(good)
    path = os.path.join(part, f"{kind}.parquet")
    if kind == "truncated":
        data = open(good, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif kind == "zero_byte":
        open(path, "wb").close()
    elif kind == "foreign":
        pq.write_table(pa.table({"a": [1, 2]}), path)
    elif kind == "future":
        table = pq.read_table(good)
        idx = table.schema.get_field_index("schema_version")
        newer = pa.array([hptrack.SCHEMA_VERSION + 1] * table.num_rows, pa.int16())
        table = table.set_column(idx, "schema_version", newer)
        table = table.set_column(table.schema.get_field_index("event_id"), "event_id",
                                 pa.array([f"future-{i}" for i in range(table.num_rows)]))
        pq.write_table(table, path)
    elif kind == "bad_log":
        path = os.path.join(hptrack.Store(root).wal_dir, "0123456789abcdef-000000000000.wal")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(b"this is not a log at all")
    return path


@pytest.mark.parametrize("kind", ["truncated", "zero_byte", "foreign", "future", "bad_log"])
def test_connect_reads_the_rest_and_names_the_file(store, kind):
    bad = damage(store, kind, one_segment(store))
    with pytest.warns(RuntimeWarning, match=os.path.basename(bad)):
        con = hptrack.connect(store)
    assert con.sql("SELECT count(*), sum(value) FROM trials").fetchall() == [(3, pytest.approx(0.3))]
    with pytest.raises(StoreError, match=os.path.basename(bad)):
        hptrack.connect(store, strict=True)
    report = verify(store)
    assert not report.ok and any(p.path == bad for p in report.errors)


def test_quarantine_moves_bad_files_aside_and_keeps_them(store):
    good = one_segment(store)
    bad = [damage(store, k, good) for k in ("truncated", "zero_byte", "future", "bad_log")]
    before = {p: open(p, "rb").read() for p in bad}
    report = verify(store, quarantine=True)
    moved = dict(report.quarantined)
    assert set(moved) == set(bad)
    for src, dst in moved.items():
        assert not os.path.exists(src) and open(dst, "rb").read() == before[src]
        assert dst.startswith(os.path.join(str(store), "quarantine") + os.sep)
    assert verify(store).ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out any more
        assert hptrack.connect(store, strict=True).sql("SELECT count(*) FROM trials").fetchall() == [(3,)]


def test_leftover_temp_files_and_torn_logs_are_read_past_silently(store):
    part = os.path.dirname(one_segment(store))
    shutil.copy(one_segment(store), os.path.join(part, ".half-written.parquet.1234abcd.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hptrack.connect(store, strict=True).sql("SELECT count(*) FROM trials").fetchall() == [(3,)]
    report = verify(store)
    assert report.ok and [p.kind for p in report.warnings] == ["temp_file"]
