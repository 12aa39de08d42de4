"""Hostile or odd files in a store (issue 13, item 8).

Each case adds one file to a copy of a good store: a log whose header is
``null``, a record that passes its checksum but unpickles into nonsense, a
length prefix claiming 4 GiB, a FIFO or a link to /dev/zero named like a log or
a segment, a 20 GiB sparse log, links out of the store, JSON text holding lone
surrogate escapes... Then, through the CLI, in a subprocess with a timeout and a
2 GiB data limit (a hang or a blow-up fails the case, not the machine):

- ``ls``, ``report`` and ``query`` work, and count the good trials;
- ``verify`` names the file; ``verify --quarantine`` moves it (when it is an
  error) and then ``verify`` is OK and every good trial is still there.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hptrack
from hptrack import schema
from hptrack._files import wal
from hptrack._files.store import Store

N_GOOD = 10            # trials of the fixture store: 5 + 3 sealed and compacted, 2 in a crashed writer's log
TIMEOUT_S = int(os.environ.get("HOSTILE_TIMEOUT_S", "40"))
MEMORY_LIMIT = 2 << 30

# --- the good store ------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _rows(search_id: str, n: int, fail_last=False) -> list[tuple]:
    now = schema.to_micros(1_790_000_000_000_000)
    events = [{"type": "search_started", "search_id": search_id, "payload": {"name": search_id}}]
    for i in range(n):
        tid = f"{search_id}-{i:04d}"
        events.append({"type": "trial_started", "search_id": search_id, "trial_id": tid, "params": {"i": i}})
        if fail_last and i == n - 1:
            events.append({"type": "trial_failed", "search_id": search_id, "trial_id": tid,
                           "payload": {"error": "boom", "error_type": "ValueError"}})
        else:
            events.append({"type": "trial_completed", "search_id": search_id, "trial_id": tid, "value": i / 10})
    return [schema.validate(e, now + k) for k, e in enumerate(events)]


def write_log(path, rows=(), header=None, records=(), writer_id="0123456789abcdef"):
    """A write-ahead log written by hand: ``header`` (default a valid one), then
    ``rows`` as one record, then raw ``records`` (payloads, framed here)."""
    header = header if header is not None else {
        "writer_id": writer_id, "schema_version": 1, "pid": _dead_pid(),
        "host": socket.gethostname(), "encoding": wal.ENCODING}
    data = wal.MAGIC + frame(header if isinstance(header, bytes) else json.dumps(header).encode())
    if rows:
        data += wal.encode_rows(0, list(rows))
    for payload in records:
        data += frame(payload)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(data)
    return path


def frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("good") / "store"
    with hptrack.search("good", store=root) as s:
        for i in range(5):
            t = s.trial({"i": i})
            t.complete(i / 10) if i < 4 else t.fail("boom")
    with hptrack.search("other", store=root) as s:
        for i in range(3):
            s.trial({"i": i}).complete(i)
    hptrack.Writer.for_store(root).close()
    hptrack.compact(root)
    write_log(os.path.join(root, "wal", "00c0ffee00c0ffee-000000000000.wal"), _rows("logged", 2),
              writer_id="00c0ffee00c0ffee")
    report = hptrack.verify(root)
    assert report.ok, report.problems
    return root


# --- the hostile files -----------------------------------------------------------
# Each makes one odd file in ``root`` and returns (its path, whether it is an error that
# verify --quarantine moves, trials the readers see while it is there).

def _wal(root, name="0123456789abcdef-000000000000.wal"):
    os.makedirs(os.path.join(root, "wal"), exist_ok=True)
    return os.path.join(root, "wal", name)


def _seg(root, name="0123456789abcdef-000000000000.parquet"):
    return os.path.join(os.path.dirname(Store(root).segment_files()[0]), name)


def _old(path):
    os.utime(path, (1e9, 1e9), follow_symlinks=False)  # past the grace of a log being created
    return path


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=5)


def _row(**change):
    row = list(_rows("hostile", 1)[1])
    for k, v in change.items():
        row[schema.ROW_FIELDS.index(k) - 1] = v
    return tuple(row)


def _deep_list(depth: int) -> bytes:
    # built opcode by opcode: pickle.dumps would recurse
    return b"\x80\x05K\x00" + b"]" * depth + b"a" * (depth - 1) + b"]" + b"a" + b"\x86."


def _sparse(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)
    return path


def _mkfifo(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)
    return path


def _symlink(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    return path


def _socket(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    here = os.getcwd()
    os.chdir(os.path.dirname(path))  # a socket's path is limited to ~100 bytes
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.basename(path))
        s.close()
    finally:
        os.chdir(here)
    return path


def _segment_of(rows, path, payload_of=None):
    table = hptrack._files.rows.to_table(rows, "0123456789abcdef", first_seq=0)
    if payload_of is not None:
        table = table.set_column(table.schema.get_field_index("payload"), "payload",
                                 pa.array([payload_of(t, p) for t, p in zip(
                                     table["type"].to_pylist(), table["payload"].to_pylist())], pa.string()))
    pq.write_table(table, path)
    return path


def _surrogate_error(t, p):
    # an exception message naming an undecodable file, as json.dumps wrote it before escaping
    return '{"error": "cannot open \\udcff\\udcfe.csv", "error_type": "OSError"}' if t == "trial_failed" else p


def _corrupt_footer_length(root, out):
    seg = Store(root).segment_files()[0]
    data = bytearray(open(seg, "rb").read())
    data[-8:-4] = struct.pack("<I", 0xFFFFFFF0)
    Path(out).write_bytes(bytes(data))
    return out


ERROR, WARNING, FINE = "error", "warning", None

CASES = {
    # --- write-ahead logs: headers --------------------------------------------------
    "wal_header_null": (lambda r, o: write_log(_wal(r), _rows("hostile", 1), header=b"null"), ERROR, N_GOOD),
    "wal_header_list": (lambda r, o: write_log(_wal(r), _rows("hostile", 1), header=b"[1, 2]"), ERROR, N_GOOD),
    "wal_header_number": (lambda r, o: write_log(_wal(r), _rows("hostile", 1), header=b"42"), ERROR, N_GOOD),
    "wal_header_huge_string": (lambda r, o: write_log(_wal(r), header=json.dumps("x" * (8 << 20)).encode()),
                               ERROR, N_GOOD),
    "wal_header_no_writer": (lambda r, o: write_log(_wal(r), _rows("hostile", 1),
                                                    header={"encoding": wal.ENCODING}), ERROR, N_GOOD),
    "wal_empty_file": (lambda r, o: _old(write_bytes(_wal(r), b"")), WARNING, N_GOOD),
    "wal_wrong_magic": (lambda r, o: write_bytes(_wal(r), b"HPTWAL99" + b"\0" * 64), ERROR, N_GOOD),
    "wal_truncated_header": (lambda r, o: _old(write_bytes(_wal(r), wal.MAGIC + struct.pack("<II", 100, 0)
                                                           + b"{" * 10)), WARNING, N_GOOD),
    # --- write-ahead logs: records that pass their checksum -------------------------
    "wal_pickle_build": (lambda r, o: write_log(_wal(r), records=[b"\x80\x05]}b."]), ERROR, N_GOOD),
    "wal_pickle_reduce": (lambda r, o: write_log(_wal(r), records=[b"\x80\x05])R."]), ERROR, N_GOOD),
    "wal_pickle_global": (lambda r, o: write_log(_wal(r), records=[_pickled((0, [os.system]))]), ERROR, N_GOOD),
    "wal_pickle_persid": (lambda r, o: write_log(_wal(r), records=[b"\x80\x05X\x01\x00\x00\x00aQ."]),
                          ERROR, N_GOOD),
    "wal_pickle_deep_list": (lambda r, o: write_log(_wal(r), records=[_deep_list(200_000)]), ERROR, N_GOOD),
    "wal_pickle_huge_int": (lambda r, o: write_log(_wal(r), records=[_pickled((0, [_row(ts=10 ** 5000)]))]),
                            ERROR, N_GOOD),
    "wal_pickle_bytes": (lambda r, o: write_log(_wal(r), records=[_pickled((0, [_row(search_id=b"\xff\xfe")]))]),
                         ERROR, N_GOOD),
    "wal_pickle_short_row": (lambda r, o: write_log(_wal(r), records=[_pickled((0, [_row()[:5]]))]),
                             ERROR, N_GOOD),
    "wal_pickle_not_a_batch": (lambda r, o: write_log(_wal(r), records=[_pickled({"a": 1})]), ERROR, N_GOOD),
    "wal_huge_length": (lambda r, o: write_bytes(_wal(r), open(write_log(_wal(r)), "rb").read()
                                                 + struct.pack("<II", 0xFFFFFFF0, 0) + b"x" * 100), ERROR, N_GOOD),
    "wal_sparse_20g": (lambda r, o: _sparse(write_log(_wal(r), _rows("hostile", 1)), 20 << 30), ERROR, N_GOOD),
    # --- write-ahead logs: not regular files ---------------------------------------
    "wal_fifo": (lambda r, o: _mkfifo(_wal(r)), ERROR, N_GOOD),
    "wal_link_dev_zero": (lambda r, o: _symlink("/dev/zero", _wal(r)), ERROR, N_GOOD),
    "wal_link_outside": (lambda r, o: _symlink(write_log(o / "x.wal", _rows("hostile", 1)), _wal(r)), ERROR, N_GOOD),
    "wal_link_dangling": (lambda r, o: _symlink(str(o / "gone.wal"), _wal(r)), ERROR, N_GOOD),
    "wal_directory": (lambda r, o: mkdir(_wal(r)), ERROR, N_GOOD),
    "wal_socket": (lambda r, o: _socket(_wal(r, "s.wal")), ERROR, N_GOOD),
    "wal_hardlink_segment": (lambda r, o: link(Store(r).segment_files()[0], _wal(r)), ERROR, N_GOOD),
    # --- segments ----------------------------------------------------------------------
    "seg_zero_byte": (lambda r, o: write_bytes(_seg(r), b""), ERROR, N_GOOD),
    "seg_foreign_schema": (lambda r, o: pq.write_table(pa.table({"a": [1]}), _seg(r)) or _seg(r), ERROR, N_GOOD),
    "seg_corrupt_footer_length": (lambda r, o: _corrupt_footer_length(r, _seg(r)), ERROR, N_GOOD),
    "seg_sparse_20g": (lambda r, o: _sparse(write_bytes(_seg(r), b"PAR1"), 20 << 30), ERROR, N_GOOD),
    "seg_directory": (lambda r, o: mkdir(_seg(r)), ERROR, N_GOOD),
    "seg_fifo": (lambda r, o: _mkfifo(_seg(r)), ERROR, N_GOOD),
    "seg_link_dev_zero": (lambda r, o: _symlink("/dev/zero", _seg(r)), ERROR, N_GOOD),
    "seg_link_outside": (lambda r, o: _symlink(_segment_of(_rows("good", 1), o / "x.parquet"), _seg(r)),
                         ERROR, N_GOOD),
    "seg_link_inside": (lambda r, o: _symlink(Store(r).segment_files()[0], _seg(r)), ERROR, N_GOOD),
    "seg_link_dangling": (lambda r, o: _symlink(str(o / "gone.parquet"), _seg(r)), ERROR, N_GOOD),
    "partition_link_outside": (lambda r, o: _symlink(str(mkdir(o / "elsewhere")),
                                                     os.path.join(r, "events", "search=elsewhere")), ERROR, N_GOOD),
    # --- JSON text the views and the analysis parse ------------------------------------
    "seg_surrogate_in_error": (lambda r, o: _segment_of(_rows("hostile", 2, fail_last=True), _seg(r),
                                                        _surrogate_error), WARNING, N_GOOD + 2),
    "seg_surrogate_in_search": (lambda r, o: _segment_of(_rows("hostile", 1), _seg(r), lambda t, p: (
        '{"name": "hostile", "dataset": "\\udcff"}' if t == "search_started" else p)), WARNING, N_GOOD + 1),
    "seg_payload_not_json": (lambda r, o: _segment_of(_rows("hostile", 2, fail_last=True), _seg(r), lambda t, p: (
        "{not json" if p is not None else p)), WARNING, N_GOOD + 2),
    # --- stored folds ----------------------------------------------------------------------
    "view_fifo": (lambda r, o: _replace_with_fifo(Store(r).view_files()[0]), ERROR, N_GOOD),
}


def write_bytes(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(data)
    return path


def mkdir(path):
    os.makedirs(path)
    return path


def link(src, dst):
    os.link(src, dst)
    return dst


def _replace_with_fifo(path):
    os.unlink(path)
    return _mkfifo(path)


# --- running the CLI ---------------------------------------------------------------
# A warm interpreter (duckdb, polars, scipy imported once: most of a command's time)
# forks one child per case; the child takes the memory limit and calls the real CLI
# (click's runner) command after command, writing each result to a file. A hang or a
# blow-up ends that child only: the test kills it after TIMEOUT_S and fails.
_ZYGOTE = r"""
import json, os, resource, signal, sys
from click.testing import CliRunner
from hptrack.cli.main import cli
import duckdb, polars, pyarrow.parquet, hptrack._read.overview, hptrack._read.sql, hptrack._maintain.verification
import hptrack._maintain.compaction, hptrack.analysis.report, hptrack.analysis.report.terminal
for name in ("overfitting", "stats", "sensitivity", "fanova", "comparison", "budget"):
    __import__("hptrack.analysis." + name)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        continue
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (req["memory"], req["memory"]))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.environ["COLUMNS"] = "200"
        with open(req["out"], "w") as out:
            runner = CliRunner()
            for args in req["commands"]:
                out.write("RUN " + json.dumps(args) + "\n"); out.flush()
                r = runner.invoke(cli, ["--store", req["store"], *args], catch_exceptions=True)
                exc = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
                out.write("RESULT " + json.dumps({"args": args, "code": r.exit_code, "out": r.stdout,
                                                  "err": r.stderr, "exc": exc}) + "\n"); out.flush()
            out.write("DONE\n")
    finally:
        os._exit(0)
