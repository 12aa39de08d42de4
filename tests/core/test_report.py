"""hptrack report: honest terminal summaries, a rebuildable snapshot, strategy
comparison by task, export, and the HTML report drawn by a real headless browser."""

import io
import os
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from rich.console import Console

import hptrack
from hptrack._write.writer import Writer
from hptrack.analysis.report import build, render_terminal
from hptrack.cli.main import cli


def _quadratic(store, name, strategy, seed, n=12, dataset="toy", folds=3):
    """A search whose objective depends mostly on x: complete trials with fold
    scores, intermediate reports, a test score on the winner."""
    rng = np.random.default_rng(seed)
    best = None
    with hptrack.search(name, strategy=strategy, metric="acc", seed=seed, store=store,
                        dataset=dataset) as s:
        for i in range(n):
            x, y = float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))
            v = 0.9 - 0.3 * x * x - 0.02 * y * y
            with s.trial({"x": x, "y": y, "kind": ["a", "b"][i % 2]}) as t:
                for step in range(3):
                    t.report(step, v - 0.1 * (2 - step))
                for k in range(folds):
                    t.score(v + float(rng.normal(0, 0.01)), split="fold", fold=k, metric="acc")
                t.complete(v)
            if best is None or v > best[1]:
                best = (t.trial_id, v)
    w = Writer.for_store(store)
    w.write({"type": "trial_scored", "search_id": s.search_id, "trial_id": best[0], "split": "test",
             "metric": "acc", "value": best[1] - 0.01})
    w.flush()
    return s


@pytest.fixture
def mixed(tmp_path):
    """A search with 3 complete, 1 failed, 1 pruned and 1 running trial."""
    store = str(tmp_path / "store")
    s = hptrack.search("mixed", strategy="random", metric="loss", direction="minimize", store=store,
                       dataset="toy")
    for i, v in enumerate([0.5, 0.3, 0.4]):
        with s.trial({"lr": 0.1 * (i + 1)}) as t:
            t.complete(v)
    with pytest.raises(MemoryError), s.trial({"lr": 0.7}):
        raise MemoryError("CUDA out of memory on the big batch")
    with s.trial({"lr": 0.9}) as t:
        t.report(0, 0.9)
        t.report(1, 0.95)
        t.prune(2)
    running = s.trial({"lr": 0.05})           # started, never ended: still running
    running.report(0, 0.6)
    Writer.for_store(store).flush()
    return store


def _text(rep, width=80):
    buf = io.StringIO()
    render_terminal(rep, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


def test_terminal_report_shows_failed_pruned_and_running_honestly(mixed):
    rep = build(store=mixed, progress=False)
    out = _text(rep)
    assert "trials: 6 = 3 complete, 1 pruned, 1 failed, 1 running" in out
    assert "failed  trial 3: CUDA out of memory on the big batch" in out
    assert "pruned  trial@step: 4@2" in out
    assert re.search(r"running trial 5: started \S+, no result yet", out)
    assert "running (1 trial(s) not finished)" in out
    # the best respects direction=minimize, and importance refuses 3 trials with a reason
    assert "best: trial 1, loss 0.3000" in out
    assert "importance: skipped: 3 complete trial(s), importance needs at least 8" in out
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)


