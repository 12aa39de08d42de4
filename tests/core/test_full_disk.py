"""A store on a disk that fills up (issue 13, item 6).

With ``durability="trial"`` a trial's ``complete()`` may only return once its
events are on a disk: the store's log or, when the store refuses writes, the
fallback log (fsynced). A kill -9 after the disk fills must lose no
acknowledged trial, and copying the fallback log into ``wal/`` plus
``hptrack compact`` brings every one of them back. When neither disk takes the
rows the run goes on, and says so again and again, with counts.

The real thing is a small tmpfs (we run as root in CI); RLIMIT_FSIZE covers
the same path where mounting is not allowed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings

import helpers_proc as hp
import pytest

import hptrack
from hptrack._maintain.compaction import compact
from hptrack._maintain.verification import verify
from hptrack._write import writer as writer_mod

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers_proc.py")
# the crash-loop child, optionally with a cap on the size of any file it writes
LIMITED = r"""
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # EFBIG instead of death, as ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def mount_tmpfs(where, size="1m"):
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {r.stderr.strip()}")
    return where


@pytest.fixture()
def tiny_disk(tmp_path):
    mnt = mount_tmpfs(tmp_path / "tiny")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def start_child(store, workdir, fallback, limit=0):
    out = open(workdir / "child.out", "w")
    err = open(workdir / "child.err", "w")
    env = {**os.environ, "HPTRACK_FALLBACK_DIR": str(fallback)}
    # big seal threshold: the log grows until the disk is full
    proc = subprocess.Popen([sys.executable, "-c", LIMITED, str(limit), HELPER, "crash-loop", str(store),
                             "0", "trial", "1000000", "0.05", "-1", "0"],
                            stdout=out, stderr=err, cwd=workdir, env=env)
    return proc


def read(path):
    with open(path) as f:
        return f.read()


def kill_after_disk_full(proc, workdir, extra_acks=300, timeout=60):
    """Wait until the child reported the store refusing writes and acknowledged
    ``extra_acks`` more trials, then kill -9 it. Returns the acks."""
    deadline = time.monotonic() + timeout
    full_at = None
    while True:
        assert proc.poll() is None, f"child exited ({proc.returncode}): {read(workdir / 'child.err')[-2000:]}"
        assert time.monotonic() < deadline, "the disk never filled, or the child stalled"
        acks = hp.parse_acks(read(workdir / "child.out"))
        if full_at is None and "cannot write to store" in read(workdir / "child.err"):
            full_at = len(acks)
        if full_at is not None and len(acks) >= full_at + extra_acks:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return hp.parse_acks(read(workdir / "child.out")), full_at


def rescue(store, fallback, tmp_path):
    """What the warning tells the user: copy the fallback logs into wal/, compact."""
    rescued = tmp_path / f"rescued-{uuid.uuid4().hex[:6]}"
    shutil.copytree(store, rescued, ignore=shutil.ignore_patterns(".*"))
    wal = hptrack.Store(rescued).wal_dir
    os.makedirs(wal, exist_ok=True)
    for name in os.listdir(fallback) if os.path.isdir(fallback) else []:
        shutil.copy(os.path.join(fallback, name), wal)
    compact(rescued)
    return rescued


def check_kill_after_full_disk(store, fallback, tmp_path, proc, monkeypatch, extra_acks=300):
    acks, full_at = kill_after_disk_full(proc, tmp_path, extra_acks)
    assert full_at is not None and len(acks) > full_at
    monkeypatch.setenv("HPTRACK_FALLBACK_DIR", str(fallback))
    report = verify(store)                            # the store as the kill left it
    rescued = rescue(store, fallback, tmp_path)
    con = hp.raw_connection(rescued)
    hp.check_events_consistent(con)
    hp.check_trials_summary(con, acks)                 # every acknowledged trial, none lost
    hp.check_trials_detail(con, acks[-50:])
    assert hp.seq_gaps(con) == []
    # verify named the fallback log(s) and what to do
    found = [p for p in report.problems if p.kind == "fallback_log"]
    assert found and not report.ok, [p.message for p in report.problems]
    assert all("acknowledged events" in p.message and "hptrack compact" in p.message for p in found)
    rescued_report = verify(rescued)
    assert rescued_report.ok, [p.message for p in rescued_report.errors]
    return len(acks), full_at


def test_kill_after_the_disk_filled_loses_no_acknowledged_trial(tmp_path, tiny_disk, monkeypatch):
    store, fallback = tiny_disk / "store", tmp_path / "fallback"
    proc = start_child(store, tmp_path, fallback)
    n, full_at = check_kill_after_full_disk(store, fallback, tmp_path, proc, monkeypatch)
    print(f"{n} acknowledged, the disk filled after {full_at}")


def test_kill_after_the_file_size_limit_loses_no_acknowledged_trial(tmp_path, monkeypatch):
    # no mount needed: a 256 KiB cap on every file the child writes; each fallback
    # log fills up too, so the child also has to start new fallback logs
    store, fallback = tmp_path / "store", tmp_path / "fallback"
    proc = start_child(store, tmp_path, fallback, limit=256 * 1024)
    check_kill_after_full_disk(store, fallback, tmp_path, proc, monkeypatch, extra_acks=1500)
    assert len(os.listdir(fallback)) >= 2


RUN = r"""
import sys, hptrack
store, n = sys.argv[1], int(sys.argv[2])
with hptrack.search("tuning", store=store) as s:
    for i in range(n):
        with s.trial({"i": i}) as t:
            t.report(1, i / 2)
            t.complete(i)
print("run finished", flush=True)
"""


def test_fallback_message_states_the_real_count(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    env = {**os.environ, "HPTRACK_FALLBACK_DIR": str(tmp_path / "fallback")}
    out = subprocess.run([sys.executable, "-c", RUN, str(blocker / "store"), "20"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "run finished" in out.stdout, out.stderr
    # search_started, 20 x (started, reported, completed), search_finished
    assert "could not save 62 events to store" in out.stderr, out.stderr


def test_neither_disk_writable_run_goes_on_and_says_so_repeatedly(tmp_path, tiny_disk, monkeypatch):
    """The store's disk is full and the fallback folder cannot be created: the
    run goes on, the warning repeats with growing counts; once space is freed
    every event reaches the store, none lost."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("HPTRACK_FALLBACK_DIR", str(blocker / "fallback"))   # ENOTDIR
    monkeypatch.setattr(writer_mod, "STORE_RETRY_S", 0.0)
    store = tiny_disk / "store"
    s = hptrack.search("nowhere", store=store)
    w = s.writer
    w.flush_interval = 3600
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:               # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = []
        for i in range(300):
            t = s.trial({"i": i})
            t.complete(float(i))                # returns: the run goes on
            ids.append(t.trial_id)
    loud = [str(c.message) for c in caught if "NOT durable" in str(c.message)]
    counts = [int(re.match(r"hptrack: (\d+) events", m).group(1)) for m in loud]
    assert len(counts) >= 3, loud                # repeated, not once per process
    assert counts == sorted(set(counts)) and counts[-1] >= 300, counts   # with the count at the time
    assert len(w._pending) == 601                # search_started + 300 x (started, completed)
    os.unlink(filler)                           # space again
    t = s.trial({"i": 300})
    t.complete(300.0)
    assert w._pending == []
    w.close()
    report = verify(store)
    assert report.ok, [p.message for p in report.errors]
    con = hptrack.connect(store)
    assert con.sql("SELECT count(*) FROM trials WHERE state = 'complete'").fetchall() == [(301,)]
    assert hp.seq_gaps(hp.raw_connection(store)) == []