"""

COMMANDS = [["ls"], ["report"], ["query", "SELECT count(*) AS n FROM trials", "--format", "csv"],
            ["verify", "--format", "json"], ["verify", "--quarantine", "--format", "json"],
            ["verify", "--format", "json"], ["query", "SELECT count(*) AS n FROM trials", "--format", "csv"],
            ["compact", "--format", "json"]]


# Kinds of file refused by what they are (not a regular file, a link, no valid header...)
# before any row of theirs is read: `ls` and `query` meet them exactly as `report` would,
# so the report (the slowest command: it runs the analyses) runs only on the other cases.
_REFUSED_AS_FILES = ("fifo", "link_", "directory", "sparse", "socket", "zero_byte", "empty_file",
                     "truncated", "wrong_magic", "huge_length")


def _reaches_rows(case: str) -> bool:
    return case == "wal_hardlink_segment" or not any(k in case for k in _REFUSED_AS_FILES)


def _limits():
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.fixture(scope="module")
def zygote():
    env = {k: v for k, v in os.environ.items() if k != "HPTRACK_STORE"}
    proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def run_many(zygote, jobs: dict, parallel=2, timeout=TIMEOUT_S) -> dict:
    """Run each job (key -> (store, commands)) in a child of the zygote, ``parallel`` at
    a time (the cases are independent: two cores, half the wall time). Returns key ->
    the list of results, or a string saying how the child hung or died."""
    todo, running, done = list(jobs.items()), {}, {}
    while todo or running:
        while todo and len(running) < parallel:
            key, (store, commands) = todo.pop(0)
            out = Path(store).parent / "results.txt"
            zygote.stdin.write(json.dumps({"store": str(store), "commands": commands, "out": str(out),
                                           "memory": MEMORY_LIMIT}) + "\n")
            zygote.stdin.flush()
            running[key] = (int(zygote.stdout.readline()), out, time.monotonic() + timeout)
        for key, (pid, out, deadline) in list(running.items()):
            lines = out.read_text().splitlines() if out.exists() else []
            if lines[-1:] == ["DONE"]:
                done[key] = [json.loads(x[len("RESULT "):]) for x in lines if x.startswith("RESULT ")]
            elif not _alive(pid):  # died without finishing (killed by a signal, out of memory)
                done[key] = f"the CLI process died after {lines[-1:] or 'starting'}"
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                done[key] = f"hung for {timeout} s in {[x for x in lines if x.startswith('RUN ')][-1:]}"
            else:
                continue
            del running[key]
        time.sleep(0.05)
    return done


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _commands(case: str) -> list:
    return COMMANDS if _reaches_rows(case) else [c for c in COMMANDS if c != ["report"]]


@pytest.fixture(scope="module")
def hostile_runs(good_store, zygote, tmp_path_factory):
    """Every case's store, its hostile file and what the CLI said about it."""
    made, jobs = {}, {}
    for case, (make, _, _) in CASES.items():
        base = tmp_path_factory.mktemp(case)
        root = base / "store"
        shutil.copytree(good_store, root, symlinks=True)
        (base / "outside").mkdir()
        made[case] = os.path.abspath(make(str(root), base / "outside"))
        jobs[case] = (root, _commands(case))
    results = run_many(zygote, jobs)
    return {case: (jobs[case][0], made[case], results[case]) for case in CASES}


