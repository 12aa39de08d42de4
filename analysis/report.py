"""What happened in a store, and what to do next: ``hptrack report``.

``build(searches, store, as_of)`` reads one consistent snapshot of the store
(every view folded as of one instant) and runs the analyses per search:
best configuration, trials by state, wall time, importance, overfitting
diagnostics, and a strategy comparison for searches that share a task (the
``task`` column of the searches view: a ``task=`` attribute, else the data
hptrack.sklearn fitted on, else the ``dataset`` attribute), metric and
direction. A search with no task, and a nested-CV outer run, stand alone. ``report_terminal.render_terminal`` prints
it with rich; ``report_html.write`` turns it into one offline HTML file.

The snapshot is stated in every report: the as-of time and a sha256 over the
sorted event ids it read, so ``hptrack report --as-of <time>`` rebuilds it.

>>> r = hptrack.report()                       # prints, returns the Report
>>> hptrack.report(["grid", "tpe"], html="report.html")
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hptrack.checks import load_json

from .report_terminal import render_terminal
from .sensitivity import MAX_TRIALS
from .source import is_trial_column

__all__ = ["Group", "Report", "SearchReport", "build", "render_terminal", "report"]

MIN_TRIALS_IMPORTANCE = 8     # fANOVA on fewer complete trials is noise
TOP_CONFIGS = 5               # configurations whose fold scores are shown
N_MARGINALS = 2
MAX_DRAWN = 1000              # trials drawn one line each (parallel coordinates, intermediate
                              # values): past that a plot is a blot and the HTML tens of MB


@dataclass
class SearchReport:
    name: str
    search_id: str
    strategy: str | None
    direction: str
    metric: str
    task: str | None
    seed: int | None
    states: dict                       # state -> count
    started_at: datetime | None
    finished_at: datetime | None       # null while the search is still open
    wall_s: float | None               # first trial start to last trial end (or as-of)
    best: dict | None = None           # trial_number, trial_id, value, params
    test_score: float | None = None
    failed: list = field(default_factory=list)     # (trial_number, error)
    pruned: list = field(default_factory=list)     # (trial_number, last_step)
    running: list = field(default_factory=list)    # (trial_number, started_at)
    importance: object = None          # polars (param, importance, std, ..., share)
    importance_note: str | None = None   # why not computed, or the sample it was fitted on
    importance_sample: tuple | None = None  # (trials fitted, usable trials)
    importance_stability: str | None = None  # Stability.note: does the top param stay top
    marginals: dict = field(default_factory=dict)  # param -> polars (value, mean, std)
    diagnosis: object = None           # hptrack.analysis.overfitting.Diagnosis
    diagnosis_note: str | None = None
    trials: object = None              # hptrack.trials() frame
    params: list = field(default_factory=list)
    reports: object = None             # polars: trial_number, state, step, value (drawn trials)
    drawn: object = None               # trial ids drawn in per-trial plots, None = every trial
    folds: object = None               # polars: trial_number, fold, value (top configs)
    tests: object = None               # polars: trial_number, value (validation), test
    lineage: object = None             # PBT forks, polars
    schedule: object = None            # PBT winner's schedule, polars
    pruner: str | None = None          # short pruner name (median, hyperband, sha), None: none
    kind: str | None = None            # "nested_cv" for a nested-CV outer run
    pareto: object = None              # multi-objective: hptrack.analysis.multiobjective.Pareto
    pareto_note: str | None = None     # why it was not computed
    training: object = None            # hptrack.training.TrainingSummary, None if nothing to show


@dataclass
class Group:
    task: str | None
    metric: str
    direction: str
    searches: list                     # names
    comparison: object = None          # hptrack.analysis.comparison.Comparison
    note: str | None = None
    best_strategy: str | None = None   # only when the tests name one (Comparison.best)
    best_reason: str | None = None     # Comparison.verdict: why a winner, or why none


@dataclass
class Report:
    store: str
    as_of: datetime
    events_sha256: str
    n_events: int
    searches: list
    groups: list
    built_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def snapshot(self) -> str:
        return (f"as of {self.as_of.isoformat(timespec='microseconds')}; {self.n_events} events; "
                f"sha256 {self.events_sha256[:16]}")


# --- gathering ----------------------------------------------------------------------
def build(searches=None, store=None, as_of=None, *, progress=None, seed=0,
          max_trials=MAX_TRIALS) -> Report:
    """Read the store once (as of ``as_of``, default now) and run every analysis.

    Importance and marginals of a search with more than ``max_trials`` complete
    trials are fitted on a seeded random sample of that many (the report says so);
    ``max_trials=None`` fits every trial."""
    from hptrack.read import connect, parse_time, resolve_search
    from hptrack.store import resolve

    as_of = parse_time(as_of) if as_of is not None else datetime.now(timezone.utc)
    con = connect(store, as_of)
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
    from hptrack.read import trials as trials_frame

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
    states = {s: 0 for s in ("complete", "pruned", "failed", "running")}
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


def _tables(con, sr, done, seed):
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


def _importance(sr, con, done, space, seed, max_trials):
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
    except Exception as e:  # noqa: BLE001  (an analysis that cannot run is reported, not fatal)
        sr.importance_note = f"not computed: {type(e).__name__}: {e}"
        return
    sr.importance, sr.marginals = s.importance, s.marginals
    sr.importance_sample = (s.n_fitted, s.n_usable)
    sr.importance_stability = s.stability.note
    if s.sampled:
        sr.importance_note = s.note


def _pareto(sr, con):
    """The Pareto front and hypervolume of a multi-objective search (none for one objective)."""
    from hptrack.read import objectives

    from .multiobjective import front_of

    directions = objectives(con, sr.search_id)
    if len(directions) < 2:
        return
    try:
        sr.pareto = front_of(sr.trials, directions, search=sr.name, search_id=sr.search_id)
    except Exception as e:  # noqa: BLE001  (reported in the report, not fatal)
        sr.pareto_note = f"not computed: {type(e).__name__}: {e}"


def _diagnose(sr, con, seed):
    from hptrack.analysis.overfitting import diagnose

    try:
        sr.diagnosis = diagnose(sr.search_id, con=con, seed=seed)  # the defaults of diagnose and its CLI
    except Exception as e:  # noqa: BLE001  (reported in the report, not fatal)
        sr.diagnosis_note = f"not computed: {type(e).__name__}: {e}"


def _training(sr, con):
    """EarlyStopping's stops and the learning rate per step (of the drawn trials)."""
    from hptrack.training import summary

    drawn = None if sr.drawn is None else sr.drawn.to_list()
    t = summary(sr.search_id, con=con, trial_ids=drawn)
    sr.training = None if t.empty else t


