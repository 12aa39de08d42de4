"""`hptrack watch` and hptrack.analysis.progress on real stores.

The snapshot is checked against what hptrack.trials() says of the same store
(on random histories too), throughput and ETA on histories with chosen event
times, and the live view in a real terminal (tmux) while a search runs in
another process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hptrack
from hptrack._write.writer import Writer
from hptrack.analysis import progress
from hptrack.analysis.search_progress import NO_BUDGET, budget_of
from hptrack.cli.main import cli

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history(store, name="a", *, n_trials=20, t0=T0, start=0, n=8, quiet=False):
    """Trial k of ``n`` starts at t0 + 60k s and ends 30 s later: pruned at step k
    when k % 3 == 1, failed when k == 5, else complete with value 10 - k (so the
    best of a minimizing search is the last complete one)."""
    attrs = {} if n_trials is None else {"n_trials": n_trials}
    s = hptrack.search(name, direction="minimize", store=store, ts=t0 + timedelta(seconds=start), quiet=quiet,
                       **attrs)
    for k in range(n):
        t = s.trial({"x": k, "lr": 0.5 ** k, "act": "relu"}, ts=t0 + timedelta(seconds=start + 60 * k))
        end = t0 + timedelta(seconds=start + 60 * k + 30)
        if k % 3 == 1:
            t.report(k, 1.0, ts=end - timedelta(seconds=1))
            t.prune(step=k, ts=end)
        elif k == 5:
            t.fail("diverged", ts=end)
        else:
            t.complete(10 - k, ts=end)
    return s


# --- the snapshot against hptrack.trials() ------------------------------------------------
OUTCOMES = st.lists(st.tuples(st.sampled_from(["complete", "complete", "pruned", "failed", "running"]),
                              st.sampled_from([0.5, 1.0, 1.0, -2.0, 3.25]),   # ties on purpose
                              st.integers(0, 3), st.integers(0, 4)),
                    max_size=14)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcomes=OUTCOMES, direction=st.sampled_from(["maximize", "minimize"]), recent=st.integers(0, 6),
       finish=st.booleans())
def test_snapshot_agrees_with_hptrack_trials(outcomes, direction, recent, finish):
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        s = hptrack.search("mix", direction=direction, store=store, durability="batch")
        for state, value, steps, x in outcomes:
            t = s.trial({"x": x, "kind": ["a", "b"][x % 2]})
            for step in range(steps):
                t.report(step, value)
            if state == "complete":
                t.complete(value)
            elif state == "pruned":
                t.prune()
            elif state == "failed":
                t.fail("boom")
        if finish:
            s.finish()
        Writer.for_store(store).flush()
        try:
            (p,) = progress(store=store, recent=recent).searches
            ref = hptrack.trials("mix", store)
        finally:
            Writer.for_store(store).close()

    counts = dict(ref.group_by("state").len().iter_rows())
    assert p.counts == {k: counts.get(k, 0) for k in ("complete", "running", "pruned", "failed")}
    assert p.n_trials == len(outcomes) and p.open is not finish
    done = ref.filter(pl.col("state") == "complete").sort(
        ["value", "trial_number"], descending=[direction == "maximize", False])
    if done.is_empty():
        assert p.best is None
    else:
        row = done.row(0, named=True)
        assert (p.best.value, p.best.number) == (row["value"], row["trial_number"])
        assert p.best.params == {"x": row["x"], "kind": row["kind"]}
    tail = ref.tail(recent)
    assert [(t.number, t.state, t.value) for t in p.recent] == list(
        zip(tail["trial_number"], tail["state"], tail["value"]))
    for line, duration in zip(p.recent, tail["duration_s"]):
        assert line.duration_s == duration or line.state == "running" and line.duration_s >= 0
    pruned = ref.filter(pl.col("state") == "pruned").tail(recent)
    assert [(t.number, t.last_step) for t in p.pruned] == list(zip(pruned["trial_number"], pruned["last_step"]))
    # no budget was recorded: none is made up
    assert p.budget is None and p.budget_note == NO_BUDGET and p.eta_s is None


# --- throughput and ETA on a chosen history -----------------------------------------------
def test_throughput_and_eta_on_a_controlled_history(tmp_path):
    history(tmp_path)
    (s,) = progress(store=tmp_path, as_of=at(510)).searches
    # trials end at 30, 90, ..., 450 s; the last 300 s, (210, 510], hold those of k = 4..7
    assert (s.window_s, s.trials_per_min) == (300.0, 0.8)
    assert (s.budget.total, s.budget.unit, s.budget.done, s.budget.per_min) == (20, "trials", 8, 0.8)
    assert s.eta_s == pytest.approx(12 / 0.8 * 60)
    assert s.counts == {"complete": 4, "running": 0, "pruned": 3, "failed": 1}
    assert (s.best.value, s.best.number, s.best.params) == (4.0, 6, {"act": "relu", "lr": 0.5 ** 6, "x": 6})
    assert [(t.number, t.last_step) for t in s.pruned] == [(1, 1), (4, 4), (7, 7)]

    # a shorter window: (395, 515] holds only the end at 450 s
    (s,) = progress(store=tmp_path, as_of=at(515), window=120).searches
    assert s.trials_per_min == 0.5 and s.eta_s == pytest.approx(12 / 0.5 * 60)

    # early on the window is cut at the start of the run: 2 ends (30, 90 s) in 130 s
    (s,) = progress(store=tmp_path, as_of=at(130)).searches
    assert (s.window_s, s.budget.done, s.counts["running"]) == (130.0, 2, 1)
    assert s.trials_per_min == pytest.approx(2 / 130 * 60) and s.eta_s == pytest.approx(18 / 2 * 130)
    assert s.recent[-1].state == "running" and s.recent[-1].duration_s == 130 - 120  # time so far

    # nothing ended in the window: a pace of 0, so no ETA
    (s,) = progress(store=tmp_path, as_of=at(2000), window=60).searches
    assert s.trials_per_min == 0 and s.budget.per_min == 0 and s.eta_s is None


def test_a_finished_search_has_no_eta_and_a_reopened_one_counts_only_its_new_run(tmp_path):
    history(tmp_path).finish(ts=at(600))
    p = progress(store=tmp_path, as_of=at(700))
    assert p.selection == "latest"   # no search open: the one started last
    (s,) = p.searches
    assert not s.open and s.finished_at == at(600) and s.eta_s is None
    assert s.trials_per_min == pytest.approx(3 / 5)   # (300, 600] holds ends at 330, 390, 450
    assert s.budget.done == 8

    # opened again with its own budget: only its trials count against it
    history(tmp_path, n_trials=5, start=1000, n=2, quiet=True)
    p = progress(store=tmp_path, as_of=at(1100))
    assert p.selection == "open"
    (s,) = p.searches
    assert s.open and s.n_trials == 10
    assert (s.budget.total, s.budget.done, s.window_s) == (5, 2, 100.0)
    assert s.trials_per_min == pytest.approx(1.2) and s.eta_s == pytest.approx(3 / 1.2 * 60)

    # the budget spent: an ETA of 0
    history(tmp_path, "b", n_trials=2, n=3)
    (s,) = progress("b", tmp_path, as_of=at(200)).searches
    assert s.budget.done == 3 and s.budget.remaining == 0 and s.eta_s == 0


def test_no_budget_recorded_is_said_never_guessed(tmp_path):
    history(tmp_path, n_trials=None)
    (s,) = progress(store=tmp_path, as_of=at(510)).searches
    assert s.budget is None and s.budget_note == "no budget recorded" and s.eta_s is None
    assert s.trials_per_min == 0.8   # the pace is known all the same

    # two processes opened one run with different budgets: no single one to go by
    hptrack.search("w", n_trials=10, store=tmp_path, ts=at(0))
    hptrack.search("w", n_trials=20, store=tmp_path, ts=at(1), quiet=True)
    Writer.for_store(tmp_path).flush()
    (s,) = progress("w", tmp_path, as_of=at(10)).searches
    assert s.budget is None and "different" in s.budget_note and "n_trials=10" in s.budget_note


def test_budget_of_reads_what_the_search_recorded():
    grid = [{"C": [0.1, 1.0]}, {"C": [3.0], "fit_intercept": [True, False]}]
    kfold = {"type": "KFold", "n_splits": 5}
    assert budget_of({"n_trials": 50}) == (50, "trials", "n_trials=50 recorded when the search started")
    for bad in (0, -3, True, 2.5, "50", None):
        assert budget_of({"n_trials": bad}) is None
    assert budget_of({"search_class": "sklearn.model_selection._search.GridSearchCV", "space": grid,
                      "cv": kfold}) == (20, "fits", "GridSearchCV: 4 grid candidates x 5 folds")
    random = {"search_class": "RandomizedSearchCV", "space": {"C": [1, 2, 3]}, "cv": kfold}
    assert budget_of({**random, "n_iter": 2})[:2] == (10, "fits")
    assert budget_of({**random, "n_iter": 10})[:2] == (15, "fits")   # sklearn samples at most the grid
    dist = {"C": {"distribution": "loguniform", "args": [0.01, 10], "kwds": {}}}
    assert budget_of({**random, "space": dist, "n_iter": 10})[:2] == (50, "fits")
    assert budget_of({"search_class": "GridSearchCV", "space": dist, "cv": kfold}) is None
    assert budget_of({"search_class": "GridSearchCV", "space": grid, "cv": {"type": "list"}})[:2] == (4, "trials")
    assert budget_of({"search_class": "HalvingGridSearchCV", "space": grid, "cv": kfold})[:2] == (4, "trials")
    assert budget_of({"search_class": "HalvingRandomSearchCV", "n_candidates": "exhaust", "cv": kfold}) is None
    assert budget_of({"search_class": "HalvingRandomSearchCV", "n_candidates": 30, "cv": kfold})[:2] == (30, "trials")
    assert budget_of({"search_class": "BayesSearchCV", "n_iter": 8, "cv": kfold})[:2] == (40, "fits")
    assert budget_of({"strategy": "tpe", "space": grid}) is None


def test_a_scikit_learn_search_counts_its_fold_fits(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    import hptrack.sklearn

    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0], "fit_intercept": [True, False]}
    hptrack.sklearn.track(GridSearchCV(LogisticRegression(max_iter=300), grid, cv=3), name="iris",
                          store=tmp_path).fit(X, y)
    (s,) = progress(store=tmp_path).searches
    assert (s.budget.total, s.budget.unit, s.budget.done) == (12, "fits", 12)
    assert s.budget.source == "GridSearchCV: 4 grid candidates x 3 folds"
    assert s.counts["complete"] == 4 and not s.open and s.eta_s is None


def test_which_searches_are_watched(tmp_path):
    history(tmp_path, "b", n=1).finish(ts=at(100))
    history(tmp_path, "c", n=1, start=200)
    history(tmp_path, "d", n=1, start=400).finish(ts=at(500))
    p = progress(store=tmp_path, as_of=at(600))
    assert (p.selection, [s.name for s in p.searches]) == ("open", ["c"])
    hptrack.search("c", store=tmp_path).finish(ts=at(550))
    p = progress(store=tmp_path, as_of=at(600))
    assert (p.selection, [s.name for s in p.searches]) == ("latest", ["d"])
    p = progress(["d", "b", "d"], tmp_path, as_of=at(600))
    assert (p.selection, [s.name for s in p.searches]) == ("named", ["d", "b"])
    with pytest.raises(hptrack.SearchNotFound, match="known searches: b, c, d"):
        progress("nope", tmp_path)


def test_a_multi_objective_search_has_no_single_best(tmp_path):
    s = hptrack.search("mo", directions=["minimize", "maximize"], store=tmp_path)
    with s.trial({"x": 1}) as t:
        t.complete(values=[1.0, 2.0])
    (p,) = progress(store=tmp_path).searches
    assert p.best is None and p.directions == ["minimize", "maximize"] and p.counts["complete"] == 1
    r = CliRunner().invoke(cli, ["--store", str(tmp_path), "watch", "--once"])
    assert r.exit_code == 0 and "hptrack pareto mo" in r.stdout


def test_missing_store_and_bad_arguments(tmp_path):
    p = progress(store=tmp_path / "nope")
    assert (p.selection, p.searches) == ("none", []) and not (tmp_path / "nope").exists()
    with pytest.raises(ValueError, match="recent=-1"):
        progress(store=tmp_path, recent=-1)
    with pytest.raises(ValueError, match="recent=True"):
        progress(store=tmp_path, recent=True)
    with pytest.raises(ValueError, match="window=0"):
        progress(store=tmp_path, window=0)


# --- watch --once ---------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_once_prints_one_frame(tmp_path):
    now = datetime.now(timezone.utc)
    history(tmp_path, t0=now - timedelta(seconds=600), n=8)   # the last 3 trials ended 270, 210, 150 s ago
    history(tmp_path, "nobudget", t0=now - timedelta(seconds=600), n=8, n_trials=None)
    r = run("--store", str(tmp_path), "watch", "--once", "--recent", "3")
    assert r.exit_code == 0, r.stderr
    out = " ".join(r.stdout.split())   # lines fold at 80 columns off a terminal
    assert "2 open search(es)" in out
    assert "trials 8: 4 complete, 0 running, 3 pruned, 1 failed" in out
    assert "best 4 (trial #6): act=relu, lr=0.015625, x=6" in out
    assert "pruned (3, newest first): #7 at step 7, #4 at step 4, #1 at step 1" in out
    assert "pace 0.6 trials/min (last 5m00s); budget 8/20 trials (n_trials=20 recorded" in out
    assert "ETA 20m00s" in out   # 12 trials to go at 0.6 a minute
    assert "no budget recorded, so no ETA" in out
    rows = [line.split() for line in r.stdout.splitlines() if re.match(r"\s*[567]\s", line)]
    assert rows[:3] == [["5", "failed", "30s"], ["6", "complete", "4", "30s"], ["7", "pruned", "30s", "7"]]


def test_once_says_what_is_missing(tmp_path):
    r = run("--store", str(tmp_path / "nope"), "watch", "--once")
    assert r.exit_code == 1 and "no hptrack store at" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = run("--store", str(tmp_path / "empty"), "watch", "--once")
    assert r.exit_code == 0 and r.stdout.startswith("No searches in")
    history(tmp_path / "one", n=1)
    r = run("--store", str(tmp_path / "one"), "watch", "--once", "nope")
    assert r.exit_code == 1 and r.stderr.startswith("Error: no search named 'nope'")


def test_each_live_refresh_says_what_it_waits_for(tmp_path):
    """The live loop's refresh: a message while the store or a named search does
    not exist yet, the frame once it does; messages never pile up."""
    from hptrack._files.store import Store
    from hptrack.cli.output import render
    from hptrack.cli.watch_cmd import _refresh

    args = {"searches": ["a"], "recent": 5, "window": 300.0, "strict": False}
    st = Store(tmp_path / "store")
    def text(renderable):
        return " ".join(render(renderable).split())   # folded at 80 columns

    frame, shown = _refresh(st, None, 2, args)
    assert text(shown).startswith(f"No hptrack store at {st.root} yet: waiting for a search to start")
    history(st.root, "b", n=1)
    Writer.for_store(st.root).flush()
    for _ in range(3):
        frame, shown = _refresh(st, frame, 2, args)
        assert text(shown).count("no search named 'a'") == 1, text(shown)
    history(st.root, "a", n=2)
    Writer.for_store(st.root).flush()
    frame, shown = _refresh(st, frame, 2, args)
    out = text(shown)
    assert "trials 2: 1 complete" in out and "(every 2s, Ctrl-C to stop)" in out and "no search named" not in out

    # a store that cannot be read this time (here: a damaged file, with --strict): the last
    # frame stays, with why, once
    bad = tmp_path / "store" / "events" / "search=zz" / "w-0.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    for _ in range(3):
        frame, shown = _refresh(st, frame, 2, {**args, "strict": True})
        out = text(shown)
        assert out.count("Could not read the store") == 1 and "damaged" in out and "trials 2: 1 complete" in out
    # without --strict the file is left out, and the warning shown with the frame
    frame, shown = _refresh(st, frame, 2, args)
    out = text(shown)
    assert "Could not read" not in out and out.count("Warning: left out 1 damaged file") == 1


def _listing(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.stat(os.path.join(d, f)).st_size,
                   os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, files in os.walk(root) for f in files)


def test_watching_writes_nothing(tmp_path):
    history(tmp_path, n=4)
    Writer.for_store(tmp_path).close()
    before = _listing(tmp_path)
    assert run("--store", str(tmp_path), "watch", "--once").exit_code == 0
    progress(store=tmp_path)
    assert _listing(tmp_path) == before


# --- a real terminal, a search running in another process -------------------------------------
WRITER = textwrap.dedent("""
    import sys, time, hptrack
    store, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    with hptrack.search("live", strategy="random", metric="acc", n_trials=n, store=store) as s:
        for k in range(n):
            try:
                with s.trial({"lr": 10.0 ** -(1 + k % 4), "depth": 1 + k % 5}) as t:
                    for step in range(3):
                        t.report(step, k / 100 + step)
                        if k % 5 == 3 and step == 1:
                            raise hptrack.Pruned()
                    time.sleep(pause)
                    if k % 7 == 6:
                        raise RuntimeError("diverged")
                    t.complete(k / 10)
            except RuntimeError:
                pass
    print("DONE", flush=True)
