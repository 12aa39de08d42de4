"""Stores on object storage: any fsspec URL is a store.

The S3 tests run against a real S3-compatible server on 127.0.0.1 (moto's
server mode, a dev dependency; see conftest.py), reached through s3fs exactly
as a team's bucket would be; writer processes find it through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import helpers_proc as hp
import pytest

import hptrack
from hptrack._files.store import Store, local_dir
from hptrack._write.writer import Writer

s3fs = pytest.importorskip("s3fs", reason="s3fs (s3 extra) is how hptrack reaches S3")

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers_proc.py")
# the server and the s3_store fixture are in conftest.py


def record(url, name, n, start=0, **kw):
    s = hptrack.search(name, store=url, direction="maximize", strategy="random", **kw)
    for k in range(start, start + n):
        with s.trial(params={"lr": 0.01 * (k + 1), "depth": k % 3}) as t:
            t.report(1, k / 10)
            t.complete(float(k))
    return s


def objects(url):
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return sorted(fs.find(url))


def test_s3_store_round_trip(s3_store, tmp_path):
    record(s3_store, "bucketed", 6)
    Writer.for_store(s3_store).close()
    keys = objects(s3_store)
    assert keys and all("/events/search=" in k and k.endswith(".parquet") for k in keys), keys
    # the write-ahead log lives on this machine, and is gone once sealed
    st = Store(s3_store)
    assert st.wal_dir.startswith(str(tmp_path / "cache")) and st.wal_files() == []
    df = hptrack.trials("bucketed", store=s3_store).sort("trial_number")
    assert df["value"].to_list() == [float(k) for k in range(6)]
    assert df["state"].to_list() == ["complete"] * 6
    con = hptrack.connect(s3_store)
    assert con.sql("SELECT count(*) FROM reports").fetchall() == [(6,)]
    assert hptrack.verify(s3_store).ok


def test_reader_elsewhere_sees_sealed_events_only(s3_store, tmp_path, monkeypatch):
    """Another host has none of this writer's local logs: it sees what was sealed to the bucket."""
    record(s3_store, "two-hosts", 3)
    Writer.for_store(s3_store).close()
    w = Writer.for_store(s3_store)
    w.flush_interval = 3600.0  # keep the next trials in this host's log
    record(s3_store, "two-hosts", 2, start=3)
    w.flush()
    assert len(hptrack.trials("two-hosts", store=s3_store)) == 5  # this host reads its logs too
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "other-host"))
    assert len(hptrack.trials("two-hosts", store=s3_store)) == 3
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "cache"))
    w.close()
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "other-host"))
    assert len(hptrack.trials("two-hosts", store=s3_store)) == 5


