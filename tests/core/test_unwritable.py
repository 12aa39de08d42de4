"""A store that cannot be written never takes the tuning run down: events are
kept in memory and retried, one warning is printed, and what could not be saved
goes to a fallback file at exit. A write that loses its disk half-way leaves no
partial file behind the final name."""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

import hptrack
from hptrack._maintain.compaction import compact
from hptrack._maintain.verification import verify

RUN = r"""
import sys, hptrack
store, n = sys.argv[1], int(sys.argv[2])
pad = "x" * int(sys.argv[3])
with hptrack.search("tuning", store=store) as s:
    for i in range(n):
        with s.trial({"i": i, "pad": pad}) as t:
            t.report(1, i / 2)
            t.complete(i)
print("run finished", flush=True)
"""


def run_child(store, n, pad, fallback):
    env = {**os.environ, "HPTRACK_FALLBACK_DIR": str(fallback)}
    return subprocess.run([sys.executable, "-c", RUN, str(store), str(n), str(pad)],
                          capture_output=True, text=True, env=env, timeout=120)


def restore(fallback, store):
    """What the message at exit tells the user to do."""
    wal = hptrack.Store(store).wal_dir
    os.makedirs(wal, exist_ok=True)
    for name in os.listdir(fallback):
        shutil.copy(os.path.join(fallback, name), wal)
    compact(store)


def test_unwritable_store_keeps_run_going_and_saves_to_fallback(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    store = blocker / "store"                       # every write fails: ENOTDIR
    out = run_child(store, 20, 10, tmp_path / "fallback")
    assert out.returncode == 0 and "run finished" in out.stdout
    assert out.stderr.count("cannot write to store") == 1     # warned once
    assert "could not save" in out.stderr and "copy that file into" in out.stderr
    (saved,) = os.listdir(tmp_path / "fallback")
    assert saved.endswith(".wal") and saved.split("-")[1] == "000000000000.wal"
    good = tmp_path / "good"
    restore(tmp_path / "fallback", good)
    assert verify(good).ok
    con = hptrack.connect(good)
    assert con.sql("SELECT count(*), sum(value) FROM trials WHERE state = 'complete'").fetchall() == [
        (20, sum(range(20)))]
    assert con.sql("SELECT count(*) FROM reports").fetchall() == [(20,)]


def test_write_that_loses_its_disk_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes the write fail part-way, as a full disk does."""
    code = r"""
import os, resource, signal, sys
import pyarrow as pa
import hptrack
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
st = hptrack.Store(sys.argv[1])
table = pa.table({"blob": [os.urandom(1000).hex() for _ in range(2000)]})
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    st.write_file(table, sys.argv[2], "segment.parquet")
except OSError as exc:
    print("refused", exc.errno)
print(sorted(os.listdir(sys.argv[2])))
"""
    folder = tmp_path / "part"
    folder.mkdir()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(folder)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["refused 27", "[]"]   # EFBIG; neither final nor temp file


@pytest.fixture()
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a 2 MiB tmpfs needs root here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_that_fills_mid_run_loses_nothing(tmp_path, tiny_disk):
    store = tiny_disk / "store"
    n = 1500                                         # about 4 MiB of events: twice the disk
    out = run_child(store, n, 2000, tmp_path / "fallback")
    assert out.returncode == 0 and "run finished" in out.stdout, out.stderr
    assert out.stderr.count("cannot write to store") == 1
    # Everything the full disk kept, plus the fallback file, is every event.
    rescued = tmp_path / f"rescued-{uuid.uuid4().hex[:6]}"
    shutil.copytree(store, rescued, ignore=shutil.ignore_patterns(".*"))
    restore(tmp_path / "fallback", rescued)
    report = verify(rescued)
    assert report.ok, [p.message for p in report.errors]
    con = hptrack.connect(rescued)
    assert con.sql("SELECT count(*), count(DISTINCT trial_id) FROM trials WHERE state = 'complete'"
                   ).fetchall() == [(n, n)]
    assert con.sql("SELECT count(*) = count(DISTINCT event_id) FROM events").fetchall() == [(True,)]
