"""What happened in a store, and what to do next: ``hptrack report``.

``build(searches, store, as_of)`` reads one consistent snapshot of the store
(every view folded as of one instant) and runs the analyses per search:
best configuration, trials by state, wall time, importance, overfitting
diagnostics, and a strategy comparison for searches that share a task (the
``task`` column of the searches view: a ``task=`` attribute, else the data
hptrack.sklearn fitted on, else the ``dataset`` attribute), metric and
direction. A search with no task, and a nested-CV outer run, stand alone. ``terminal.render_terminal`` prints
it with rich; ``html.write`` turns it into one offline HTML file.

The snapshot is stated in every report: the as-of time and a sha256 over the
sorted event ids it read, so ``hptrack report --as-of <time>`` rebuilds it.

>>> r = hptrack.report()                       # prints, returns the Report
>>> hptrack.report(["grid", "tpe"], html="report.html")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf
from hptrack.analysis.report.builder import build
from hptrack.analysis.report.model import Group, Report, SearchReport
from hptrack.analysis.report.terminal import render_terminal
from hptrack.analysis.sensitivity import MAX_TRIALS

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from rich.console import Console

__all__ = ["Group", "Report", "SearchReport", "build", "render_terminal", "report"]


# --- library entry point --------------------------------------------------------------
def report(searches: Sequence[str] | None = None, store: StoreLike = None, html: str | None = None,
           as_of: AsOf = None, *, console: Console | None = None, progress: Any = None,
           quiet: bool = False, max_trials: int | None = MAX_TRIALS, jobs: int | None = None,
           cache: bool = True) -> Report:
    """Build the report of ``searches`` (names or ids; default every search in the
    store), print it to the terminal unless ``quiet``, and write it as one
    self-contained HTML file when ``html`` is a path. Returns the Report. ``jobs``:
    worker processes for the importance fits; ``cache``: read back the fits an earlier
    report made of the same trials (see build)."""
    if isinstance(searches, str):
        searches = [searches]
    rep = build(searches, store, as_of, progress=progress, max_trials=max_trials, jobs=jobs, cache=cache)
    if not quiet:
        render_terminal(rep, console)
    if html is not None:
        from hptrack.analysis.report.html import write
        write(rep, html)
    return rep