def test_cli_report_is_plain_text_at_80_columns_when_piped(mixed, tmp_path):
    html = tmp_path / "out.html"
    r = CliRunner().invoke(cli, ["--store", mixed, "report", "mixed", "--html", str(html)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert html.exists() and "CUDA out of memory" in html.read_text()
    assert "\x1b[" not in r.output
    assert "1 failed" in r.stdout and "mixed" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


def test_snapshot_hash_rebuilds_exactly(mixed):
    rep = build(store=mixed, progress=False)
    assert rep.n_events == hptrack.connect(mixed).sql(
        "SELECT count(*) FROM events").fetchall()[0][0]
    # more events arrive after the snapshot
    s = hptrack.search("mixed", store=mixed)
    with s.trial({"lr": 0.2}) as t:
        t.complete(0.1)
    Writer.for_store(mixed).flush()
    later = build(store=mixed, progress=False)
    again = build(store=mixed, as_of=rep.as_of, progress=False)
    assert later.events_sha256 != rep.events_sha256 and later.n_events > rep.n_events
    assert (again.events_sha256, again.n_events) == (rep.events_sha256, rep.n_events)
    assert again.searches[0].states == rep.searches[0].states
    # the running trial's wall time counts to the snapshot, not to the rebuild
    assert again.searches[0].wall_s == rep.searches[0].wall_s
    out = _text(again)
    assert f"sha256 {rep.events_sha256}" in out and rep.as_of.isoformat(timespec="microseconds") in out


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("cmp"))
    for strategy, seed in (("random", 1), ("tpe", 2), ("random", 3), ("tpe", 4)):
        _quadratic(store, f"{strategy}-{seed}", strategy, seed)
    _quadratic(store, "other-task", "grid", 5, n=4, dataset="other")
    return store


def test_groups_by_task_and_runs_every_analysis(compared):
    rep = build(store=compared, progress=False)
    groups = {g.task: g for g in rep.groups}
    assert sorted(groups["toy"].searches) == ["random-1", "random-3", "tpe-2", "tpe-4"]
    assert groups["other"].comparison is None and groups["other"].searches == ["other-task"]
    cmp = groups["toy"].comparison
    assert set(cmp.summary["strategy"]) == {"random", "tpe"}
    # two seeds each and tied mean ranks: no winner is named (issue 14 item 6)
    assert cmp.tests["friedman"]["mean_ranks"] == {"random": 1.5, "tpe": 1.5}
    assert groups["toy"].best_strategy is None and groups["toy"].best_reason == cmp.verdict
    assert cmp.verdict.startswith("no clear winner: random and tpe tie")
    by = {s.name: s for s in rep.searches}
    imp = by["random-1"].importance
    assert imp["param"][0] == "x"          # the objective is mostly x
    assert set(by["random-1"].marginals) == set(imp["param"].head(2))
    assert by["random-1"].diagnosis.n_folds == 3 and by["random-1"].test_score is not None
    out = _text(rep)
    assert "strategy comparison" in out and "no clear winner: random and tpe tie" in out
    assert "Friedman p =" in out
    assert "importance: skipped: 4 complete trial(s)" in out       # other-task


def test_library_form_and_lazy_export(compared, tmp_path):
    import importlib
    code = "import sys, hptrack; print('hptrack.analysis.report' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert light.stdout.strip() == "False"
    html = tmp_path / "r.html"
    rep = hptrack.report(["tpe-2", "random-1"], store=compared, html=html, quiet=True, progress=False)
    assert [s.name for s in rep.searches] == ["tpe-2", "random-1"] and html.exists()
    assert importlib.import_module("hptrack").report is hptrack.report



def test_a_large_search_is_analysed_on_a_seeded_sample_and_says_so(compared, tmp_path, monkeypatch):
    from hptrack.analysis.report import builder as report_mod

    whole = build(["random-1"], store=compared, progress=False).searches[0]
    assert whole.importance_sample == (12, 12) and whole.importance_note is None and whole.drawn is None
    # a cap below the 12 complete trials (as 20,000 is below a 100,000-trial search)
    monkeypatch.setattr(report_mod, "MAX_DRAWN", 5)
    html = tmp_path / "r.html"
    rep = hptrack.report(["random-1"], store=compared, html=html, quiet=True, progress=False, max_trials=8)
    again = build(["random-1"], store=compared, as_of=rep.as_of, progress=False, max_trials=8)
    s, s2 = rep.searches[0], again.searches[0]
    assert s.importance_sample == (8, 12) and "8 of 12 usable trials" in s.importance_note
    assert s.importance.equals(s2.importance) and not s.importance.equals(whole.importance)
    assert all(s.marginals[p].equals(s2.marginals[p]) for p in s.marginals)
    text = " ".join(_text(rep).split())
    assert "importance: fitted on a seeded random sample of 8 of 12 usable trials" in text
    # per-trial plots draw a seeded sample of the trials that keeps the best one
    assert s.drawn.len() == 5 and s.drawn.equals(s2.drawn) and s.best["trial_id"] in s.drawn.to_list()
    assert s.reports["trial_number"].n_unique() == 5
    page = html.read_text()
    assert "sample of 8 of 12 usable trials" in page
    assert re.search(r"parallel coordinates, random \d of 12", page)
    assert "intermediate values, random 5 of 12 trials" in page


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_round_trips_the_trials(compared, tmp_path, fmt):
    out = tmp_path / f"t.{fmt}"
    r = CliRunner().invoke(cli, ["--store", compared, "export", "tpe-2", "--format", fmt, "-o", str(out)])
    assert r.exit_code == 0, r.output
    df = {"parquet": pl.read_parquet, "csv": pl.read_csv, "json": pl.read_json}[fmt](out)
    want = hptrack.trials("tpe-2", store=compared)
    assert df.height == want.height == 12
    assert df["x"].to_list() == pytest.approx(want["x"].to_list())
    ev = hptrack.export("tpe-2", fmt, store=compared, what="events")
    assert len(ev) > 0


def test_export_events_csv_to_stdout(compared):
    r = CliRunner().invoke(cli, ["--store", compared, "export", "tpe-2", "--format", "csv", "--events"])
    assert r.exit_code == 0
    rows = r.output.splitlines()
    n = hptrack.connect(compared).sql("SELECT count(*) FROM events e JOIN searches s USING (search_id) "
                                      "WHERE s.name = 'tpe-2'").fetchall()[0][0]
    assert rows[0].startswith("event_id,") and len(rows) >= n + 1


# --- the HTML report in a real browser ---------------------------------------------------
@pytest.fixture(scope="module")
def pbt_store(compared):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier

    from hptrack.pbt import PBT, SklearnPartialFit

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    adapter = SklearnPartialFit(SGDClassifier(random_state=0), X[:600], y[:600], X[600:900], y[600:900],
                                classes=np.unique(y))
    PBT(adapter, {"alpha": ("log", 1e-6, 1e-1), "eta0": ("log", 1e-3, 1.0)}, name="pbt-digits",
        population=4, ready=1, rounds=4, quantile=0.25, workers=1, seed=0, store=compared).run()
    return compared


def test_html_report_is_interactive_in_chromium(pbt_store, tmp_path):
    """The report in a real Chromium with the network refused: every plot drawn, no console
    error; a hover names the right trial with its params; a table filter reduces the rows and
    every plot of the search; a row click highlights the trial in each plot; a drag zooms; the
    CSV export is the filtered table."""
    from browser import opened, plot_ids, rendered, screenshot, trace_trials

    html = tmp_path / "report.html"
    rep = hptrack.report(["random-1", "tpe-2", "pbt-digits"], store=pbt_store, html=html, quiet=True,
                         progress=False)
    text = html.read_text()
    # self-contained: no external resource, plotly.js inlined once
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "<img" not in text and text.count("id='hp-plotly'") == 1
    s = next(r for r in rep.searches if r.name == "tpe-2")
    truth = hptrack.trials("tpe-2", store=pbt_store)
    with opened(html) as page:
        assert page.errors == [] and page.requests == []
        marks = rendered(page)
        assert marks and all(n > 0 for n in marks.values()), marks
        kinds = {k.split(" ")[0] for k in page.eval_on_selector_all("figure", "fs => fs.map(f => f.dataset.plot)")}
        assert {"best-so-far", "validation", "history", "importance", "slice", "parallel", "intermediate",
                "fold", "PBT"} <= kinds, kinds
        shot = screenshot(page, "report-pbt-and-toy")
        box = f".trials[data-search='{s.search_id}']"
        mine = [p["id"] for p in _page_plots(text, s.search_id)]
        history = next(i for i in plot_ids(page, "history") if i in mine)

        # hover: the point of trial n shows trial n's params
        shown = trace_trials(page, history)
        n = shown[len(shown) // 2]
        j = shown.index(n)
        point = page.locator(f"#{history} .scatterlayer .trace").first.locator("path.point").nth(j)
        point.scroll_into_view_if_needed()
        b = point.bounding_box()     # plotly's drag layer takes the mouse: move it there
        page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
        tip = page.locator(f"#{history} .hoverlayer .hovertext").first
        tip.wait_for()
        lines = tip.evaluate("t => [...t.querySelectorAll('tspan.line')].map(l => l.textContent)")
        row = truth.filter(pl.col("trial_number") == n).row(0, named=True)
        assert lines[0] == f"trial {n}", lines
        got = dict(line.split(": ", 1) for line in lines[1:])
        for p in ("x", "y", "value"):
            assert float(got[p]) == pytest.approx(row[p], rel=1e-5), (p, got, row)
        assert got["kind"] == row["kind"] and got["state"] == "complete"

        # a filter on x: the rows and the points of every plot of the search are the trials with x > 0
        page.fill(f"{box} input.f[data-column='x']", ">0")
        want = set(truth.filter(pl.col("x") > 0)["trial_number"].to_list())
        rows = page.eval_on_selector_all(f"{box} tbody tr", "rs => rs.map(r => Number(r.dataset.trial))")
        assert set(rows) == want and 0 < len(rows) < truth.height
        assert set(trace_trials(page, history)) == want
        for pid in mine:
            for k, trials in enumerate(page.evaluate(
                    "id => document.getElementById(id).data.map(t => t.customdata || (t.meta && t.meta.trials) || [])",
                    pid)):
                assert {t for t in trials if t is not None} <= want, (pid, k)

        # a row click selects the trial: every plot with a point of it draws it on top
        first = sorted(want)[0]
        page.click(f"{box} tbody tr[data-trial='{first}']")
        assert page.locator(f"{box} tbody tr.sel").get_attribute("data-trial") == str(first)
        marked = page.evaluate("id => document.getElementById(id).data.filter(t => t.meta && t.meta.selected)"
                               ".map(t => t.meta.selected)", history)
        assert marked == [first]

        # the CSV is the filtered table
        with page.expect_download() as dl:
            page.click(f"{box} button.csv")
        csv = pl.read_csv(dl.value.path())
        assert set(csv["trial"].to_list()) == want and "fold_mean" in csv.columns

        # zoom: a drag on the plot narrows its x axis
        before = page.evaluate("id => document.getElementById(id)._fullLayout.xaxis.range.slice()", history)
        drag = page.locator(f"#{history} .nsewdrag").first.bounding_box()
        page.mouse.move(drag["x"] + drag["width"] * 0.3, drag["y"] + drag["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(drag["x"] + drag["width"] * 0.6, drag["y"] + drag["height"] * 0.7, steps=8)
        page.mouse.up()
        after = page.evaluate("id => document.getElementById(id).layout.xaxis.range", history)
        assert after and after[1] - after[0] < 0.6 * (before[1] - before[0]), (before, after)
        assert page.errors == []
    assert os.path.getsize(shot) > 50_000


def _page_plots(text, search_id):
    import json

    doc = json.loads(re.search(r"<script type='application/json' id='hp-data'>(.*?)</script>", text, re.S).group(1))
    return [p for p in doc["plots"] if p["search"] == search_id]
