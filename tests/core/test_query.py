"""`hptrack query` and hptrack.query (hptrack._read.sql): read-only SQL confined to the store.

Every refusal is checked three ways: the message says what was refused and
why, the library raises QueryRefused (the CLI prints one "Error:" line, exit 1),
and no file appeared or changed - not in the store, not at the target path,
not in the working directory (where DuckDB would spill or resolve relative paths).
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timezone

import polars as pl
import pytest
from click.testing import CliRunner

import hptrack
from hptrack._read.sql import InvalidQuery, query, read_only_connection
from hptrack.cli.main import cli
from hptrack.errors import QueryRefused


# --- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with two trials recorded before ``cut`` and one after, a Parquet
    file and a CSV outside the store, and a working directory with a ./.tmp."""
    base = tmp_path_factory.mktemp("query")
    store = base / "store"
    with hptrack.search("svm", strategy="random", metric="f1", store=store, seed=1) as s:
        for c, v in [(0.1, 0.70), (1.0, 0.90)]:
            with s.trial({"C": c, "kernel": "rbf"}) as t:
                t.report(1, v - 0.1)
                t.complete(v)
    time.sleep(0.01)
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    with hptrack.search("svm", strategy="random", metric="f1", store=store, seed=1) as s:
        with s.trial({"C": 10.0, "kernel": "linear"}) as t:
            t.complete(0.95)
    outside = base / "outside"
    outside.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"secret": [42]}), outside / "x.parquet")
    (outside / "x.csv").write_text("secret\n42\n")
    cwd = base / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "secret.csv").write_text("secret\n42\n")
    (store / "inside.csv").write_text("a\n7\n")  # a file inside the store may be read
    return {"store": store, "cut": cut, "outside": outside, "cwd": cwd, "base": base}


@pytest.fixture
def in_cwd(world, monkeypatch):
    monkeypatch.chdir(world["cwd"])
    return world


def snapshot(*roots):
    """Every file under ``roots`` with its size and mtime."""
    out = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def run(*args, store):
    return CliRunner().invoke(cli, ["--store", str(store), *args])


# --- refusals --------------------------------------------------------------------------
def refusals(w):
    store, out = w["store"], w["outside"]
    return [
        # (sql, words the message must contain, files that must not appear)
        ("SELECT 1; SELECT 2", ["one statement at a time", "2 statements"], []),
        ("SELECT count(*) FROM trials; DROP VIEW trials", ["one statement", "DROP"], []),
        ("INSERT INTO events SELECT * FROM events", ["read-only SELECT", "INSERT is not allowed",
                                                     "append-only"], []),
        (f"COPY (SELECT * FROM events) TO '{out}/dump.csv'", ["COPY is not allowed", "--format csv"],
         [out / "dump.csv"]),
        (f"COPY (SELECT * FROM events) TO '{store}/events/dump.parquet'", ["COPY is not allowed"],
         [store / "events" / "dump.parquet"]),
        ("COPY events TO 'rel.csv'", ["COPY is not allowed"], [w["cwd"] / "rel.csv"]),
        (f"EXPORT DATABASE '{store}/export'", ["EXPORT DATABASE is not allowed"], [store / "export"]),
        (f"ATTACH '{store}/new.duckdb' AS x", ["ATTACH is not allowed", "views"], [store / "new.duckdb"]),
        ("DETACH memory", ["DETACH is not allowed"], []),
        ("INSTALL httpfs", ["INSTALL is not allowed", "extensions"], []),
        ("LOAD httpfs", ["LOAD is not allowed", "extensions"], []),
        ("SET enable_external_access = true", ["SET is not allowed", "locked"], []),
        ("RESET allowed_directories", ["RESET is not allowed"], []),
        ("PRAGMA enable_profiling", ["PRAGMA is not allowed"], []),
        ("CALL pragma_version()", ["CALL is not allowed"], []),
        ("CREATE TABLE t AS SELECT * FROM events", ["CREATE is not allowed"], []),
        (f"CREATE VIEW v AS SELECT * FROM read_csv('{out}/x.csv')", ["CREATE is not allowed"], []),
        ("UPDATE events SET value = 1", ["UPDATE is not allowed"], []),
        ("DELETE FROM events", ["DELETE is not allowed"], []),
        ("DROP VIEW trials", ["DROP is not allowed"], []),
        ("ALTER VIEW trials RENAME TO t2", ["ALTER is not allowed"], []),
        ("SELECT * FROM read_csv('/etc/passwd')", ["/etc/passwd", "outside the store"], []),
        (f"SELECT * FROM read_parquet('{out}/x.parquet')", [f"{out}/x.parquet", "outside the store"], []),
        (f"SELECT * FROM '{out}/x.parquet'", ["outside the store"], []),
        (f"SELECT * FROM read_parquet('{store}/../outside/x.parquet')", ["outside the store"], []),
        ("SELECT * FROM read_text('/etc/hostname')", ["/etc/hostname", "outside the store"], []),
        ("SELECT * FROM read_blob('/etc/hostname')", ["outside the store"], []),
        ("SELECT * FROM glob('/*')", ["glob() is not allowed", "lists folders"], []),
        ("SELECT * FROM read_csv('.tmp/secret.csv')", ["outside the store"], []),
        ("SELECT * FROM read_csv('https://example.com/x.csv')", ["outside the store"], []),
        ("EXPLAIN ANALYZE SELECT 1", ["EXPLAIN is not allowed"], []),
        ("PIVOT events ON type", ["PIVOT is not allowed", "FOR column IN"], []),
        ("SET VARIABLE hptrack_as_of = now()", ["SET is not allowed"], []),
        ("BEGIN TRANSACTION", ["BEGIN is not allowed"], []),
    ]


