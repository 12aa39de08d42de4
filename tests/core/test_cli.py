"""The `hptrack` command on a real store: ls, show, verify, compact, errors, help.

The store is made the way a user would: a small scikit-learn grid search on
load_wine, each candidate scored with cross_val_score and recorded through
hptrack.search / s.trial. Most runs use click's CliRunner; the last tests run
the installed console script in a real subprocess.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterGrid, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import hptrack
from hptrack._files.store import Store
from hptrack._read.overview import ls, show
from hptrack._read.sql import query
from hptrack._write.writer import Writer
from hptrack.cli.main import cli

HPTRACK = os.path.join(os.path.dirname(sys.executable), "hptrack")
ANSI = re.compile(r"\x1b\[")

TREE_GRID = {"max_depth": [2, 4, None], "criterion": ["gini", "entropy"]}
LOGREG_GRID = {"C": [0.01, 0.1, 1.0]}


def _record_tree(store, X, y, candidates, results):
    with hptrack.search("wine-tree", strategy="grid", direction="maximize", metric="accuracy",
                        space=TREE_GRID, seed=0, store=store, dataset="wine") as s:
        for params in candidates:
            with s.trial(params) as t:
                model = DecisionTreeClassifier(random_state=0, **params)
                scores = cross_val_score(model, X, y, cv=3, error_score="raise")
                for k, v in enumerate(scores):
                    t.score(float(v), split="fold", fold=k, metric="accuracy")
                t.complete(float(scores.mean()))
            # Keyed by order across sessions: a re-opened Search numbers its own
            # trials from 0 again, the trials view numbers them by start time.
            results[len(results)] = (params, float(scores.mean()))


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """Two searches. wine-tree (maximize accuracy) was recorded in two sessions,
    so its partition holds two sealed segments, and has one failed candidate;
    wine-logreg (minimize log loss) stays in this process's live write-ahead log."""
    store = tmp_path_factory.mktemp("cli") / "store"
    X, y = load_wine(return_X_y=True)
    tree: dict[int, tuple] = {}
    candidates = list(ParameterGrid(TREE_GRID))
    _record_tree(store, X, y, candidates[:3], tree)
    Writer.for_store(store).close()  # seal: first segment
    _record_tree(store, X, y, candidates[3:], tree)
    s = hptrack.search("wine-tree", strategy="grid", direction="maximize", metric="accuracy",
                       space=TREE_GRID, seed=0, store=store)
    with pytest.raises(ValueError):  # sklearn refuses max_depth=-1: a failed trial
        with s.trial({"max_depth": -1, "criterion": "gini"}):
            cross_val_score(DecisionTreeClassifier(max_depth=-1), X, y, cv=3, error_score="raise")
    Writer.for_store(store).close()  # seal: second segment
    logreg: dict[int, tuple] = {}
    with hptrack.search("wine-logreg", strategy="grid", direction="minimize", metric="log_loss",
                        space=LOGREG_GRID, store=store) as s:
        for params in ParameterGrid(LOGREG_GRID):
            with s.trial(params) as t:
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, **params))
                loss = -cross_val_score(model, X, y, cv=3, scoring="neg_log_loss").mean()
                t.complete(float(loss))
            logreg[t.number] = (params, float(loss))
    return {"store": store, "tree": tree, "logreg": logreg}


def run(*args, store=None, input=None):
    pre = ["--store", str(store)] if store is not None else []
    return CliRunner().invoke(cli, [*pre, *args], input=input)


def one_error_line(r) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in r.stderr
    return lines[0]


# --- ls -------------------------------------------------------------------------------
def test_ls_table(wine):
    r = run("ls", store=wine["store"])
    assert r.exit_code == 0, r.stderr
    assert not ANSI.search(r.stdout)
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    text = r.stdout
    best_tree = max(v for _, v in wine["tree"].values())
    assert "wine-tree" in text and "wine-logreg" in text
    assert "max accuracy" in text and "min log_loss" in text
    assert "7 (1 failed)" in text
    assert f"{best_tree:.5g}" in text


def test_ls_csv_and_json_match_library(wine):
    lib = ls(wine["store"])
    r = run("ls", "--format", "csv", store=wine["store"])
    df = pl.read_csv(io.StringIO(r.stdout), try_parse_dates=True)
    assert df["name"].to_list() == ["wine-tree", "wine-logreg"]
    assert df["n_trials"].to_list() == [7, 3] and df["n_failed"].to_list() == [1, 0]
    best_tree = max(v for _, v in wine["tree"].values())
    best_logreg = min(v for _, v in wine["logreg"].values())
    assert df["best"].to_list() == [best_tree, best_logreg]  # full precision
    assert df["started_at"].to_list() == lib["started_at"].to_list()
    rows = json.loads(run("ls", "--format", "json", store=wine["store"]).stdout)
    assert [r["direction"] for r in rows] == ["maximize", "minimize"]
    assert rows[1]["best_trial"] == min(wine["logreg"], key=lambda k: wine["logreg"][k][1])
    assert rows == json.loads(json.dumps(lib.to_dicts(), default=lambda d: d.isoformat()))


