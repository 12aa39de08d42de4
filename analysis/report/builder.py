"""Building a Report: one consistent snapshot of the store, the analyses run per search
and per group of comparable searches."""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from hptrack._files.checks import load_json
from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf
from hptrack.analysis.report.model import (
    MAX_DRAWN,
    MIN_TRIALS_IMPORTANCE,
    N_MARGINALS,
    TOP_CONFIGS,
    Group,
    Report,
    SearchReport,
)
from hptrack.analysis.sensitivity import MAX_TRIALS
from hptrack.analysis.source import is_trial_column

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def build(searches: Sequence[str] | None = None, store: StoreLike = None, as_of: AsOf = None, *, progress: Any = None,
          seed: int = 0,
          max_trials: int | None = MAX_TRIALS) -> Report:
    """Read the store once (as of ``as_of``, default now) and run every analysis.

    Importance and marginals of a search with more than ``max_trials`` complete
    trials are fitted on a seeded random sample of that many (the report says so);
    ``max_trials=None`` fits every trial."""
    from hptrack._files.store import resolve
    from hptrack._read.read import connect, resolve_search
    from hptrack._read.snapshot import freeze
    from hptrack._read.views import parse_time

    as_of = parse_time(as_of) if as_of is not None else datetime.now(timezone.utc)
    # every view folded once, into tables: each analysis below asks its questions of those
    con = freeze(connect(store, as_of))
    if searches:
        ids = [resolve_search(con, s)[0] for s in dict.fromkeys(searches)]
    else:
        ids = [r[0] for r in con.sql("SELECT search_id FROM searches ORDER BY started_at, name").fetchall()]
    digest, n_events = _snapshot_hash(con, ids)
    reports = []
    with _Bar(progress, total=3 * len(ids) + 1) as bar:
        for sid in ids:
            reports.append(_search(con, sid, bar, seed, as_of, max_trials))
        groups = _groups(con, reports, bar, seed)
    return Report(str(resolve(store)), as_of, digest, n_events, reports, groups)


def _snapshot_hash(con, ids):
    if not ids:
        return hashlib.sha256(b"").hexdigest(), 0
    marks = ",".join("?" * len(ids))
    ids = con.sql(f"SELECT event_id FROM events WHERE search_id IN ({marks}) ORDER BY event_id",
                  params=ids).pl()["event_id"]
    if ids.is_empty():
        return hashlib.sha256(b"").hexdigest(), 0
    # sha256 of every id followed by a newline, joined in one go (a million events per search)
    text = ids.str.join("\n")[0] + "\n"
    return hashlib.sha256(text.encode()).hexdigest(), ids.len()


def _search(con, sid, bar, seed, as_of, max_trials) -> SearchReport:
    import polars as pl

    from hptrack._read.read import trials as trials_frame

    (name, strategy, direction, metric, started, finished, seed_, payload, space, task, pruner,
     kind) = con.sql(
        "SELECT name, strategy, direction, metric, started_at, finished_at, seed, payload, "
        "CAST(space AS VARCHAR), task, pruner, kind FROM searches WHERE search_id = ?",
        params=[sid]).fetchall()[0]
    payload = load_json(payload, {})
    payload = payload if isinstance(payload, dict) else {}
    direction = direction or "maximize"
    df = trials_frame(sid, con=con)
    params = [c for c in df.columns if not is_trial_column(c)]
    states = dict.fromkeys(("complete", "pruned", "failed", "running"), 0)
    for s, n in df.group_by("state").len().iter_rows():
        states[s] = n
    sr = SearchReport(name=name, search_id=sid, strategy=strategy, direction=direction,
                      metric=metric or "value", task=task, seed=seed_, states=states,
                      started_at=started, finished_at=finished, wall_s=_wall(df, as_of), trials=df,
                      params=params, pruner=pruner, kind=kind)
    sr.failed = [(n, e) for n, e in df.filter(pl.col("state") == "failed")
                 .select("trial_number", "error").iter_rows()]
    sr.pruned = [(n, s) for n, s in df.filter(pl.col("state") == "pruned")
                 .select("trial_number", "last_step").iter_rows()]
    sr.running = [(n, t) for n, t in df.filter(pl.col("state") == "running")
                  .select("trial_number", "started_at").iter_rows()]
    done = df.filter((pl.col("state") == "complete") & pl.col("value").is_not_null())
    if done.height:
        best = done.sort(["value", "trial_number"], descending=[direction == "maximize", False]).row(0, named=True)
        sr.best = {"trial_number": best["trial_number"], "trial_id": best["trial_id"],
                   "value": best["value"], "params": {p: best[p] for p in params}}
    _pareto(sr, con)
    _tables(con, sr, done, seed)
    bar.advance(f"{name}: importance")
    _importance(sr, con, done, space, seed, max_trials)
    bar.advance(f"{name}: diagnostics")
    _diagnose(sr, con, seed)
    _training(sr, con)
    bar.advance(f"{name}: done")
    if strategy == "pbt":
        _pbt(sr, con)
    return sr


