"""`hptrack query` attacked on purpose: writes hidden inside a SELECT, reads outside the
store, runaway queries.

Each hostile statement must be refused with a reason in words, and after all of
them the store holds the same files with the same bytes and `verify` is OK. The
connection-level fence is tested on its own too (statements that skip the parse
check), locally and on moto's S3 server. Time, memory and Ctrl-C limits run real
queries (and a real `hptrack query` process for Ctrl-C).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import hptrack
from hptrack._maintain.verification import verify
from hptrack._read.sql import QueryStopped, query, read_only_connection
from hptrack._write.writer import Writer
from hptrack.cli.main import cli
from hptrack.errors import QueryRefused

HPTRACK = os.path.join(os.path.dirname(sys.executable), "hptrack")

# A cross join that would run for hours but holds almost no memory.
SLOW = ("SELECT count(*) FROM range(1000000) a, range(1000000) b "
        "WHERE (a.range * b.range) % 7 = 3")
# A hash table of 100 M keys: gigabytes, and nowhere to spill.
BIG = "SELECT count(DISTINCT range) FROM range(100000000)"


def record(store, name="svm", n=3):
    with hptrack.search(name, strategy="random", metric="f1", store=store, seed=1) as s:
        for i in range(n):
            with s.trial({"C": 10.0 ** i}) as t:
                t.complete(0.5 + i / 10)
    Writer.for_store(store).close()  # seal the log, so the store holds segments


def fingerprint(*roots):
    """Every file under ``roots``: path -> sha256 of its bytes."""
    out = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                with open(p, "rb") as fh:
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    store, other = base / "store", base / "other"
    record(store)
    record(other, "other-search")
    hptrack.compact(store)
    hptrack.compact(other)
    outside = base / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("secret\n42\n")
    segment = next(str(p) for p in (store / "events").rglob("*.parquet"))
    other_segment = next(str(p) for p in (other / "events").rglob("*.parquet"))
    cwd = base / "cwd"
    cwd.mkdir()
    return {"store": store, "other": other, "outside": outside, "segment": segment,
            "other_segment": other_segment, "cwd": cwd, "base": base}


def hostile(w):
    """(sql, words the refusal must contain)."""
    s, o, x, seg = w["store"], w["other"], w["outside"], w["segment"]
    forged = f"{s}/events/search=forged/forged-000000000000.parquet"
    copy = "COPY is not allowed"
    return [
        # the reported attack, and COPY hidden at every depth
        (f"WITH x AS (COPY (SELECT 1 AS a) TO '{s}/pwn.csv') SELECT * FROM x", [copy, "WITH"]),
        (f"WITH x AS (COPY (SELECT * REPLACE (1e9 AS value) FROM events) TO '{forged}' (FORMAT parquet)) "
         "SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT * FROM events LIMIT 0) TO '{seg}' (FORMAT parquet)) SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT 1 AS a) TO '{seg}' (FORMAT csv, USE_TMP_FILE false)) SELECT * FROM x", [copy]),
        (f"WITH x AS MATERIALIZED (COPY (SELECT 1 AS a) TO '{s}/m.csv') SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT range AS a FROM range(10000000)) TO '{s}/big.csv') SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT 1 AS a) TO '{s}/p' (FORMAT parquet, PARTITION_BY (a))) SELECT * FROM x",
         [copy]),
        (f"SELECT 1 WHERE 1 IN (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/sub.csv') SELECT 1)", [copy]),
        (f"SELECT * FROM (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/from.csv') SELECT 1 AS b) t", [copy]),
        (f"SELECT 1 UNION ALL (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/union.csv') SELECT 1)", [copy]),
        (f"SELECT 1 EXCEPT SELECT * FROM (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/ex.csv') SELECT 2) q", [copy]),
        (f"SELECT * FROM trials t, LATERAL (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/lat.csv') "
         "SELECT t.value) l", [copy]),
        (f"SELECT (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/scalar.csv') SELECT 1)", [copy]),
        (f"SELECT EXISTS (WITH y AS (COPY (SELECT 1 AS a) TO '{s}/exists.csv') SELECT 1)", [copy]),
        (f"DESCRIBE WITH x AS (COPY (SELECT 1 AS a) TO '{s}/d.csv') SELECT * FROM x", [copy]),
        (f"/* read only */ wItH x aS (CoPy (SELECT 1 AS a) tO '{s}/case.csv') SELECT * FROM x", [copy]),
        (f"-- a comment\nWITH x AS (\n  COPY (SELECT 1 AS a)\n  TO '{s}/nl.csv'\n) SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT 1 AS a) TO '{x}/out.csv') SELECT * FROM x", [copy]),
        (f"WITH x AS (COPY (SELECT 1 AS a) TO '{o}/events/x.parquet') SELECT * FROM x", [copy]),
        ("WITH x AS (COPY (SELECT 1 AS a) TO 'rel.csv') SELECT * FROM x", [copy]),
        # data-changing CTEs
        ("WITH x AS (INSERT INTO events SELECT * FROM events RETURNING *) SELECT * FROM x",
         ["INSERT is not allowed", "append-only"]),
        ("WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x", ["DELETE is not allowed"]),
        ("WITH x AS (UPDATE events SET value = 1e9 RETURNING *) SELECT * FROM x", ["UPDATE is not allowed"]),
        # table functions that run SQL from a string, list folders, or reach outside
        (f"SELECT * FROM query('COPY (SELECT 1 AS a) TO ''{s}/q.csv''')", ["query()", "runs SQL from a string"]),
        ("SELECT * FROM query_table('events')", ["query_table()"]),
        ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
         ["json_execute_serialized_sql()"]),
        ("SELECT * FROM range(2) r, LATERAL query('SELECT ' || r.range)", ["query()"]),
        (f"SELECT * FROM glob('{s}/*')", ["glob()", "lists folders"]),
        ("SELECT * FROM sniff_csv('/etc/passwd')", ["sniff_csv()"]),
        (f"SELECT * FROM read_duckdb('{s}/x.duckdb')", ["read_duckdb()"]),
        ("SELECT * FROM checkpoint()", ["checkpoint()"]),
        ("SELECT * FROM enable_logging()", ["enable_logging()"]),
        ("SELECT * FROM duckdb_secrets()", ["duckdb_secrets()"]),
        ("SELECT * FROM arrow_scan(1, 2, 3)", ["arrow_scan()"]),
        ("SELECT * FROM histogram('trials', value)", ["histogram()"]),
        # scalar functions with effects outside the result
        ("SELECT getenv('AWS_SECRET_ACCESS_KEY')", ["getenv()", "environment"]),
        ("SELECT (SELECT max(getenv('HOME')) FROM trials)", ["getenv()"]),
        ("SELECT write_log('x')", ["write_log()"]),
        ("SELECT nextval('s')", ["nextval()"]),
        # reads outside the store: the views' files only
        ("SELECT * FROM read_csv('/etc/passwd')", ["/etc/passwd", "outside the store"]),
        ("SELECT * FROM read_text('/proc/self/environ')", ["outside the store"]),
        (f"SELECT * FROM (VALUES (1)) v(a), LATERAL read_csv('{x}/x.csv')", ["outside the store"]),
        (f"SELECT * FROM read_parquet('{w['other_segment']}')", ["outside the store"]),
        (f"SELECT * FROM read_parquet('{o}/events/*/*.parquet')", ["outside the store"]),
        (f"SELECT * FROM '{x}/x.csv'", ["outside the store"]),
        (f"SELECT * FROM read_csv('{s}/../outside/x.csv')", ["outside the store"]),
        (f"SELECT * FROM read_csv(['{seg}', '/etc/passwd'])", ["outside the store"]),
        ("SELECT * FROM read_parquet('s3://hptrack-team/other/x.parquet')", ["outside the store"]),
        # statements that are not SELECT, several statements
        (f"SELECT 1; COPY (SELECT 1 AS a) TO '{s}/two.csv'", ["one statement at a time", "COPY"]),
        (f"SELECT 1; ATTACH '{s}/x.duckdb' AS x", ["one statement at a time", "ATTACH"]),
        (f"COPY (SELECT 1 AS a) TO '{s}/top.csv'", [copy]),
        (f"ATTACH '{s}/new.duckdb' AS x", ["ATTACH is not allowed"]),
        (f"EXPORT DATABASE '{s}/exp'", ["EXPORT DATABASE is not allowed"]),
        ("INSTALL httpfs", ["INSTALL is not allowed"]),
        ("UPDATE EXTENSIONS", ["UPDATE EXTENSIONS is not allowed", "extensions"]),
        ("SET enable_external_access = true", ["SET is not allowed"]),
        ("PRAGMA enable_profiling", ["PRAGMA is not allowed"]),
        ("CALL checkpoint()", ["CALL is not allowed"]),
        ("CHECKPOINT", ["CHECKPOINT is not allowed"]),
        ("PIVOT events ON type", ["PIVOT is not allowed"]),
        ("SELECT * FROM (PIVOT events ON type)", ["cannot be checked"]),
        (f"EXPLAIN ANALYZE WITH x AS (COPY (SELECT 1 AS a) TO '{s}/ea.csv') SELECT * FROM x",
         ["EXPLAIN is not allowed"]),
    ]


N_HOSTILE = len(hostile(dict.fromkeys(("store", "other", "outside", "segment", "other_segment"), "")))


@pytest.fixture(scope="module")
def untouched(world):
    """The store's and its neighbours' bytes before the attacks; checked again after all of them."""
    before = fingerprint(world["base"])
    yield before
    assert fingerprint(world["base"]) == before
    report = verify(world["store"])
    assert report.ok, [p.message for p in report.problems]


def test_there_are_at_least_40(world):
    assert len(hostile(world)) >= 40


@pytest.mark.parametrize("i", range(N_HOSTILE), ids=[f"h{i:02d}" for i in range(N_HOSTILE)])
def test_hostile_statement_is_refused(world, untouched, i, monkeypatch):
    monkeypatch.chdir(world["cwd"])
    sql, words = hostile(world)[i]
    with pytest.raises(QueryRefused) as info:
        query(sql, world["store"])
    msg = str(info.value)
    assert "\n" not in msg and "StatementType" not in msg, msg
    for word in words:
        assert word in msg, (sql, msg)
    assert fingerprint(world["base"]) == untouched, f"a file changed after {sql!r}"


def test_hostile_statements_through_the_cli(world, untouched, monkeypatch):
    monkeypatch.chdir(world["cwd"])
    for sql, words in hostile(world)[:12]:
        r = CliRunner().invoke(cli, ["--store", str(world["store"]), "query", sql])
        assert r.exit_code == 1 and r.stdout == "", (sql, r.output)
        (line,) = r.stderr.splitlines()
        assert line.startswith("Error: ") and words[0] in line, (sql, line)
    assert fingerprint(world["base"]) == untouched


# --- the connection's own fence, without the parse check ----------------------------
def test_connection_cannot_create_files_in_the_store(world, untouched):
    """Even a COPY that got past the parse check cannot add a file to the store
    (a forged segment) or write anywhere else: DuckDB may open only the files
    that were in the store when the query started."""
    import duckdb

    s = world["store"]
    con = read_only_connection(s)
    try:
        for target in (f"{s}/events/search=forged/x.parquet", f"{s}/pwn.csv", f"{world['outside']}/o.csv",
                       f"{world['other']}/o.csv", world["segment"]):
            with pytest.raises(duckdb.PermissionException):
                con.sql(f"COPY (SELECT 1 AS a) TO '{target}'").fetchall()
        with pytest.raises(duckdb.Error):
            con.sql("SET allowed_directories = ['/']").fetchall()
    finally:
        con.close()
    assert fingerprint(world["base"]) == untouched


# --- legitimate reads still work -----------------------------------------------------
LEGIT = [
    ("SELECT count(*) FROM trials", 3),
    ("SELECT count(*) FROM searches s JOIN trials t USING (search_id)", 3),
    ("WITH best AS (SELECT max(value) AS v FROM trials) SELECT count(*) FROM trials, best WHERE value = v", 1),
    ("SELECT count(*) FROM (SELECT rank() OVER (ORDER BY value DESC) AS r FROM trials) WHERE r = 1", 1),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT max(n) FROM r", 5),
    ("SELECT count(*) FROM (SELECT * FROM trials UNION ALL SELECT * FROM trials)", 6),
    ("SELECT count(*) FROM trials t, LATERAL (SELECT t.value * 2 AS v) l", 3),
    ("SELECT count(*) FROM (DESCRIBE trials)", None),
    ("SELECT count(*) FROM (SUMMARIZE trials)", None),
    ("SELECT count(*) FROM (SHOW TABLES)", None),
    ("SELECT sum(range) FROM range(5)", 10),
    ("SELECT count(*) FROM unnest([1, 2, 3])", 3),
    ("SELECT count(*) FROM generate_series(1, 4)", 4),
    ("SELECT count(*) FROM trials PIVOT (count(*) FOR state IN ('complete'))", 3),
    ("SELECT count(*) FROM duckdb_views() WHERE view_name = 'trials'", 1),
    ("SELECT length(list_transform([1, 2], lambda x: x + 1))", 2),
    ("SELECT count(*) FROM (SELECT current_setting('memory_limit'), now(), random())", 1),
    ("FROM searches SELECT n_trials", 3),
    ("VALUES (1), (2)", None),
]


@pytest.mark.parametrize("sql,expected", LEGIT)
def test_legit_reads_still_work(world, sql, expected):
    df = query(sql, world["store"])
    if expected is not None:
        assert df.item() == expected, sql


def test_reading_the_stores_own_files(world):
    seg = world["segment"]
    assert query(f"SELECT count(*) FROM read_parquet('{seg}')", world["store"]).item() > 0
    assert query(f"SELECT count(*) FROM '{seg}'", world["store"]).item() > 0
    assert query(f"SELECT count(*) FROM parquet_metadata('{seg}')", world["store"]).item() > 0


# --- S3: the bucket stays as it was -----------------------------------------------------
def test_s3_store_cannot_be_written(s3_store, tmp_path):
    import duckdb
    import s3fs

    record(s3_store, "s3-search")
    hptrack.compact(s3_store)
    fs = s3fs.S3FileSystem()
    bucket = s3_store.split("/")[2]
    other = f"s3://{bucket}/elsewhere-{os.path.basename(s3_store)}"
    fs.pipe(f"{other}/x.csv".removeprefix("s3://"), b"secret\n42\n")

    def listing():
        fs.invalidate_cache()
        return {k: fs.info(k)["ETag"] for k in fs.find(bucket)}

    before = listing()
    for sql in (f"WITH x AS (COPY (SELECT 1 AS a) TO '{s3_store}/pwn.csv') SELECT * FROM x",
                f"WITH x AS (COPY (SELECT range AS a FROM range(1000000)) TO '{other}/big.csv') SELECT * FROM x",
                f"SELECT * FROM read_csv('{other}/x.csv')",
                f"SELECT * FROM read_csv('{s3_store}/../{other.rsplit('/', 1)[1]}/x.csv')",
                f"SELECT * FROM glob('{s3_store}/*')"):
        with pytest.raises(QueryRefused):
            query(sql, s3_store)
    assert query("SELECT count(*) FROM trials", s3_store).item() == 3
    # The connection itself refuses to write to the bucket, inside the store or not.
    con = read_only_connection(s3_store)
    try:
        for target in (f"{s3_store}/pwn.csv", f"{s3_store}/events/search=forged/x.parquet", f"{other}/y.csv"):
            with pytest.raises((duckdb.Error, PermissionError)) as info:
                con.sql(f"COPY (SELECT 1 AS a) TO '{target}'").fetchall()
            assert "read-only" in str(info.value) or "Permission" in str(info.value), info.value
        with pytest.raises((duckdb.Error, PermissionError)) as info:
            con.sql(f"SELECT * FROM read_csv('{other}/x.csv')").fetchall()
        assert "outside the store" in str(info.value) or "Permission" in str(info.value), info.value
        # reading the store's own files through the wrapper works
        seg = next(k for k in fs.find(s3_store.removeprefix("s3://")) if k.endswith(".parquet"))
        assert con.sql(f"SELECT count(*) FROM read_parquet('s3://{seg}')").fetchall()[0][0] > 0
    finally:
        con.close()
    assert listing() == before
    assert verify(s3_store).ok


# --- runaway queries -----------------------------------------------------------------------
def test_timeout_stops_a_slow_query(world):
    t0 = time.monotonic()
    with pytest.raises(QueryStopped) as info:
        query(SLOW, world["store"], timeout=1.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 3.0, elapsed
    msg = str(info.value)
    assert "stopped after 1 s" in msg and "--timeout" in msg and "LIMIT" in msg, msg


def test_cli_timeout(world):
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, ["--store", str(world["store"]), "query", SLOW, "--timeout", "1"])
    assert time.monotonic() - t0 < 5
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("Error: query stopped after 1 s") and "raise --timeout" in line, line
    # the default is 60 s, stated in --help
    r = CliRunner().invoke(cli, ["query", "--help"])
    assert "--timeout" in r.output and "60" in r.output and "--memory-limit" in r.output


def test_memory_limit_is_set_and_enforced(world):
    (limit,) = query("SELECT current_setting('memory_limit')", world["store"], memory_limit="300MB").row(0)
    assert limit.replace(" ", "") in ("286.1MiB", "300.0MB", "300MB"), limit
    # the default is a fraction of the machine, not DuckDB's 80%
    (default,) = query("SELECT current_setting('memory_limit')", world["store"]).row(0)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    units = {"KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}
    number, unit = default.split()
    assert float(number) * units[unit] <= 0.3 * total, default
    with pytest.raises(QueryStopped) as info:
        query(BIG, world["store"], memory_limit="200MB")
    msg = str(info.value)
    assert "\n" not in msg and "memory" in msg and "--memory-limit" in msg and "LIMIT" in msg, msg
    with pytest.raises(ValueError, match="memory limit"):
        query("SELECT 1", world["store"], memory_limit="lots")


def test_cli_memory_limit_does_not_eat_ram(world):
    """A query past --memory-limit fails in a real process whose peak RSS stays
    far below what it asked for."""
    # a parent of its own, so that RUSAGE_CHILDREN is this process alone
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", probe, HPTRACK, "--store", str(world["store"]), "query", BIG,
                        "--memory-limit", "200MB"], capture_output=True, text=True, timeout=120)
    peak_mib = int(r.stdout) / 1024
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("Error: query ran out of memory") and "--memory-limit" in line, line
    assert peak_mib < 1500, peak_mib  # the distinct count alone needs several GiB


def test_ctrl_c_interrupts_a_real_query(world):
    # SIGINT as a terminal's foreground job has it (this suite may run as a background job,
    # which starts with SIGINT ignored: see test_library_ctrl_c_raises_keyboard_interrupt)
    p = subprocess.Popen([HPTRACK, "--store", str(world["store"]), "query", SLOW, "--timeout", "600"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(3.0)  # imports, opening the store, and well into the query
        assert p.poll() is None, p.communicate()
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (p.returncode, err)
    assert elapsed < 5, elapsed
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines() == ["Error: query interrupted (Ctrl-C)"], err


def test_library_ctrl_c_raises_keyboard_interrupt(world):
    """In Python, Ctrl-C during hptrack.query stops DuckDB and raises KeyboardInterrupt."""
    import threading

    main = threading.main_thread()
    assert threading.current_thread() is main
    # Ctrl-C as an interactive Python has it. A job started in the background by a shell
    # without job control (`cmd &` in a script) begins with SIGINT ignored, and query leaves
    # an ignored SIGINT ignored: without this the signal below would be dropped.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            query(SLOW, world["store"], timeout=60)   # a lost Ctrl-C fails in 60 s, not at the suite's 300
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 5