def test_refusals_library(in_cwd):
    w = in_cwd
    before = snapshot(w["base"])
    for sql, words, must_not_exist in refusals(w):
        with pytest.raises(QueryRefused) as info:
            query(sql, w["store"])
        msg = str(info.value)
        assert "\n" not in msg, sql
        for word in words:
            assert word in msg, (sql, msg)
        for path in must_not_exist:
            assert not os.path.exists(path), (sql, path)
        assert snapshot(w["base"]) == before, f"a file changed after {sql!r}"


def test_refusals_cli(in_cwd):
    w = in_cwd
    before = snapshot(w["base"])
    for sql, words, _ in refusals(w):
        r = run("query", sql, store=w["store"])
        assert r.exit_code == 1, (sql, r.output)
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (sql, r.stderr)
        assert "Traceback" not in r.stderr
        for word in words:
            assert word in lines[0], (sql, lines[0])
    assert snapshot(w["base"]) == before


def test_reading_inside_the_store_is_allowed(world):
    df = query(f"SELECT a FROM read_csv('{world['store']}/inside.csv')", world["store"])
    assert df["a"].to_list() == [7]


def test_symlinks_do_not_open_the_fence(world, tmp_path):
    """A symlink inside the store to a folder outside is still outside; a store
    reached through a symlink still works."""
    link = world["store"] / "escape"
    os.symlink(world["outside"], link)
    try:
        with pytest.raises(QueryRefused, match="outside the store"):
            query(f"SELECT * FROM read_csv('{link}/x.csv')", world["store"])
    finally:
        os.unlink(link)
    alias = tmp_path / "alias"
    os.symlink(world["store"], alias)
    assert query("SELECT count(*) FROM trials", alias).item() == 3
    with pytest.raises(QueryRefused):
        query(f"SELECT * FROM read_parquet('{alias}/../outside/x.parquet')", alias)


def test_spilling_is_off_and_only_the_store_is_allowed(world):
    """DuckDB spills to ./.tmp by default and then adds ./.tmp to allowed_directories;
    hptrack query switches spilling off, allows no folder at all (a folder would
    be writable too), only the store's files as they were when the query began."""
    (temp, folders, files, locked, external), = query(
        "SELECT current_setting('temp_directory'), current_setting('allowed_directories'), "
        "current_setting('allowed_paths'), current_setting('lock_configuration'), "
        "current_setting('enable_external_access')",
        world["store"]).rows()
    assert temp == "" and list(folders) == []
    root = os.path.realpath(world["store"]) + os.sep
    assert files and all(f.startswith(root) for f in files)
    assert root + "inside.csv" in files
    assert locked is True and external is False


def test_read_only_connection_confines_to_store(in_cwd):
    """DuckDB's default temp folder ./.tmp must not become readable."""
    con = read_only_connection(in_cwd["store"])
    with pytest.raises(Exception, match="Permission"):
        con.sql("SELECT * FROM read_csv('.tmp/secret.csv')").fetchall()


def test_syntax_and_binder_errors_are_one_line(world):
    with pytest.raises(InvalidQuery, match=r'^invalid SQL: Parser Error: syntax error at or near "trials"$'):
        query("SELECT * FORM trials", world["store"])
    with pytest.raises(InvalidQuery, match="no SQL statement"):
        query("  -- nothing\n ; ", world["store"])
    r = run("query", "SELECT nope FROM trials", store=world["store"])
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("Error: query failed: Binder Error:") and '"nope"' in line
    r = run("query", "SELECT * FROM trails", store=world["store"])
    (line,) = r.stderr.splitlines()
    assert "trails does not exist" in line and "the views are events, searches" in line
    r = run("query", "SELEC 1", store=world["store"])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == ['Error: invalid SQL: Parser Error: syntax error at or near "SELEC"']


