"""Building a Report: one consistent snapshot of the store, the analyses run per search
and per group of comparable searches."""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf
from hptrack.analysis.report import fit_cache
from hptrack.analysis.report.model import (
    MAX_DRAWN,
    MIN_TRIALS_IMPORTANCE,
    N_MARGINALS,
    PARALLEL_FROM,
    TOP_CONFIGS,
    Group,
    ObjectiveImportance,
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
          max_trials: int | None = MAX_TRIALS, jobs: int | None = None, cache: bool = True) -> Report:
    """Read the store once (as of ``as_of``, default now) and run every analysis.

    Importance and marginals of a search with more than ``max_trials`` complete
    trials are fitted on a seeded random sample of that many (the report says so);
    ``max_trials=None`` fits every trial. ``jobs`` worker processes fit the searches'
    importances side by side (default: the machine's cores, once there are
    PARALLEL_FROM searches to fit; 1: all in this process); the report is the same.
    A fit an earlier report made of the same trials is read back from this machine's
    cache unless ``cache=False`` (see analysis/report/fit_cache.py); the report is the same."""
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
    with _Bar(progress, total=3 * len(ids) + 1) as bar:
        reports = _searches(con, ids, bar, seed, as_of, max_trials, jobs, cache)
        groups = _groups(con, reports, bar, seed)
    return Report(str(resolve(store)), as_of, digest, n_events, reports, groups)


_META = ("name, strategy, direction, metric, started_at, finished_at, seed, CAST(space AS VARCHAR), task, "
         "pruner, kind")


def _searches(con, ids, bar, seed, as_of, max_trials, jobs, use_cache) -> list[SearchReport]:
    """One SearchReport per search. What is read from the store is read for every
    search at once (a query per search and table costs a round trip each: thousands
    on a large store); the analyses then run search by search."""
    from hptrack._read.read import objectives_of, trials_of
    from hptrack.analysis.source import search_spaces

    meta = {sid: rest for sid, *rest in con.sql(
        f"SELECT search_id, {_META} FROM searches WHERE search_id IN (SELECT unnest(?::VARCHAR[]))",
        params=[ids]).fetchall()}
    frames = trials_of(con, ids)
    reports = [_search_report(sid, meta[sid], frames[sid], as_of, seed) for sid in ids]
    spaces = search_spaces(con, ids, {sid: meta[sid][7] for sid in ids})
    directions = objectives_of(con, ids)
    _tables(con, reports)
    _diagnose(reports, con, seed)
    _training(reports, con)
    for sr in reports:
        sr.space = spaces[sr.search_id]
        sr.directions = directions[sr.search_id]
        _pareto(sr, sr.directions)
    _importances(reports, bar, seed, max_trials, jobs, use_cache)
    for sr in reports:
        bar.advance(f"{sr.name}: diagnostics")
        bar.advance(f"{sr.name}: done")
        if sr.strategy == "pbt":
            _pbt(sr, con)
    return reports


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


def _search_report(sid, meta, df, as_of, seed) -> SearchReport:
    """A search's report with what its trials say: states, best, failed, pruned and
    running trials, and the sample drawn one line each."""
    import polars as pl

    name, strategy, direction, metric, started, finished, seed_, _space, task, pruner, kind = meta
    direction = direction or "maximize"
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
    done = sr.complete
    if done.height:
        best = done.sort(["value", "trial_number"], descending=[direction == "maximize", False]).row(0, named=True)
        sr.best = {"trial_number": best["trial_number"], "trial_id": best["trial_id"],
                   "value": best["value"], "params": {p: best[p] for p in params}}
    if df.height > MAX_DRAWN:
        sr.drawn = _drawn(df, seed, sr.best)
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


_REPORTS = """
SELECT r.search_id, r.trial_id, t.trial_number, t.state, r.step, r.value FROM reports r
JOIN trials t USING (search_id, trial_id) WHERE r.search_id IN (SELECT unnest(?::VARCHAR[]))
ORDER BY r.search_id, t.trial_number, r.step, r.ts
"""
_FOLDS = """
SELECT s.search_id, s.trial_id, t.value AS trial_value, t.trial_number, s.fold, s.value, s.metric
FROM scores s JOIN trials t USING (search_id, trial_id)
WHERE s.search_id IN (SELECT unnest(?::VARCHAR[])) AND s.split = 'fold'
ORDER BY s.search_id, t.trial_number, s.fold, s.ts
"""
_TESTS = """
SELECT s.search_id, t.trial_number, t.value, last(s.value ORDER BY s.ts) AS test FROM scores s
JOIN trials t USING (search_id, trial_id) WHERE s.search_id IN (SELECT unnest(?::VARCHAR[])) AND s.split = 'test'
GROUP BY ALL ORDER BY s.search_id, t.trial_number
"""


