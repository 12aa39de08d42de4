"""How far running searches have got: one snapshot for ``hptrack watch``.

Per search: trials by state, the best complete trial so far with its params,
the last trials, the pruned ones with the step they stopped at, the recent
throughput and, when the search recorded a budget, how much of it is spent
and an ETA. A pure read: it opens the store like any reader (no lock, no
write), so watching never slows or blocks the writers.

The budget is read, never guessed, from what ``search_started`` recorded:

- ``n_trials`` (``hptrack.search(..., n_trials=100)``, or an Optuna
  ``hptrack.optuna.Callback(n_trials=100)``): that many trials;
- a scikit-learn search (``hptrack.sklearn``): its candidates (the grid's
  size, ``n_iter``, a halving search's ``n_candidates``) times the folds of
  ``cv``, counted in fold fits, since a trial appears only when sklearn
  returns its batch while each fold's score is live; a halving search counts
  its candidates (its rungs fit different numbers of folds);
- anything else: no budget (``budget is None``, ``budget_note`` says why).

The budget belongs to the search's current run: a name opened again after it
finished starts a new run, and only the trials (fits) since that run began
count against its budget. Throughput is the trials (fits) that ended in the
last ``window`` seconds of the run (up to now, or to the search's finish),
per minute; the ETA is what remains of the budget at that pace.

>>> p = hptrack.analysis.progress()            # the open searches, else the latest one
>>> s = p.searches[0]
>>> s.counts, s.best, s.budget, s.eta_s

The module is not named ``progress``: that is the function, which a submodule
of the same name would replace on the package once imported.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from hptrack._files.checks import load_json
from hptrack._files.store import StoreLike, resolve
from hptrack._read.read import connect, resolve_search
from hptrack._read.views import AsOf, Connection, parse_time
from hptrack.schema import decode_param

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl

__all__ = ["Best", "Budget", "Progress", "SearchProgress", "TrialLine", "budget_of", "progress"]

STATES = ("complete", "running", "pruned", "failed")
NO_BUDGET = "no budget recorded"


@dataclass(frozen=True)
class TrialLine:
    """One trial as the snapshot lists it."""

    number: int
    state: str
    value: float | None
    duration_s: float | None    # for a running trial: how long it has run so far
    last_step: int | None       # the last intermediate step (where a pruned trial stopped)


@dataclass(frozen=True)
class Best:
    """The best complete trial so far, in the search's direction (ties: the first)."""

    value: float
    number: int
    params: dict


@dataclass(frozen=True)
class Budget:
    """What the current run of a search set out to do, and how much of it is done."""

    total: int
    unit: str                   # "trials" or "fits" (scikit-learn's candidate x fold fits)
    source: str                 # where it was read, e.g. "n_trials=50 recorded when the search started"
    done: int                   # ended trials (or scored fits) of the current run
    per_min: float | None       # of the unit, over the recent window; None: the window is too short

    @property
    def remaining(self) -> int:
        return max(self.total - self.done, 0)


@dataclass
class SearchProgress:
    """One search in a snapshot."""

    name: str
    search_id: str
    strategy: str | None        # with its pruner, as `hptrack ls` shows it (tpe+median)
    direction: str | None
    metric: str | None
    directions: list | None     # a multi-objective search's; then there is no single best
    open: bool                  # no search_finished after its last start
    started_at: datetime | None
    finished_at: datetime | None
    last_event_at: datetime | None
    counts: dict                # state -> trials of the whole search (complete, running, pruned, failed)
    best: Best | None
    recent: list                # the last trials by number (TrialLine), newest last
    pruned: list                # the last pruned trials (TrialLine), newest last
    window_s: float             # the span the throughput is measured over
    trials_per_min: float | None    # trials that ended in that span, per minute
    budget: Budget | None
    budget_note: str            # where the budget was read, or why there is none
    eta_s: float | None         # seconds until the budget is spent at the current pace

    @property
    def n_trials(self) -> int:
        return sum(self.counts.values())


@dataclass
class Progress:
    """A snapshot of searches' progress, taken at ``taken_at``."""

    store: str
    taken_at: datetime
    selection: str              # how the searches were chosen ("named", "open", "latest", "none")
    searches: list = field(default_factory=list)   # SearchProgress


