"""Every script in examples/ runs as a test, as a user runs it: a fresh interpreter in an
empty folder, the store in $HPTRACK_STORE, in its small mode (``--quick`` or
small arguments) so that all of them together take a few seconds each.

``examples/demo.py`` is ``hptrack demo``: tests/demo/test_demo.py runs both."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import hptrack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")

# script -> (its small-mode arguments, the library it needs beyond the core, or None)
RUNS = {
    "sklearn_grid.py": (["--quick"], None),
    "sklearn_random.py": (["--quick"], None),
    "sklearn_halving.py": (["--quick"], None),
    "pbt_digits.py": (["--population", "4", "--rounds", "2", "--ready", "2", "--workers", "1"], None),
    "lr_schedules.py": (["--trials", "3"], "optuna"),
}
ELSEWHERE = {"demo.py"}  # tests/demo/test_demo.py


def test_every_example_and_every_one_the_readme_names_is_run():
    scripts = {f for f in os.listdir(EXAMPLES) if f.endswith(".py")}
    assert scripts == set(RUNS) | ELSEWHERE
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        named = set(re.findall(r"examples/(\w+\.py)", f.read()))
    assert named and named <= scripts


def run(tmp_path, script: str) -> tuple[str, object]:
    args, needs = RUNS[script]
    if needs:
        pytest.importorskip(needs, reason=f"examples/{script} needs {needs} (pip install 'hptrack[{needs}]')")
    store = tmp_path / "store"
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path,
                         env={**os.environ, "HPTRACK_STORE": str(store)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert hptrack.verify(store).ok
    return out.stdout, hptrack.connect(store)


def searches(con) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in con.sql("SELECT name, n_trials, n_complete FROM searches").fetchall()}


@pytest.mark.parametrize("script, name, n_trials, folds", [
    ("sklearn_grid.py", "rf-grid", 12, 3), ("sklearn_random.py", "rf-random", 6, 3)])
def test_sklearn_search_examples(tmp_path, script, name, n_trials, folds):
    stdout, con = run(tmp_path, script)
    assert searches(con) == {name: (n_trials, n_trials)}
    per_trial = con.sql("SELECT count(*) FROM scores WHERE split = 'fold' GROUP BY trial_id").fetchall()
    assert len(per_trial) == n_trials and {n for n, in per_trial} == {folds}
    assert con.sql("SELECT count(*) FROM scores WHERE split = 'test'").fetchall() == [(1,)]
    assert "test F1" in stdout


def test_halving_example_records_each_rung(tmp_path):
    stdout, con = run(tmp_path, "sklearn_halving.py")
    assert searches(con) == {"rf-halving": (9, 1)}
    rungs = con.sql("SELECT step, count(*) FROM reports GROUP BY step ORDER BY step").fetchall()
    assert rungs == [(0, 9), (1, 3), (2, 1)]
    assert "candidates per iteration [9, 3, 1]" in stdout


def test_pbt_example_records_forks_and_the_baseline(tmp_path):
    stdout, con = run(tmp_path, "pbt_digits.py")
    assert set(searches(con)) == {"pbt-digits", "random-digits"}
    assert searches(con)["random-digits"] == (4, 4)
    assert con.sql("SELECT count(*) FROM events WHERE type = 'trial_forked'").fetchall()[0][0] > 0
    assert "lineage" in stdout and "schedule of the best member" in stdout


def test_lr_schedules_example_reports_the_lr_of_every_epoch(tmp_path):
    stdout, con = run(tmp_path, "lr_schedules.py")
    assert searches(con)["sgd-lr-schedules"][0] == 3
    missing = con.sql("SELECT count(*) FROM reports WHERE metrics->>'lr' IS NULL").fetchall()[0][0]
    assert missing == 0 and con.sql("SELECT count(*) FROM reports").fetchall()[0][0] > 0
    assert "learning rate per step of the best trial" in stdout