def _tables(con, reports) -> None:
    """The raw series the plots need, read from the same snapshot, for every search at once:
    the intermediate reports (of the drawn trials), the top configurations' fold scores
    (best first, then by fold) and the test scores."""
    import polars as pl

    from hptrack._read.read import by_search

    ids = [sr.search_id for sr in reports]
    series = {sql: by_search(con.sql(sql, params=[ids]).pl(), ids) for sql in (_REPORTS, _FOLDS, _TESTS)}
    for sr in reports:
        sid = sr.search_id
        sr.reports = series[_REPORTS][sid]
        if sr.drawn is not None:
            sr.reports = sr.reports.filter(pl.col("trial_id").is_in(sr.drawn.to_list()))
        sr.reports = sr.reports.drop("trial_id")
        top = sr.complete.sort("value", descending=sr.direction == "maximize").head(TOP_CONFIGS)
        if top.height:
            folds = series[_FOLDS][sid].filter(pl.col("trial_id").is_in(top["trial_id"].to_list()))
            # as ORDER BY trial value (best first), fold (NULLS LAST, as DuckDB sorts)
            sr.folds = folds.sort(["trial_value", "fold"], descending=[sr.direction == "maximize", False],
                                  nulls_last=True, maintain_order=True) \
                .select("trial_number", "fold", "value", "metric")
            sr.folds = _one_metric(sr.folds, sr.metric)
        # every trial's fold mean, std (sample) and count, for the trial table
        stats = series[_FOLDS][sid].group_by(["trial_number", "metric"], maintain_order=True).agg(
            pl.col("value").mean().alias("fold_mean"), pl.col("value").std().alias("fold_std"),
            pl.len().cast(pl.Int64).alias("n_folds")).sort("trial_number", maintain_order=True)
        sr.fold_stats = _one_metric(stats, sr.metric).drop("metric")
        sr.tests = series[_TESTS][sid]
        if sr.best is not None:
            hit = sr.tests.filter(pl.col("trial_number") == sr.best["trial_number"])
            sr.test_score = hit["test"][0] if hit.height else None


def _one_metric(scores, metric):
    """The rows of one metric: the search's own if it has fold scores of it, else the most common."""
    import polars as pl

    if scores.height == 0 or scores["metric"].n_unique() == 1:
        return scores
    keep = metric if metric in scores["metric"].to_list() else scores["metric"].mode()[0]
    return scores.filter(pl.col("metric") == keep)


def _drawn(trials, seed, best):
    """trial_id of a seeded random sample of MAX_DRAWN trials that keeps the best one."""
    import polars as pl

    ids = trials["trial_id"].sample(MAX_DRAWN, seed=seed).sort()
    if best is not None and best["trial_id"] not in set(ids.to_list()):
        ids = pl.concat([ids.head(MAX_DRAWN - 1), pl.Series("trial_id", [best["trial_id"]])]).sort()
    return ids


def _importances(reports, bar, seed, max_trials, jobs, use_cache) -> None:
    """Every search's importance and marginal curves: kept from an earlier report
    (analysis/report/fit_cache.py), else fitted in ``jobs`` processes.

    A fit is a pure function of the search's trials (analysis/sensitivity.py seeds it),
    so where it runs, or whether it was kept, changes nothing; tests/core/test_report_fast.py
    checks both."""
    import os

    todo, args = [], []   # (search, objective or None), and the fit's arguments
    for sr in reports:
        skip = _importance_skipped(sr)
        if skip:
            sr.importance_note = skip
            bar.advance(f"{sr.name}: importance")
            continue
        # a multi-objective search: one fit per objective, never one that quietly means objective 0;
        # only its importance is kept (the slices plot objective 0's values without curves)
        many = len(sr.directions) > 1
        for k, direction in enumerate(sr.directions if many else [sr.direction]):
            todo.append((sr, k if many else None))
            args.append({"source": sr.trials, "space": sr.space, "direction": direction, "params": sr.params,
                         "seed": seed, "top": 0 if many else N_MARGINALS, "max_trials": max_trials,
                         **({"objective": k} if many else {})})
    names = [fit_cache.key(a) if use_cache else None for a in args]
    found = [fit_cache.load(k) if k else None for k in names]
    fit = [i for i, f in enumerate(found) if f is None]
    if jobs is None:
        jobs = (os.cpu_count() or 1) if len(fit) >= PARALLEL_FROM else 1
    jobs = max(1, min(jobs, len(fit)))
    if jobs > 1:
        # joblib's loky workers: fresh interpreters that never re-run the caller's
        # __main__ (a script without an ``if __name__ == "__main__"`` guard is safe) and
        # never fork this process's DuckDB and polars threads
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, backend="loky", return_as="generator")(
            delayed(_fit_importance)(args[i]) for i in fit)
    else:
        results = (_fit_importance(args[i]) for i in fit)
    for (sr, obj), name, kept in zip(todo, names, found):
        got = kept if kept is not None else next(results)
        if kept is None and name and isinstance(got, fit_cache.Fitted):
            fit_cache.save(name, got)
        if obj is None:
            _set_importance(sr, got)
        else:
            sr.per_objective.append(_objective_importance(obj, sr.directions[obj], got))
            sr.importance_note = "one per objective"
        if obj is None or obj == len(sr.directions) - 1:
            bar.advance(f"{sr.name}: importance")