def progress(searches: str | Sequence[str] | None = None, store: StoreLike = None, as_of: AsOf = None,
             con: Connection | None = None, *, recent: int = 5, window: float = 300.0,
             strict: bool = False) -> Progress:
    """A snapshot of the progress of ``searches`` (names or ids; default: every
    search still open, else the one started last) in ``store``.

    ``recent``: how many of the last trials and of the last pruned trials to list.
    ``window``: the seconds of recent history the throughput is measured over.
    ``as_of``: the snapshot as of a past moment (also the "now" of throughput and ETA).
    A store that does not exist, or holds no searches, gives a snapshot with none.
    """
    if isinstance(recent, bool) or not isinstance(recent, numbers.Integral) or recent < 0:
        raise ValueError(f"recent={recent!r}: give how many trials to list, an int >= 0")
    if isinstance(window, bool) or not isinstance(window, numbers.Real) or not window > 0:
        raise ValueError(f"window={window!r}: give the throughput's window in seconds, a number > 0")
    con = con or connect(store, as_of, strict=strict)
    now = _utc(parse_time(as_of)) if as_of is not None else datetime.now(timezone.utc)
    ids, selection = _select(con, searches)
    return Progress(store=resolve(store), taken_at=now, selection=selection,
                    searches=[_search(con, sid, now, int(recent), float(window)) for sid in ids])


def _select(con: Connection, searches) -> tuple[list[str], str]:
    if searches is not None:
        names = [searches] if isinstance(searches, str) else list(searches)
        return list(dict.fromkeys(resolve_search(con, s)[0] for s in names)), "named"
    rows = con.sql("SELECT search_id, finished_at IS NULL FROM searches ORDER BY started_at, name").fetchall()
    open_ids = [sid for sid, is_open in rows if is_open]
    if open_ids:
        return open_ids, "open"
    return ([rows[-1][0]], "latest") if rows else ([], "none")


_TRIALS = ("SELECT trial_id, trial_number, state, value, started_at, finished_at, duration_s, last_step "
           "FROM trials WHERE search_id = ? ORDER BY trial_number")


def _search(con: Connection, search_id: str, now: datetime, recent: int, window: float) -> SearchProgress:
    import polars as pl

    (name, strategy, direction, metric, directions, started_at, finished_at), = con.sql(
        "SELECT name, strategy_label, direction, metric, directions, started_at, finished_at "
        "FROM searches WHERE search_id = ?", params=[search_id]).fetchall()
    trials = con.sql(_TRIALS, params=[search_id]).pl().with_columns(   # DuckDB's zone name may be Etc/UTC
        pl.col("started_at", "finished_at").dt.convert_time_zone("UTC"))
    marks = con.sql("SELECT type, ts, payload FROM events WHERE search_id = ? AND type IN "
                    "('search_started', 'search_finished') ORDER BY ts, event_id", params=[search_id]).fetchall()
    (last_event_at,), = con.sql("SELECT max(ts) FROM events WHERE search_id = ?", params=[search_id]).fetchall()
    started_at, finished_at, last_event_at = _utc(started_at), _utc(finished_at), _utc(last_event_at)
    marks = [(kind, _utc(ts), payload) for kind, ts, payload in marks]
    run_start, payloads = _current_run(marks)
    end = finished_at or now
    start = max(end - timedelta(seconds=window), run_start) if run_start is not None else end
    span = (end - start).total_seconds()

    counts = dict.fromkeys(STATES, 0)
    for state, n in trials.group_by("state").len().iter_rows():
        counts[state] = counts.get(state, 0) + n
    in_run = trials if run_start is None else trials.filter(pl.col("started_at") >= run_start)
    ended = in_run.filter(pl.col("state") != "running")
    trials_per_min = _rate(ended.filter((pl.col("finished_at") > start) & (pl.col("finished_at") <= end))
                           .height, span)

    budget, note = _budget(con, search_id, payloads, run_start, (ended.height, trials_per_min), start, end, span)
    eta = None
    if budget is not None and finished_at is None:
        eta = 0.0 if not budget.remaining else (
            budget.remaining / budget.per_min * 60 if budget.per_min else None)
    return SearchProgress(
        name=name, search_id=search_id, strategy=strategy, direction=direction, metric=metric,
        directions=directions, open=finished_at is None, started_at=started_at, finished_at=finished_at,
        last_event_at=last_event_at, counts=counts,
        best=None if directions else _best(con, search_id, trials, direction),
        recent=_lines(trials.tail(recent), now),
        pruned=_lines(trials.filter(pl.col("state") == "pruned").tail(recent), now),
        window_s=span, trials_per_min=trials_per_min, budget=budget, budget_note=note, eta_s=eta)


def _utc(t: datetime | None) -> datetime | None:
    """``t`` in timezone.utc (DuckDB hands out zoneinfo's Etc/UTC, which polars will not compare with)."""
    return None if t is None else t.astimezone(timezone.utc)


def _current_run(marks) -> tuple[datetime | None, list[dict]]:
    """(start, search_started payloads) of the search's current run: its starts
    since the last finish that came before its last start."""
    starts = [(ts, payload) for kind, ts, payload in marks if kind == "search_started"]
    if not starts:
        return None, []
    last = starts[-1][0]
    cut = max((ts for kind, ts, _ in marks if kind == "search_finished" and ts < last), default=None)
    run = [(ts, p) for ts, p in starts if cut is None or ts > cut]
    payloads = [load_json(p, {}) for _, p in run]
    return run[0][0], [p for p in payloads if isinstance(p, dict)]