def _count(result) -> int:
    assert result["code"] == 0 and result["exc"] is None, result
    return int(result["out"].strip().splitlines()[-1])


def _ok(result):
    assert result["code"] == 0 and result["exc"] is None, result
    assert "Traceback" not in result["err"], result["err"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file(case, hostile_runs):
    _, severity, n_trials = CASES[case]
    root, bad, results = hostile_runs[case]
    if isinstance(results, str):
        pytest.fail(results)
    if not _reaches_rows(case):
        results.insert(1, None)
    ls, report, count, verify, quarantine, again, count_after, compact = results

    for r in (ls, report):
        if r is not None:
            _ok(r)
    assert "good" in ls["out"] and "other" in ls["out"] and "logged" in ls["out"]
    assert _count(count) == n_trials
    if severity is not FINE:  # the readers that left it out said so, once, naming it
        assert os.path.basename(bad) in ls["err"] or severity == WARNING, ls["err"]
        assert ls["err"].count("Warning:") <= 1, ls["err"]

    found = json.loads(verify["out"])
    named = [p for p in found["problems"] if p["path"] == bad]
    assert named, (bad, found["problems"])
    assert severity in {p["severity"] for p in named}, named
    assert severity == ERROR or ERROR not in {p["severity"] for p in named}, named
    assert verify["code"] == (1 if severity == ERROR else 0)

    moved = {q["from"]: q["to"] for q in json.loads(quarantine["out"])["quarantined"]}
    if severity == ERROR:
        assert bad in moved, moved
        # (compact, run last, writes a stored fold anew where the odd one was)
        assert os.path.lexists(moved[bad]) and (not os.path.lexists(bad) or case == "view_fifo")
        assert moved[bad].startswith(str(root / "quarantine") + os.sep)
    else:
        assert bad not in moved
    after = json.loads(again["out"])
    assert after["ok"], after["problems"]
    assert _count(count_after) == n_trials
    _ok(compact)


def test_a_hostile_store_through_the_real_command(good_store, tmp_path):
    """The hptrack executable itself, on a store holding several kinds at once."""
    root = tmp_path / "store"
    shutil.copytree(good_store, root, symlinks=True)
    bad = [CASES[c][0](str(root), tmp_path) for c in ("wal_fifo", "seg_link_dev_zero")]
    bad.append(write_log(_wal(str(root), "fedcba9876543210-000000000000.wal"), _rows("hostile", 1), header=b"null"))
    exe = os.path.join(os.path.dirname(sys.executable), "hptrack")
    env = {**os.environ, "HPTRACK_STORE": str(root), "COLUMNS": "400"}

    def run(*args):
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                              preexec_fn=_limits, env=env)

    ls = run("ls")
    assert ls.returncode == 0 and "good" in ls.stdout, ls.stderr
    assert ls.stderr.count("Warning:") == 1 and all(os.path.basename(b) in ls.stderr for b in bad), ls.stderr
    v = run("verify")
    assert v.returncode == 1 and all(os.path.basename(b) in v.stdout for b in bad), v.stdout
    q = run("verify", "--quarantine")
    assert q.returncode == 1 and q.stdout.count("moved ") == 3, q.stdout
    assert run("verify").returncode == 0
    assert run("query", "SELECT count(*) FROM trials", "--format", "csv").stdout.split()[-1] == str(N_GOOD)