def _wall(df, as_of):
    """Seconds from the first trial's start to the last trial's end; running
    trials count up to the snapshot's as-of time (so a rebuild gives the same)."""
    if df.height == 0:
        return None
    start = df["started_at"].min()
    end = df["finished_at"].max()
    if df["finished_at"].null_count():
        end = as_of if end is None else max(end, as_of)
    return (end - start).total_seconds() if start is not None and end is not None else None


def _tables(con, sr, done, seed) -> None:
    """The raw series the plots need, read from the same snapshot."""
    import polars as pl

    sid = sr.search_id
    keep, params = "", [sid]
    if sr.trials.height > MAX_DRAWN:
        sr.drawn = _drawn(sr.trials, seed, sr.best)
        keep, params = " AND r.trial_id IN (SELECT unnest(?::VARCHAR[]))", [sid, sr.drawn.to_list()]
    sr.reports = con.sql(
        "SELECT t.trial_number, t.state, r.step, r.value FROM reports r JOIN trials t "
        f"USING (search_id, trial_id) WHERE r.search_id = ?{keep} ORDER BY t.trial_number, r.step, r.ts",
        params=params).pl()
    top = done.sort("value", descending=sr.direction == "maximize").head(TOP_CONFIGS)
    ids = top["trial_id"].to_list()
    if ids:
        marks = ",".join("?" * len(ids))
        sr.folds = con.sql(
            f"SELECT t.trial_number, s.fold, s.value, s.metric FROM scores s JOIN trials t "
            f"USING (search_id, trial_id) WHERE s.search_id = ? AND s.split = 'fold' "
            f"AND s.trial_id IN ({marks}) ORDER BY t.value {'DESC' if sr.direction == 'maximize' else 'ASC'}, "
            f"s.fold", params=[sid, *ids]).pl()
        if sr.folds.height and sr.folds["metric"].n_unique() > 1:
            keep = sr.metric if sr.metric in sr.folds["metric"].to_list() else sr.folds["metric"].mode()[0]
            sr.folds = sr.folds.filter(pl.col("metric") == keep)
    sr.tests = con.sql(
        "SELECT t.trial_number, t.value, last(s.value ORDER BY s.ts) AS test FROM scores s "
        "JOIN trials t USING (search_id, trial_id) WHERE s.search_id = ? AND s.split = 'test' "
        "GROUP BY ALL ORDER BY t.trial_number", params=[sid]).pl()
    if sr.best is not None:
        hit = sr.tests.filter(pl.col("trial_number") == sr.best["trial_number"])
        sr.test_score = hit["test"][0] if hit.height else None


def _drawn(trials, seed, best):
    """trial_id of a seeded random sample of MAX_DRAWN trials that keeps the best one."""
    import polars as pl

    ids = trials["trial_id"].sample(MAX_DRAWN, seed=seed).sort()
    if best is not None and best["trial_id"] not in set(ids.to_list()):
        ids = pl.concat([ids.head(MAX_DRAWN - 1), pl.Series("trial_id", [best["trial_id"]])]).sort()
    return ids