def test_two_writer_processes_then_compaction(s3_store, tmp_path):
    procs = [subprocess.Popen(
        [sys.executable, HELPER, "crash-loop", s3_store, str(k0), "trial", "4", "0.01", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path) for k0 in (0, 1000)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "cannot write" not in err, err[-2000:]
    acks = [a for out, _ in outs for a in hp.parse_acks(out)]
    assert len(acks) == 24
    before = [k for k in objects(s3_store) if "/events/" in k]
    assert len(before) >= 2  # at least one segment per writer

    result = hptrack.compact(s3_store)  # merged files stay for the grace period, left out by readers
    assert result.merged_files == len(before) and result.awaiting_deletion == len(before)
    assert result.files_after == 1 and result.deleted_files == 0
    result = hptrack.compact(s3_store, grace=0)  # a later run past the grace period deletes them
    assert result.deleted_files == len(before) and result.awaiting_deletion == 0
    after = [k for k in objects(s3_store) if "/events/" in k]
    assert len(after) == 1 and after[0].split("/")[-1].startswith("compact-"), after
    # and the search's stored fold, which readers use from now on
    assert sorted(k.rsplit(".", 2)[1] for k in objects(s3_store) if "/views/" in k) == ["params", "trials"]
    assert result.projected_searches == 0  # stored by the first run
    assert result.files_after == 1 and result.files_before == 1
    con = hp.raw_connection(s3_store)
    (n_search_events,), = con.sql("SELECT count(*) FROM events WHERE trial_id IS NULL").fetchall()
    assert hp.check_events_consistent(con) == sum(a[2] for a in acks) + n_search_events
    assert hp.seq_gaps(con) == []
    hp.check_trials_summary(con, acks)
    hp.check_trials_detail(con, acks)
    assert hptrack.verify(s3_store).ok


def test_killed_writer_loses_no_acknowledged_trial(s3_store, tmp_path, monkeypatch):
    """SIGKILL leaves acknowledged events in this host's log; compact puts them in the bucket."""
    out = open(tmp_path / "child.out", "w")
    child = subprocess.Popen(
        [sys.executable, HELPER, "crash-loop", s3_store, "0", "trial", "1000000", "3600", "-1"],
        stdout=out, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(hp.parse_acks((tmp_path / "child.out").read_text())) < 5:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        out.close()
    acks = hp.parse_acks((tmp_path / "child.out").read_text())
    assert Store(s3_store).wal_files(), "the killed writer's log should be on local disk"
    hptrack.compact(s3_store)
    assert Store(s3_store).wal_files() == []
    # a reader on another machine now sees every acknowledged trial
    monkeypatch.setenv("HPTRACK_CACHE_DIR", str(tmp_path / "other-host"))
    con = hp.raw_connection(s3_store)
    hp.check_trials_summary(con, acks)
    hp.check_trials_detail(con, acks)


def test_put_is_all_or_nothing_and_failures_keep_events(s3_store, tmp_path):
    """A store whose bucket is missing: nothing half-written, the events wait in the local log."""
    url = f"s3://missing-{uuid.uuid4().hex[:8]}/runs"
    with pytest.warns(RuntimeWarning, match="cannot write to store"):
        record(url, "later", 3)
        Writer.for_store(url).seal()
    st = Store(url)
    assert st.segment_files() == []
    assert st.wal_files(), "acknowledged events must stay in the local log"
    s3fs.S3FileSystem().mkdir(url.split("/")[2])
    Writer.for_store(url).close()
    assert st.wal_files() == []
    assert hptrack.trials("later", store=url)["value"].to_list() == [0.0, 1.0, 2.0]


def test_query_cli_on_s3_store(s3_store):
    from click.testing import CliRunner

    from hptrack.cli.main import cli

    record(s3_store, "cli", 4)
    Writer.for_store(s3_store).close()
    res = CliRunner().invoke(cli, ["--store", s3_store, "query", "SELECT count(*) AS n FROM trials",
                                   "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines() == ["n", "4"]
    other = s3_store.rsplit("/", 1)[0] + "/elsewhere/x.parquet"  # same bucket, another prefix
    res = CliRunner().invoke(cli, ["--store", s3_store, "query", f"SELECT * FROM read_parquet('{other}')"])
    assert res.exit_code != 0 and "outside the store" in res.output, res.output
    res = CliRunner().invoke(cli, ["--store", s3_store, "ls"])
    assert res.exit_code == 0 and "cli" in res.output


def test_memory_store():
    url = f"memory://hptrack-{uuid.uuid4().hex[:8]}"
    try:
        record(url, "in-memory", 4)
        Writer.for_store(url).close()
        assert Store(url).segment_files()[0].startswith(url + "/events/search=")
        assert hptrack.trials("in-memory", store=url)["value"].to_list() == [0.0, 1.0, 2.0, 3.0]
        hptrack.compact(url)
        assert len(Store(url).segment_files()) == 1
        assert len(hptrack.trials("in-memory", store=url)) == 4
    finally:
        Writer.for_store(url).close()


def test_file_url_is_the_local_folder(tmp_path):
    assert Store(f"file://{tmp_path}/s").root == str(tmp_path / "s")
    assert not Store(f"file://{tmp_path}/s").remote
    assert local_dir("s3://a/b") != local_dir("s3://a/c")


def test_unknown_url_is_a_clear_error():
    with pytest.raises(hptrack.StoreError, match=r"cannot open the store nosuch://b/x .*fsspec URL"):
        hptrack.search("x", store="nosuch://b/x")