# --- the writer never writes what the reader refuses ---------------------------------

def test_a_batch_over_the_record_cap_is_split_and_reads_back_whole(tmp_path):
    big = [_row(payload=json.dumps({"blob": "x" * (24 << 20), "i": i})) for i in range(4)]  # ~96 MiB
    data = wal.encode_rows(7, big)
    path = write_bytes(str(tmp_path / "w.wal"), wal.MAGIC + frame(json.dumps(
        {"writer_id": "0123456789abcdef", "schema_version": 1, "encoding": wal.ENCODING}).encode()) + data)
    got = wal.read_log(path)
    assert got.problem is None and not got.bad_records and got.torn_bytes == 0
    assert [r[0] for r in got.rows] == [7, 8, 9, 10] and [r[1:] for r in got.rows] == big


def test_an_event_over_the_cap_is_refused_when_written(tmp_path):
    w = hptrack.Writer(tmp_path / "store")
    with pytest.raises(hptrack.InvalidEvent, match="event too large.*at most 32 MiB"):
        w.write({"type": "annotation", "search_id": "s", "payload": {"text": "x" * (33 << 20)}})
    w.write({"type": "annotation", "search_id": "s", "payload": {"text": "x" * (1 << 20)}})
    w.close()
    assert hptrack.verify(tmp_path / "store").n_events == 1


def test_the_writer_rotates_its_log_before_the_cap(tmp_path, monkeypatch):
    from hptrack._write import writer as writer_module

    monkeypatch.setattr(writer_module, "ROTATE_LOG_BYTES", 1 << 20)
    w = hptrack.Writer(tmp_path / "store", seal_events=10**9)
    for i in range(6):
        w.write({"type": "annotation", "search_id": "s", "payload": {"text": "x" * (400 << 10), "i": i}})
        w.flush()
    logs = Store(tmp_path / "store").wal_files()
    assert len(logs) >= 2 and all(os.path.getsize(p) < (1 << 20) + (500 << 10) for p in logs)
    w.close()
    assert hptrack.verify(tmp_path / "store").n_events == 6