def _importance(sr, con, done, space, seed, max_trials) -> None:
    from hptrack.analysis.sensitivity import analyse
    from hptrack.analysis.source import search_space

    varying = [p for p in sr.params if done.height and done[p].n_unique() > 1]
    if done.height < MIN_TRIALS_IMPORTANCE:
        sr.importance_note = (f"skipped: {done.height} complete trial(s), importance needs at least "
                              f"{MIN_TRIALS_IMPORTANCE}")
        return
    if not varying:
        sr.importance_note = "skipped: no param varies over the complete trials"
        return
    try:
        # the trials already read from this snapshot, with the space `importance` reads (the
        # recorded space, else each trial's distributions) and its defaults: the same numbers
        # as hptrack.analysis.importance(name, seed=seed); one fit serves the marginal curves
        s = analyse(sr.trials, space=search_space(con, sr.search_id, space), direction=sr.direction,
                    params=sr.params, seed=seed, top=N_MARGINALS, max_trials=max_trials)
    except Exception as e:  # an analysis that cannot run is reported, not fatal
        sr.importance_note = f"not computed: {type(e).__name__}: {e}"
        return
    sr.importance, sr.marginals = s.importance, s.marginals
    sr.importance_sample = (s.n_fitted, s.n_usable)
    sr.importance_stability = s.stability.note if s.stability is not None else None
    if s.sampled:
        sr.importance_note = s.note


def _pareto(sr, con) -> None:
    """The Pareto front and hypervolume of a multi-objective search (none for one objective)."""
    from hptrack._read.read import objectives
    from hptrack.analysis.multiobjective import front_of

    directions = objectives(con, sr.search_id)
    if len(directions) < 2:
        return
    try:
        sr.pareto = front_of(sr.trials, directions, search=sr.name, search_id=sr.search_id)
    except Exception as e:  # reported in the report, not fatal
        sr.pareto_note = f"not computed: {type(e).__name__}: {e}"


def _diagnose(sr, con, seed) -> None:
    from hptrack.analysis.overfitting import diagnose

    try:
        sr.diagnosis = diagnose(sr.search_id, con=con, seed=seed)  # the defaults of diagnose and its CLI
    except Exception as e:  # reported in the report, not fatal
        sr.diagnosis_note = f"not computed: {type(e).__name__}: {e}"


def _training(sr, con) -> None:
    """EarlyStopping's stops and the learning rate per step (of the drawn trials)."""
    from hptrack._read.training import summary

    drawn = None if sr.drawn is None else sr.drawn.to_list()
    t = summary(sr.search_id, con=con, trial_ids=drawn)
    sr.training = None if t.empty else t


def _pbt(sr, con) -> None:
    from hptrack.analysis.population import lineage, schedule

    try:
        sr.lineage = lineage(sr.search_id, con=con)
        if sr.best is not None:
            sr.schedule = schedule(sr.search_id, sr.best["trial_id"], con=con)
    except Exception as e:  # reported in the report, not fatal
        sr.diagnosis_note = (sr.diagnosis_note or "") + f" PBT lineage not read: {e}"


NO_TASK = "no task recorded: pass task=... to compare it with others"
NESTED = ("a nested-CV outer run: the generalisation estimate of one search, not a strategy; "
          "not compared")


def _groups(con, reports, bar, seed):
    """Searches that share task, metric and direction are compared with each other;
    a search with no task, and a nested-CV outer run, stand alone and say why."""
    by_key: dict = {}
    for r in reports:
        alone = r.task is None or r.kind == "nested_cv"
        by_key.setdefault(("alone", r.search_id) if alone else (r.task, r.metric, r.direction), []).append(r)
    groups = []
    for members in by_key.values():
        first = members[0]
        g = Group(first.task, first.metric, first.direction, [m.name for m in members])
        groups.append(g)
        if first.kind == "nested_cv":
            g.note = NESTED
        elif first.task is None:
            g.note = NO_TASK
        elif len(members) >= 2:
            _compare_group(con, g, members, seed)
    bar.advance("comparison")
    return groups


def _compare_group(con, g, members, seed) -> None:
    from hptrack.analysis.comparison import compare

    usable = [m for m in members if m.best is not None]
    if len(usable) < 2:
        g.note = "no comparison: fewer than 2 of these searches have a complete trial"
        return
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # its defaults: the numbers `hptrack compare` prints
            g.comparison = compare([m.search_id for m in usable], con=con, seed=seed)
    except Exception as e:  # reported in the report, not fatal
        g.note = f"no comparison: {type(e).__name__}: {e}"
        return
    g.best_strategy, g.best_reason = g.comparison.best, g.comparison.verdict


class _Bar:
    """A transient rich progress bar on stderr while the analyses run (only on a terminal)."""

    def __init__(self, enabled, total) -> None:
        self.enabled = _tty() if enabled is None else enabled
        self.total = total
        self.progress: Any = None  # a rich Progress once started
        self.task: Any = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("report", total=self.total)
        return self

    def advance(self, label) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=label[:40])

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _tty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
