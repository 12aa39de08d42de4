"""What a report holds: one SearchReport per search, Groups of comparable searches, the Report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hptrack.analysis.notebook import Shown, iframe

MIN_TRIALS_IMPORTANCE = 8     # fANOVA on fewer complete trials is noise
# searches to fit from which their importances are fitted in worker processes: starting
# them costs about as much as fitting a dozen small searches
PARALLEL_FROM = 12
TOP_CONFIGS = 5               # configurations whose fold scores are shown
N_MARGINALS = 2
MAX_DRAWN = 1000              # trials drawn one line each (parallel coordinates, intermediate
                              # values): past that a plot is a blot and the HTML tens of MB


@dataclass
class ObjectiveImportance:
    """One objective's importance in a multi-objective search's report: what
    ``hptrack.analysis.importance(search, objective=k)`` gives, and its stability note."""
    objective: int
    direction: str
    importance: Any = None          # polars, as SearchReport.importance
    stability: str | None = None
    note: str | None = None         # why not computed, or the sample it was fitted on


@dataclass(repr=False)
class SearchReport(Shown):
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
    importance: Any = None          # polars (param, importance, std, ..., share)
    importance_note: str | None = None   # why not computed, or the sample it was fitted on
    importance_sample: tuple | None = None  # (trials fitted, usable trials)
    importance_stability: str | None = None  # Stability.note: does the top param stay top
    marginals: dict = field(default_factory=dict)  # param -> polars (value, mean, std)
    directions: list = field(default_factory=list)  # one per objective
    per_objective: list = field(default_factory=list)  # multi-objective: an ObjectiveImportance each
    diagnosis: Any = None           # hptrack.analysis.overfitting.Diagnosis
    diagnosis_note: str | None = None
    trials: Any = None              # hptrack.trials() frame
    params: list = field(default_factory=list)
    reports: Any = None             # polars: trial_number, state, step, value (drawn trials)
    drawn: Any = None               # trial ids drawn in per-trial plots, None = every trial
    folds: Any = None               # polars: trial_number, fold, value (top configs)
    fold_stats: Any = None          # polars: trial_number, fold_mean, fold_std, n_folds (every trial)
    space: dict = field(default_factory=dict)  # param -> what its space says (log, low, high, categories)
    tests: Any = None               # polars: trial_number, value (validation), test
    lineage: Any = None             # PBT forks, polars
    schedule: Any = None            # PBT winner's schedule, polars
    pruner: str | None = None          # short pruner name (median, hyperband, sha), None: none
    kind: str | None = None            # "nested_cv" for a nested-CV outer run
    pareto: Any = None              # multi-objective: hptrack.analysis.multiobjective.Pareto
    pareto_note: str | None = None     # why it was not computed
    training: Any = None            # hptrack.training.TrainingSummary, None if nothing to show

    @property
    def n_trials(self) -> int:
        return sum(self.states.values())

    @property
    def complete(self) -> Any:
        """The complete trials with a value (polars)."""
        import polars as pl

        return self.trials.filter((pl.col("state") == "complete") & pl.col("value").is_not_null())

    def _facts(self):
        best = (None if self.best is None else
                f"trial {self.best['trial_number']}: {self.best['value']:.4g} {self.metric} ({self.direction})")
        facts = [("strategy", self.strategy), ("task", self.task),
                 ("trials", ", ".join(f"{n} {k}" for k, n in self.states.items())), ("best", best),
                 ("params", self.best["params"] if self.best else None), ("test score", self.test_score)]
        return repr(self.name), facts, [("importance", self.importance)]


@dataclass(repr=False)
class Group(Shown):
    task: str | None
    metric: str
    direction: str
    searches: list                     # names
    comparison: Any = None          # hptrack.analysis.comparison.Comparison
    note: str | None = None
    best_strategy: str | None = None   # only when the tests name one (Comparison.best)
    best_reason: str | None = None     # Comparison.verdict: why a winner, or why none

    def _facts(self):
        facts = [("searches", ", ".join(self.searches)), ("best strategy", self.best_strategy or "none named"),
                 ("why", self.best_reason or self.note)]
        return f"task {self.task!r}, {self.metric} ({self.direction})", facts, []


@dataclass(repr=False)
class Report(Shown):
    store: str
    as_of: datetime
    events_sha256: str
    n_events: int
    searches: list
    groups: list
    built_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def _facts(self):
        import polars as pl

        rows = [{"search": s.name, "strategy": s.strategy, "trials": s.n_trials,
                 "best": None if s.best is None else s.best["value"], "metric": s.metric,
                 "best params": None if s.best is None else s.best["params"]} for s in self.searches]
        frame = pl.DataFrame(rows, schema={"search": pl.String, "strategy": pl.String, "trials": pl.Int64,
                                           "best": pl.Float64, "metric": pl.String, "best params": pl.Object})
        facts = [("store", self.store), ("snapshot", self.snapshot),
                 ("comparisons", "; ".join(f"{g.task}: {g.best_strategy or 'no winner'}"
                                           for g in self.groups if g.comparison is not None) or None)]
        return f"{len(self.searches)} searches", facts, [("searches", frame)]

    def show(self, height: int = 900) -> Any:
        """The full interactive HTML report for a notebook, in an iframe of its own (the
        notebook's styles and the report's never meet): the cell displays it when it is the
        cell's last expression, or pass it to IPython's ``display()``."""
        from hptrack.analysis.report.html import render

        return _Inline(iframe(render(self), height))

    @property
    def snapshot(self) -> str:
        return (f"as of {self.as_of.isoformat(timespec='microseconds')}; {self.n_events} events; "
                f"sha256 {self.events_sha256[:16]}")


# --- gathering ----------------------------------------------------------------------


class _Inline:
    """HTML for a notebook to display (what IPython.display.HTML is, without needing IPython)."""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<hptrack report: {len(self.html):,} characters of HTML; display it in a notebook>"