def _importance_skipped(sr) -> str | None:
    """Why a search's importance is not fitted, or None when it is."""
    done = sr.complete
    if done.height < MIN_TRIALS_IMPORTANCE:
        return (f"skipped: {done.height} complete trial(s), importance needs at least "
                f"{MIN_TRIALS_IMPORTANCE}")
    if not any(done[p].n_unique() > 1 for p in sr.params):
        return "skipped: no param varies over the complete trials"
    return None


def _fit_importance(args) -> Any:
    """What the report keeps of sensitivity.analyse(**args) (a fit_cache.Fitted), or why it
    could not run (a string, which any worker can send back: not every exception pickles)."""
    from hptrack.analysis.sensitivity import analyse

    # the trials already read from this snapshot, with the space `importance` reads (the
    # recorded space, else each trial's distributions) and its defaults: the same numbers
    # as hptrack.analysis.importance(name, seed=seed); one fit serves the marginal curves
    try:
        s = analyse(**args)
    except Exception as e:  # an analysis that cannot run is reported, not fatal
        return f"not computed: {type(e).__name__}: {e}"
    return fit_cache.Fitted(s.importance, s.marginals, (s.n_fitted, s.n_usable),
                        s.stability.note if s.stability is not None else None, s.note if s.sampled else None)


def _objective_importance(k, direction, f) -> ObjectiveImportance:
    if isinstance(f, str):
        return ObjectiveImportance(k, direction, note=f)
    return ObjectiveImportance(k, direction, f.importance, f.stability, f.note)


def _set_importance(sr, f) -> None:
    if isinstance(f, str):
        sr.importance_note = f
        return
    sr.importance, sr.marginals, sr.importance_sample = f.importance, f.marginals, f.sample
    sr.importance_stability = f.stability
    if f.note is not None:
        sr.importance_note = f.note


def _pareto(sr, directions) -> None:
    """The Pareto front and hypervolume of a multi-objective search (none for one objective)."""
    from hptrack.analysis.multiobjective import front_of

    if len(directions) < 2:
        return
    try:
        sr.pareto = front_of(sr.trials, directions, search=sr.name, search_id=sr.search_id)
    except Exception as e:  # reported in the report, not fatal
        sr.pareto_note = f"not computed: {type(e).__name__}: {e}"


def _diagnose(reports, con, seed) -> None:
    from hptrack.analysis.overfitting import diagnose, diagnose_many

    try:
        # the defaults of diagnose and its CLI, every search in one read
        found = diagnose_many(con, [sr.search_id for sr in reports], seed=seed)
    except Exception:
        found = None   # one search's failure is that search's note: diagnose them one by one
    for sr in reports:
        if found is not None:
            sr.diagnosis = found[sr.search_id]
            continue
        try:
            sr.diagnosis = diagnose(sr.search_id, con=con, seed=seed)
        except Exception as e:  # reported in the report, not fatal
            sr.diagnosis_note = f"not computed: {type(e).__name__}: {e}"


def _training(reports, con) -> None:
    """EarlyStopping's stops and the learning rate per step (of the drawn trials)."""
    from hptrack._read.training import summaries

    found = summaries(con, {sr.search_id: sr.name for sr in reports},
                      {sr.search_id: None if sr.drawn is None else sr.drawn.to_list() for sr in reports})
    for sr in reports:
        t = found[sr.search_id]
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
