"""``hptrack report [SEARCH...]``: what happened, in the terminal and as one HTML file."""

from __future__ import annotations

import click
from click import Context

from hptrack.cli.options import AS_OF_OPT, MAX_TRIALS_OPT, store_root


@click.command("report", short_help="Summarise searches: best, states, importance, diagnostics, comparison.")
@click.argument("searches", nargs=-1)
@click.option("--html", "html", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML report (plots, works offline) to FILE.")
@MAX_TRIALS_OPT
@AS_OF_OPT
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes fitting the searches' importances (default: one per core "
                   "once there are 12 searches to fit; 1: none). The report is the same.")
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Fit every importance again instead of reading back the fits an earlier report "
                   "made of the same trials (kept in $HPTRACK_CACHE_DIR/importance, default "
                   "~/.cache/hptrack). The report is the same.")
@click.pass_context
def report_cmd(ctx: Context, searches: tuple[str, ...], html: str | None, max_trials: int, as_of: str | None,
               jobs: int | None, no_cache: bool) -> None:
    """Report on SEARCHES (names or ids; default: every search in the store),
    grouped by task, metric and direction. The task is the `task=` recorded
    with a search, else the data hptrack.sklearn fitted on, else its `dataset`
    attribute; a search with none stands alone (record task=... to compare
    it). A group names a best strategy only when the tests say so.

    The report states its snapshot (as-of time and a sha256 of the events it
    read); `--as-of` with that time rebuilds the same report.

    \b
    Examples:
      hptrack report
      hptrack report rf-grid rf-tpe --html report.html
      hptrack report --as-of 2026-11-27T10:30:00Z
    """
    from hptrack.analysis.report import report

    report(list(searches) or None, store=store_root(ctx), html=html, as_of=as_of, max_trials=max_trials or None,
           jobs=jobs, cache=not no_cache)
    if html:
        click.echo(f"wrote {html}", err=True)