def _rate(n: int, span: float) -> float | None:
    """``n`` per minute over ``span`` seconds; None when the span is too short to say."""
    return n / span * 60 if span >= 1 else None


def _budget(con, search_id, payloads, run_start, trials_done, start, end, span) -> tuple[Budget | None, str]:
    """The run's budget and how far it got: ``trials_done`` is (ended trials, their rate)."""
    found = list(dict.fromkeys(b for b in map(budget_of, payloads) if b is not None))
    if not found:
        return None, NO_BUDGET
    if len(found) > 1:
        listed = "; ".join(source for _, _, source in found)
        return None, f"no single budget: the processes that opened this run record different ones ({listed})"
    total, unit, source = found[0]
    if unit == "trials":
        done, per_min = trials_done
    else:
        # a fit is done when its fold's test score is in (each metric is a row of its own)
        fits = con.sql("SELECT min(ts) AS ts FROM scores WHERE search_id = ? AND split = 'fold' "
                       "AND ts >= ? GROUP BY trial_id, fold", params=[search_id, run_start]).fetchall()
        done = len(fits)
        per_min = _rate(sum(start < _utc(ts) <= end for ts, in fits), span)
    return Budget(total=total, unit=unit, source=source, done=done, per_min=per_min), source


def budget_of(payload: dict) -> tuple[int, str, str] | None:
    """``(total, unit, source)`` of the budget a ``search_started`` payload
    records, or None if it records none (see the module's docstring)."""
    n = _count(payload.get("n_trials"))
    if n:
        return n, "trials", f"n_trials={n} recorded when the search started"
    cls = str(payload.get("search_class") or "").rsplit(".", 1)[-1]
    if not cls:
        return None
    grid = _grid_size(payload.get("space"))
    n_iter, n_candidates = _count(payload.get("n_iter")), _count(payload.get("n_candidates"))
    if "Grid" in cls:
        candidates, how = grid, f"{grid} grid candidates"
    elif n_iter:
        # ParameterSampler samples a grid of lists without replacement: at most its size
        capped = "Randomized" in cls and grid is not None and grid < n_iter
        candidates, how = (grid, f"{grid} candidates (n_iter={n_iter}, the whole grid)") if capped else (
            n_iter, f"n_iter={n_iter} candidates")
    else:
        candidates, how = n_candidates, f"n_candidates={n_candidates}"
    if not candidates:
        return None
    cv = payload.get("cv")
    folds = _count(cv.get("n_splits")) if isinstance(cv, dict) else None
    if cls.startswith("Halving") or not folds:
        return candidates, "trials", f"{cls}: {how}"
    return candidates * folds, "fits", f"{cls}: {how} x {folds} folds"


def _count(v: Any) -> int | None:
    """``v`` if it is a count (an int > 0), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _grid_size(space: Any) -> int | None:
    """How many candidates sklearn's ParameterGrid makes of ``space`` (a dict of
    lists or a list of them); None if any value is not a list (a distribution)."""
    grids = space if isinstance(space, list) else [space]
    if not grids or not all(isinstance(g, dict) for g in grids):
        return None
    if not all(isinstance(v, list) for g in grids for v in g.values()):
        return None
    return sum(math.prod(len(v) for v in g.values()) for g in grids) or None


def _best(con: Connection, search_id: str, trials: pl.DataFrame, direction: str | None) -> Best | None:
    import polars as pl

    done = trials.filter((pl.col("state") == "complete") & pl.col("value").is_not_null()
                         & pl.col("value").is_not_nan())
    if done.is_empty():
        return None
    row = done.sort(["value", "trial_number"], descending=[direction != "minimize", False]).row(0, named=True)
    params = con.sql("SELECT name, kind, value_num, value_str FROM params WHERE search_id = ? AND trial_id = ? "
                     "ORDER BY name", params=[search_id, row["trial_id"]]).fetchall()
    return Best(value=row["value"], number=row["trial_number"],
                params={n: decode_param(kind, num, text) for n, kind, num, text in params})


def _lines(frame: pl.DataFrame, now: datetime) -> list[TrialLine]:
    out = []
    for r in frame.iter_rows(named=True):
        duration = r["duration_s"]
        if r["state"] == "running" and r["started_at"] is not None:
            duration = max((now - r["started_at"]).total_seconds(), 0.0)
        out.append(TrialLine(number=r["trial_number"], state=r["state"], value=r["value"],
                             duration_s=duration, last_step=r["last_step"]))
    return out