# --- allowed queries and their formats ---------------------------------------------------
SQL = ("SELECT t.trial_number, t.state, t.value, p.value AS C, t.started_at "
       "FROM trials t JOIN params p USING (search_id, trial_id) WHERE p.name = 'C' "
       "ORDER BY t.trial_number")


def test_library_query_returns_polars(world):
    df = query(SQL, world["store"])
    assert df["trial_number"].to_list() == [0, 1, 2]
    assert df["value"].to_list() == [0.70, 0.90, 0.95]
    assert df["C"].to_list() == ["0.1", "1.0", "10.0"]
    assert df.schema["started_at"] == pl.Datetime("us", "Etc/UTC")
    df = query("SELECT value FROM trials WHERE value > ? ORDER BY value", world["store"], params=[0.8])
    assert df["value"].to_list() == [0.90, 0.95]
    # DESCRIBE / SUMMARIZE / VALUES / FROM-first are SELECTs too
    assert "state" in query("DESCRIBE trials", world["store"])["column_name"].to_list()
    assert query("FROM searches SELECT n_trials", world["store"]).item() == 3


def test_csv_parses_back(world):
    r = run("query", SQL, "--format", "csv", store=world["store"])
    assert r.exit_code == 0, r.stderr
    df = pl.read_csv(io.StringIO(r.stdout), try_parse_dates=True)
    assert df["value"].to_list() == [0.70, 0.90, 0.95]
    assert df["state"].to_list() == ["complete"] * 3
    assert df["C"].to_list() == [0.1, 1.0, 10.0]
    expected = query(SQL, world["store"])["started_at"].to_list()
    assert df["started_at"].to_list() == expected  # microseconds and zone survive


def test_csv_nested_columns_are_json(world):
    r = run("query", "SELECT params FROM events WHERE type = 'trial_started' ORDER BY ts LIMIT 1",
            "--format", "csv", store=world["store"])
    assert r.exit_code == 0, r.stderr
    (cell,) = pl.read_csv(io.StringIO(r.stdout))["params"].to_list()
    assert {p["name"]: p["num"] for p in json.loads(cell)}["C"] == 0.1


def test_json_parses_back(world):
    r = run("query", SQL, "--format", "json", store=world["store"])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["value"] for row in rows] == [0.70, 0.90, 0.95]
    assert [row["C"] for row in rows] == ["0.1", "1.0", "10.0"]
    started = datetime.fromisoformat(rows[0]["started_at"])
    assert started.tzinfo is not None and started < world["cut"]
    r = run("query", "SELECT 'NaN'::DOUBLE AS x, NULL AS y", "--format", "json", store=world["store"])
    assert json.loads(r.stdout) == [{"x": None, "y": None}]  # valid JSON, no bare NaN


def test_table_output_is_plain_text(world):
    r = run("query", "SELECT name, n_trials FROM searches", store=world["store"])
    assert r.exit_code == 0
    assert "\x1b[" not in r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "n_trials"] and lines[2].split() == ["svm", "3"]
    # Markup-looking values print as themselves.
    r = run("query", "SELECT '[red]x[/red]' AS v", store=world["store"])
    assert "[red]x[/red]" in r.stdout


def test_sql_from_stdin(world):
    r = CliRunner().invoke(cli, ["--store", str(world["store"]), "query", "-", "--format", "json"],
                           input="SELECT count(*) AS n FROM trials")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [{"n": 3}]


# --- as of ----------------------------------------------------------------------------
def test_as_of_returns_past_state(world):
    cut = world["cut"]
    now = query("SELECT count(*) AS n, max(value) AS best FROM trials", world["store"]).row(0)
    past = query("SELECT count(*) AS n, max(value) AS best FROM trials", world["store"], as_of=cut).row(0)
    assert now == (3, 0.95) and past == (2, 0.90)
    r = run("query", "SELECT count(*) AS n FROM trials", "--as-of", cut.isoformat(), "--format", "json",
            store=world["store"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [{"n": 2}]
    # Before anything happened: empty, not an error.
    r = run("query", "SELECT count(*) AS n FROM searches", "--as-of", "2001-01-01T00:00:00Z",
            "--format", "json", store=world["store"])
    assert json.loads(r.stdout) == [{"n": 0}]


def test_bad_as_of_is_one_line(world):
    r = run("query", "SELECT 1", "--as-of", "yesterday", store=world["store"])
    assert r.exit_code == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith("Error: cannot read time 'yesterday'") and "ISO 8601" in line