def _pbt(sr, con):
    from hptrack.pbt import lineage, schedule

    try:
        sr.lineage = lineage(sr.search_id, con=con)
        if sr.best is not None:
            sr.schedule = schedule(sr.search_id, sr.best["trial_id"], con=con)
    except Exception as e:  # noqa: BLE001  (reported in the report, not fatal)
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


def _compare_group(con, g, members, seed):
    from hptrack.analysis.comparison import compare

    usable = [m for m in members if m.best is not None]
    if len(usable) < 2:
        g.note = "no comparison: fewer than 2 of these searches have a complete trial"
        return
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g.comparison = compare([m.search_id for m in usable], con=con, seed=seed)  # its defaults: the numbers `hptrack compare` prints
    except Exception as e:  # noqa: BLE001  (reported in the report, not fatal)
        g.note = f"no comparison: {type(e).__name__}: {e}"
        return
    g.best_strategy, g.best_reason = g.comparison.best, g.comparison.verdict


class _Bar:
    """A transient rich progress bar on stderr while the analyses run (only on a terminal)."""

    def __init__(self, enabled, total):
        self.enabled = _tty() if enabled is None else enabled
        self.total, self.progress, self.task = total, None, None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("report", total=self.total)
        return self

    def advance(self, label):
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=label[:40])

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()


def _tty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --- library entry point --------------------------------------------------------------
def report(searches=None, store=None, html=None, as_of=None, *, console=None, progress=None,
           quiet=False, max_trials=MAX_TRIALS) -> Report:
    """Build the report of ``searches`` (names or ids; default every search in the
    store), print it to the terminal unless ``quiet``, and write it as one
    self-contained HTML file when ``html`` is a path. Returns the Report."""
    if isinstance(searches, str):
        searches = [searches]
    rep = build(searches, store, as_of, progress=progress, max_trials=max_trials)
    if not quiet:
        render_terminal(rep, console)
    if html is not None:
        from .report_html import write
        write(rep, html)
    return rep
