"""`hptrack demo --quick` (what `make demo` runs, smaller): four strategies on
breast_cancer through the real integrations, then the report."""

import os
import subprocess
import sys

import hptrack


def test_quick_demo_runs_four_strategies_and_reports(tmp_path):
    store, html = tmp_path / "store", tmp_path / "report.html"
    # the installed console script, as `make demo` runs it
    exe = os.path.join(os.path.dirname(sys.executable), "hptrack")
    out = subprocess.run([exe, "demo", "--quick",
                          "--store", str(store), "--html", str(html)],
                         check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr[-3000:]
    con = hptrack.connect(store)
    rows = con.sql("SELECT strategy, n_trials, n_complete, task FROM searches "
                   "ORDER BY strategy").fetchall()
    assert [r[0] for r in rows] == ["grid", "halving", "random", "tpe"]
    assert all(n > 0 and c > 0 and ds == "breast_cancer" for _, n, c, ds in rows)
    # an equal budget of candidate configurations: the grid's size
    n_grid = {r[0]: r[1] for r in rows}["grid"]
    assert {r[0]: r[1] for r in rows}["tpe"] == n_grid == {r[0]: r[1] for r in rows}["random"]
    # every winner has a held-out test score; TPE recorded fold scores through @hptrack.track
    assert con.sql("SELECT count(DISTINCT search_id) FROM scores WHERE split = 'test'").fetchall() == [(4,)]
    assert con.sql("SELECT count(*) FROM scores JOIN searches USING (search_id) "
                   "WHERE strategy = 'tpe' AND split = 'fold'").fetchall()[0][0] > 0
    text = out.stdout
    assert "strategy comparison" in text
    # one task (task=breast_cancer on every search), four strategies (TPE with its median pruner);
    # one search each, so no test can name a winner and the report says so, with the ranks
    assert "task breast_cancer - maximize f1 - 4 search(es)" in text
    assert "tpe+median" in text
    assert "no clear winner: one search per strategy (n = 1), no test possible" in text
    assert "best strategy:" not in text
    assert "diagnostics:" in text and "warning:" in text and "sha256" in text
    assert "\x1b[" not in text and max(map(len, text.splitlines())) <= 80
    assert html.exists() and html.stat().st_size > 10_000 and "id='hp-data'" in html.read_text()
    assert hptrack.verify(store).ok
    from browser import opened, rendered, screenshot

    with opened(html) as page:     # the demo's page in Chromium: every plot drawn, no error
        assert page.errors == [] and page.requests == []
        marks = rendered(page)
        assert len(marks) >= 20 and all(n > 0 for n in marks.values()), marks
        screenshot(page, "demo-report")


def test_example_script_is_a_thin_wrapper():
    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "demo.py")
    out = subprocess.run([sys.executable, path, "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--quick" in out.stdout and "--store" in out.stdout
