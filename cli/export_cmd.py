"""``hptrack export SEARCH``: one search as parquet, csv or json, for sharing."""

from __future__ import annotations

import sys

import click
from click import Context

from hptrack.cli.options import AS_OF_OPT, store_root


@click.command("export", short_help="Export a search's trials (or events) as parquet, csv or json.")
@click.argument("search")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "json"]), default="parquet",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: csv/json to stdout, parquet to SEARCH.parquet).")
@click.option("--events", is_flag=True, help="Export the raw event log instead of the trials table.")
@AS_OF_OPT
@click.pass_context
def export_cmd(ctx: Context, search: str, fmt: str, output: str | None, events: bool, as_of: str | None) -> None:
    """Export SEARCH (name or id): one row per trial with its params, or with
    --events every event of the search.

    \b
    Examples:
      hptrack export rf-grid --format csv > rf-grid.csv
      hptrack export rf-grid --format parquet -o rf-grid.parquet --events
    """
    from hptrack._read.exports import export

    what = "events" if events else "trials"
    if output is None and fmt == "parquet":
        output = f"{search}.parquet"
    result = export(search, fmt, output, store=store_root(ctx), as_of=as_of, what=what)
    if output is None:
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    else:
        click.echo(f"wrote {result}", err=True)