""")


def test_watch_in_a_terminal_while_a_search_runs(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: the live view is tested in a real terminal (apt-get install tmux)")
    store, script = tmp_path / "store", tmp_path / "writer.py"
    script.write_text(WRITER)
    rc, err = tmp_path / "rc", tmp_path / "err"
    sock = f"hptrack-test-{os.getpid()}"   # a tmux server of its own, never the user's
    tmux = ["tmux", "-L", sock]
    watch = (f"{sys.executable} -m hptrack.cli --store {store} watch --interval 0.4 2>{err}; "
             f"echo $? >{rc}; sleep 60")
    writer = None
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "160", "-y", "50", "bash", "-c", watch],
                       check=True)

        def screen():
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True,
                                  check=True).stdout

        def until(test, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = screen()
                if test(text):
                    return text
                time.sleep(0.2)
            raise AssertionError(f"the terminal never showed it; last screen:\n{screen()}")

        until(lambda text: "No hptrack store at" in text and "waiting" in text, 10)  # started before the search
        writer = subprocess.Popen([sys.executable, str(script), str(store), "24", "0.25"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen: list[int] = []   # the trial count of each screen, in order

        def progressing(text):
            seen.extend(int(n) for n in re.findall(r"trials (\d+): ", text))
            return len(set(seen)) >= 3 and re.search(r"best [0-9.]+ \(trial #\d+\): depth=\d, lr=", text)

        frame = until(progressing, 15)
        assert "live  random, max acc, open" in frame and "budget " in frame and "/24 trials" in frame
        subprocess.run([*tmux, "send-keys", "-t", "w", "C-c"], check=True)
        deadline = time.monotonic() + 10
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rc.exists(), f"watch did not stop on Ctrl-C:\n{screen()}"
        time.sleep(0.2)
        assert rc.read_text().strip() == "0", err.read_text()
        assert "Traceback" not in err.read_text() and "Traceback" not in screen()
        assert "Stopped watching" in screen()

        out, errors = writer.communicate(timeout=30)
        assert writer.returncode == 0 and out.strip() == "DONE", errors
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        if writer is not None and writer.poll() is None:
            writer.kill()
    report = hptrack.verify(store)
    assert report.ok, report.problems
    df = hptrack.trials("live", store)
    assert df.height == 24 and set(df["state"]) == {"complete", "pruned", "failed"}
    assert seen == sorted(seen) and seen[-1] <= 24   # the count only grew


# --- beside writers and a compaction ----------------------------------------------------------
HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers_proc.py")
N_RACE = 300   # trials per writer
COMPACTOR = "import os, sys, hptrack\nwhile not os.path.exists(sys.argv[2]):\n    hptrack.compact(sys.argv[1])\n"


def test_snapshots_beside_writers_and_compactions(tmp_path):
    """Snapshots taken while two processes write one search (small segments, sealed
    often) and a third compacts in a loop never fail and never go back."""
    import helpers_proc as hp

    root, stop = tmp_path / "store", tmp_path / "stop"
    progress(store=root)   # imported and warm before the writers start
    writers = [subprocess.Popen([sys.executable, HELPER, "crash-loop", str(root), str(k0), "trial", "3", "0.01",
                                 str(N_RACE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for k0 in (0, 1000)]
    compactor = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(root), str(stop)],
                                 stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        while any(w.poll() is None for w in writers) or len(seen) < 3:
            for s in progress(store=root).searches:
                seen.append((s.n_trials, s.counts["complete"]))
            time.sleep(0.05)
    finally:
        stop.write_text("stop")
        outs = [w.communicate(timeout=60) for w in writers]
        _, compact_err = compactor.communicate(timeout=60)
    assert all(w.returncode == 0 for w in writers), [err[-2000:] for _, err in outs]
    assert compactor.returncode == 0, compact_err[-2000:]
    assert seen == sorted(seen), seen   # trials and completions only grow
    assert any(0 < n < 2 * N_RACE for n, _ in seen), seen   # one at least while they wrote
    assert list(root.rglob("compact-*.parquet"))   # and the compactions merged files meanwhile
    acks = [a for out, _ in outs for a in hp.parse_acks(out)]
    (s,) = progress(store=root).searches
    assert len(acks) == 2 * N_RACE
    assert s.counts == {"complete": 2 * N_RACE, "running": 0, "pruned": 0, "failed": 0}
    assert hptrack.verify(root).ok
