"""``hptrack watch [SEARCH...]``: a live view of running searches (hptrack.analysis.progress).

Each refresh is a fresh read of the store, as any reader does: no lock, no
write, so the searches being watched never wait for it.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import store_root

if TYPE_CHECKING:
    from rich.console import RenderableType

    from hptrack.analysis.search_progress import Progress, SearchProgress

_STATE_STYLE = {"complete": "green", "running": "cyan", "pruned": "yellow", "failed": "red"}


@click.command("watch", short_help="A live view of running searches: trials, best so far, pace, ETA.")
@click.argument("searches", nargs=-1, metavar="[SEARCH]...")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and logs).")
@click.option("--recent", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
              help="How many of the last trials, and of the last pruned trials, to list per search.")
@click.option("--window", type=click.FloatRange(min=1), default=300.0, show_default=True, metavar="SECONDS",
              help="The recent history the throughput (and so the ETA) is measured over.")
@click.pass_context
def watch_cmd(ctx: Context, searches: tuple[str, ...], interval: float, once: bool, recent: int,
              window: float) -> None:
    """Watch searches while they run: trials by state, the best trial so far
    with its params, the last trials, the pruned ones and the step they
    stopped at, trials per minute and, when the search recorded a budget, an
    ETA. SEARCH is a name or id; without one, every search still open (else
    the one started last). Ctrl-C stops watching; the searches go on.

    A budget is read from what the search recorded, never guessed:
    hptrack.search(..., n_trials=N) (or hptrack.optuna.Callback(n_trials=N)),
    or a scikit-learn search's candidates x folds. Without one the frame says
    "no budget recorded" and shows no ETA.

    \b
    Examples:
      hptrack watch
      hptrack watch rf-tpe rf-random --interval 5
      hptrack watch --once > progress.txt
    """
    args = {"searches": list(searches) or None, "recent": recent, "window": window, "strict": ctx.obj["strict"]}
    if once:
        from rich.text import Text

        p = _snapshot(store_root(ctx), **args)
        output.console().print(_frame(p, None) if p.searches else Text(f"No searches in {p.store} yet"))
        return
    _live(ctx.obj["store"], interval, args)


def _snapshot(root: str, **args) -> Progress:
    from hptrack.analysis.search_progress import progress

    return progress(args.pop("searches"), root, **args)


def _live(store: str | None, interval: float, args: dict) -> None:
    import signal
    import threading

    from rich.live import Live

    from hptrack._files.store import Store

    st = Store(store)
    stop = threading.Event()

    def on_sigint(signum, frame):
        # The first Ctrl-C lets the frame being read finish (an interrupted DuckDB
        # query raises one of several errors); a second one interrupts it.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    frames, last = 0, None
    try:
        with Live(console=output.console(), auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            while not stop.is_set():
                last, shown = _refresh(st, last, interval, args)
                live.update(shown, refresh=True)
                frames += 1
                stop.wait(interval)
    except BaseException:
        if not stop.is_set():
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
    click.echo(f"Stopped watching {st.root} after {frames} refresh(es); the searches were left as they are.")


def _refresh(st, last: RenderableType | None, interval: float,
             args: dict) -> tuple[RenderableType | None, RenderableType]:
    """(the frame, what to show): the snapshot or a message while there is
    nothing to show; if the store cannot be read this time, the last frame,
    and what to show adds why, and any warnings of this read."""
    import duckdb

    from hptrack.errors import HptrackError, SearchNotFound

    frame, lines = last, []
    with warnings.catch_warnings(record=True) as caught:   # this read's warnings, shown with it
        warnings.simplefilter("always", RuntimeWarning)
        try:
            if not st.found():
                frame = _waiting(f"No hptrack store at {st.root} yet", interval)
            else:
                p = _snapshot(st.root, **args)
                frame = _frame(p, interval) if p.searches else _waiting(f"No searches in {p.store} yet", interval)
        except SearchNotFound as exc:   # named, and not started yet
            frame = _waiting(str(exc), interval)
        except (HptrackError, duckdb.Error, OSError) as exc:
            # e.g. a file deleted under a compaction's grace period of 0: next time
            lines.append(f"Could not read the store: {' '.join(str(exc).split())} - trying again in {interval:g}s")
    lines += [f"Warning: {str(w.message).removeprefix('hptrack: ')}" for w in caught]
    return frame, _with_lines(frame, lines)


def _waiting(text: str, interval: float) -> RenderableType:
    from rich.text import Text

    return Text(f"{text}: waiting for a search to start (checking every {interval:g}s, Ctrl-C to stop)")


def _with_lines(shown: RenderableType | None, lines: list[str]) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    if not lines:
        return shown if shown is not None else Text("")
    parts = [] if shown is None else [shown]
    return Group(*parts, *(Text(line, style="yellow") for line in lines))


# --- the frame ---------------------------------------------------------------------
def _frame(p: Progress, interval: float | None) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    head = f"hptrack watch: {p.store} at {_clock(p.taken_at)}"
    if p.selection == "open":
        head += f", {len(p.searches)} open search(es)"
    elif p.selection == "latest":
        head += ", no search open: the latest one"
    if interval is not None:
        head += f" (every {interval:g}s, Ctrl-C to stop)"
    parts: list = [Text(head, style="dim")]
    for s in p.searches:
        parts += [Text(""), *_search_block(s, p.taken_at)]
    return Group(*parts)


def _search_block(s: SearchProgress, now: datetime) -> list[RenderableType]:
    from rich.text import Text

    objective = f"{'min' if s.direction == 'minimize' else 'max'} {s.metric or 'value'}"
    state = "open" if s.open else f"finished {_clock(s.finished_at)}"
    title = Text.assemble((s.name, "bold"), f"  {s.strategy or 'custom'}, {objective}, {state}, started "
                                            f"{_clock(s.started_at)}, last event {_ago(s.last_event_at, now)}")
    counts = Text(f"  trials {s.n_trials}: ")
    for i, st in enumerate(("complete", "running", "pruned", "failed")):
        counts.append(("" if i == 0 else ", ") + f"{s.counts[st]} {st}", style=_STATE_STYLE[st])
    lines: list[RenderableType] = [title, counts, Text("  " + _best_line(s)), Text("  " + _pace_line(s, now))]
    if s.pruned:
        listed = ", ".join(f"#{t.number}" + ("" if t.last_step is None else f" at step {t.last_step}")
                           for t in reversed(s.pruned))
        lines.append(Text(f"  pruned ({s.counts['pruned']}, newest first): {listed}"))
    if s.recent:
        rows = [[str(t.number), t.state, output.cell(t.value, digits=5), _span(t.duration_s),
                 "" if t.last_step is None else str(t.last_step)] for t in s.recent]
        lines.append(output.table(["#", "state", "value", "duration", "step"], rows,
                                  numeric={"#", "value", "duration", "step"}))
    return lines


def _best_line(s: SearchProgress) -> str:
    if s.directions:
        return (f"best: none single, {len(s.directions)} objectives "
                f"({', '.join(s.directions)}); `hptrack pareto {s.name}` gives the front")
    if s.best is None:
        return "best: no complete trial yet"
    params = ", ".join(f"{k}={output.cell(v, digits=5)}" for k, v in s.best.params.items())
    return f"best {output.cell(s.best.value, digits=6)} (trial #{s.best.number})" + (f": {params}" if params else "")


def _pace_line(s: SearchProgress, now: datetime) -> str:
    window = _span(s.window_s)
    pace = ("pace: too early to say" if s.trials_per_min is None
            else f"pace {_rate(s.trials_per_min)} trials/min (last {window})")
    b = s.budget
    if b is None:
        return f"{pace}; {s.budget_note}, so no ETA"
    rate = "" if b.unit == "trials" or b.per_min is None else f", {_rate(b.per_min)} {b.unit}/min"
    spent = f"{pace}{rate}; budget {b.done}/{b.total} {b.unit} ({b.source})"
    if not s.open:
        return spent
    if s.eta_s == 0:
        return f"{spent}, budget spent"
    if s.eta_s is None:
        return f"{spent}; ETA unknown (no {b.unit} ended in the last {window})"
    return f"{spent}; ETA {_span(s.eta_s)} (about {_clock(now + timedelta(seconds=s.eta_s))})"


def _rate(per_min: float) -> str:
    return f"{per_min:.0f}" if per_min >= 100 else f"{per_min:.3g}"


def _clock(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(timezone.utc).strftime("%H:%M:%S UTC")


def _ago(t: datetime | None, now: datetime) -> str:
    return "never" if t is None else f"{_span(max((now - t).total_seconds(), 0.0))} ago"


def _span(seconds: float | None) -> str:
    """A duration for people: 0.42s, 12.3s, 4m05s, 2h07m."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "<0.01s" if seconds < 0.01 else f"{seconds:.2f}s" if seconds < 1 else (
            f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s")
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
