"""What every ``hptrack`` command shares: its options, the store it reads and how it prints a table.

The commands live in ``main.py`` and ``*_cmd.py``; each imports from here, never
from another command's module, so every module of the CLI imports on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from click import Context

from hptrack.cli import output

if TYPE_CHECKING:
    import polars as pl

FORMAT = click.Choice(output.FORMATS, case_sensitive=False)

FORMAT_OPT = click.option("--format", "fmt", type=FORMAT, default="table", show_default=True,
                          help="table for people; csv or json for programs.")
MAX_TRIALS_OPT = click.option(
    "--max-trials", type=click.IntRange(min=0), default=20_000, show_default=True, metavar="N",
    help="Fit the sensitivity model on a seeded random sample of N usable trials when a search "
         "has more (0: all of them; slow past ~20,000).")
AS_OF_OPT = click.option("--as-of", metavar="TIME", default=None,
                         help="Fold only the events up to TIME (ISO 8601, UTC if no zone), "
                              "e.g. 2026-11-27T10:30:00Z.")

OBJECTIVE_OPT = click.option(
    "--objective", type=click.IntRange(min=0), default=None, metavar="K",
    help="Which objective of a multi-objective search to analyse (0, 1, ... as `hptrack show` "
         "lists them); such a search must name one.")


def store_root(ctx: Context) -> str:
    """The store folder, which must exist: reading a missing one is almost always a typo."""
    from hptrack._files.store import Store
    from hptrack.errors import StoreError

    st = Store(ctx.obj["store"])
    if not st.found():
        raise StoreError(f"no hptrack store at {st.root} - pass --store PATH or URL, or set HPTRACK_STORE "
                         "(a store is created by the first hptrack.search(...))")
    return st.root


def emit(df: pl.DataFrame, fmt: str) -> None:
    """A polars frame as a table for people, or as csv / json for programs."""
    if fmt == "csv":
        click.echo(output.frame_csv(df), nl=False)
    elif fmt == "json":
        click.echo(output.frame_json(df), nl=False)
    else:
        output.print_frame(df)