def test_ls_empty_store(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("ls", store=tmp_path / "empty")
    assert r.exit_code == 0 and "No searches" in r.stdout
    assert json.loads(run("ls", "--format", "json", store=tmp_path / "empty").stdout) == []


# --- show ------------------------------------------------------------------------------
def test_show_table_best_first(wine):
    r = run("show", "wine-tree", store=wine["store"])
    assert r.exit_code == 0, r.stderr
    assert not ANSI.search(r.stdout)
    assert "strategy: grid" in r.stdout and "direction: maximize" in r.stdout
    assert "dataset: wine" in r.stdout and "trials: 7 (1 failed)" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if re.match(r"^\d+\s+(complete|failed)", line)]
    shown_order = [int(row[0]) for row in rows]
    by_value = sorted(wine["tree"], key=lambda n: (-wine["tree"][n][1], n))
    assert shown_order == by_value + [6]  # the failed trial (#6) last
    assert rows[-1][1] == "failed"


def test_show_json_minimize_and_settings(wine):
    r = run("show", "wine-logreg", "--format", "json", store=wine["store"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["search"]["direction"] == "minimize" and out["search"]["space"] == LOGREG_GRID
    values = [t["value"] for t in out["trials"]]
    assert values == sorted(v for _, v in wine["logreg"].values())  # best (lowest) first
    assert [t["C"] for t in out["trials"]] == [p["C"] for p, _ in sorted(wine["logreg"].values(),
                                                                         key=lambda pv: pv[1])]
    lib = show("wine-logreg", wine["store"])
    assert out["search"]["best"] == lib.settings["best"] == values[0]


def test_show_csv_params_and_limit(wine):
    r = run("show", "wine-tree", "--format", "csv", "--limit", "2", store=wine["store"])
    df = pl.read_csv(io.StringIO(r.stdout))
    assert df.height == 2
    best = max(wine["tree"].values(), key=lambda pv: pv[1])
    assert df["value"][0] == best[1]
    assert df["criterion"][0] == best[0]["criterion"]
    by_id = run("show", show("wine-tree", wine["store"]).settings["search_id"], "--format", "csv",
                store=wine["store"])
    assert pl.read_csv(io.StringIO(by_id.stdout)).height == 7  # a search id works too


def test_unknown_search_is_one_line(wine):
    r = run("show", "nope", store=wine["store"])
    assert r.exit_code == 1 and r.stdout == ""
    line = one_error_line(r)
    assert line.startswith("Error: no search named 'nope'") and "wine-tree" in line


def test_debug_shows_traceback(wine):
    r = run("--debug", "show", "nope", store=wine["store"])
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "SearchNotFound" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("Error: no search named 'nope'")


def test_as_of_in_ls_and_show(wine):
    first = show("wine-tree", wine["store"]).trials.sort("trial_number")
    cut = first["finished_at"][1].isoformat()  # after the second trial ended
    rows = json.loads(run("ls", "--format", "json", "--as-of", cut, store=wine["store"]).stdout)
    assert [(r["name"], r["n_trials"]) for r in rows] == [("wine-tree", 2)]
    out = json.loads(run("show", "wine-tree", "--format", "json", "--as-of", cut, store=wine["store"]).stdout)
    assert sorted(t["trial_number"] for t in out["trials"]) == [0, 1]


# --- verify and compact --------------------------------------------------------------------
def test_verify_ok(wine):
    r = run("verify", store=wine["store"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK: ") and "2 searches" in r.stdout and "0 error(s)" in r.stdout
    rep = json.loads(run("verify", "--format", "json", store=wine["store"]).stdout)
    n_events = query("SELECT count(*) AS n FROM events", wine["store"]).item()
    assert rep["ok"] is True and rep["n_searches"] == 2 and rep["n_events"] == n_events
    assert rep["n_segments"] == 2 and rep["n_logs"] == 1


def test_verify_damaged_store_exits_1(wine, tmp_path):
    store = tmp_path / "damaged"
    shutil.copytree(wine["store"], store)
    bad = store / "events" / "search=x" / "broken.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet at all")
    r = run("verify", store=store)
    assert r.exit_code == 1
    assert "unreadable_segment" in r.stdout and "NOT OK" in r.stdout
    assert one_error_line(r).startswith("Error: verify found 1 problem(s)")
    rep = json.loads(run("verify", "--format", "json", store=store).stdout)
    assert rep["ok"] is False and rep["problems"][0]["path"] == str(bad)
    # Other commands leave the damaged file out and say so in one line...
    r = run("ls", store=store)
    assert r.exit_code == 0 and "wine-tree" in r.stdout
    (warning,) = r.stderr.splitlines()
    assert warning.startswith("Warning: left out 1 damaged file(s)") and "broken.parquet" in warning
    # ... or, with --strict, refuse with the file named.
    r = run("--strict", "ls", store=store)
    assert r.exit_code == 1 and "broken.parquet" in one_error_line(r)
    # --quarantine moves it aside, keeping it; then the store is clean.
    r = run("verify", "--quarantine", store=store)
    assert r.exit_code == 1 and "moved events/search=x/broken.parquet to quarantine/" in r.stdout
    assert not bad.exists()
    assert (store / "quarantine" / "events" / "search=x" / "broken.parquet").read_bytes() == b"not parquet at all"
    assert run("verify", store=store).exit_code == 0
    assert run("--strict", "ls", store=store).exit_code == 0


def test_compact_keeps_every_event(wine, tmp_path):
    store = tmp_path / "compacted"
    shutil.copytree(wine["store"], store)
    before_ls = run("ls", "--format", "json", store=store).stdout
    before_trials = run("show", "wine-tree", "--format", "json", store=store).stdout
    tree_dir = Store(store).partition_dir(show("wine-tree", store).settings["search_id"])
    assert len(os.listdir(tree_dir)) == 2
    r = run("compact", "--grace", "0", "--format", "json", store=store)
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    # 2 segments + 1 log before; the log belongs to this live process, so it stays
    assert res["files_before"] == 3 and res["files_after"] == 2 and res["removed_duplicates"] == 0
    assert [f for f in os.listdir(tree_dir) if f.endswith(".parquet")] == \
        [f for f in os.listdir(tree_dir) if f.startswith("compact-")]
    assert run("ls", "--format", "json", store=store).stdout == before_ls
    assert run("show", "wine-tree", "--format", "json", store=store).stdout == before_trials
    assert run("verify", store=store).exit_code == 0
    r = run("compact", store=store)
    assert r.exit_code == 0 and r.stdout.startswith("compacted 2 files into 2")


# --- usage, help, errors ------------------------------------------------------------------
@pytest.mark.parametrize("args", [["frob"], ["ls", "--frmat", "csv"], ["ls", "--format", "xml"],
                                  ["query"], ["show"], ["show", "x", "--limit", "0"]])
def test_usage_errors_exit_2_with_one_line(wine, args):
    r = run(*args, store=wine["store"])
    assert r.exit_code == 2, r.output
    line = one_error_line(r)
    assert "--help" in line


def test_missing_store_is_one_line(tmp_path):
    for cmd in (["ls"], ["show", "x"], ["query", "SELECT 1"], ["verify"], ["compact"]):
        r = run(*cmd, store=tmp_path / "nowhere")
        assert r.exit_code == 1
        assert "no hptrack store at" in one_error_line(r)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("cmd", [[], ["ls"], ["show"], ["query"], ["verify"], ["compact"]])
def test_help_has_examples(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.stdout and "hptrack " in r.stdout.split("Examples:")[1]


# --- the installed console script in real subprocesses ---------------------------------------
ORPHAN = textwrap.dedent("""
    import os, sys, hptrack
    with hptrack.search("crashed", strategy="random", store=sys.argv[1]) as s:
        for i in range(3):
            with s.trial({"lr": 10.0 ** -i}) as t:
                t.complete(0.5 + i / 10)
    os._exit(0)  # die without sealing: the log is left for compact
""")


def test_console_script(tmp_path):
    store = tmp_path / "store"
    subprocess.run([sys.executable, "-c", ORPHAN, str(store)], check=True, timeout=60)
    env = {**os.environ, "HPTRACK_STORE": str(store), "TERM": "xterm-256color"}

    def sh(*args):
        return subprocess.run([HPTRACK, *args], capture_output=True, text=True, env=env, timeout=60)

    r = sh("verify", "--format", "json")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["ok"] is True and rep["n_logs"] == 1
    assert [p["kind"] for p in rep["problems"]] == ["orphan_log"]
    r = sh("compact")
    assert r.returncode == 0 and "sealed 1 logs" in r.stdout
    r = sh("query", "SELECT trial_number, value FROM trials ORDER BY 1", "--format", "csv")
    assert r.returncode == 0 and r.stderr == ""
    assert pl.read_csv(io.StringIO(r.stdout))["value"].to_list() == [0.5, 0.6, 0.7]
    r = sh("ls")
    assert r.returncode == 0 and "crashed" in r.stdout and not ANSI.search(r.stdout)
    r = sh("show", "missing")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("Error: no search named")
    r = sh("query", "ATTACH 'x.db'")
    assert r.returncode == 1 and r.stderr.startswith("Error: hptrack query runs read-only SELECT")
    r = sh("ls", "--bogus")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_console_script_broken_pipe(tmp_path):
    (tmp_path / "s").mkdir()
    r = subprocess.run(f"'{HPTRACK}' --store '{tmp_path / 's'}' query "
                       "'SELECT range AS i FROM range(300000)' --format csv | head -2",
                       shell=True, capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines() == ["i", "0"]
    assert "Traceback" not in r.stderr and "Error" not in r.stderr
