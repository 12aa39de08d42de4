"""`make demo` runs examples/demo.py: keep it working (the quick variant)."""

import os
import subprocess
import sys

import hptrack

DEMO = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "demo.py")


def test_quick_demo_records_three_strategies_with_test_scores(tmp_path):
    out = subprocess.run([sys.executable, DEMO, "--quick", "--store", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    con = hptrack.connect(tmp_path)
    strategies = con.sql("SELECT strategy, n_trials > 0 FROM searches ORDER BY strategy").fetchall()
    assert strategies == [("grid", True), ("halving", True), ("random", True)]
    # every search's winner has a held-out test score, and the demo printed it
    assert con.sql("SELECT count(DISTINCT search_id) FROM scores WHERE split = 'test'").fetchall() == [(3,)]
    assert "Successive halving, rebuilt from the events" in out.stdout
    assert hptrack.verify(tmp_path).ok
