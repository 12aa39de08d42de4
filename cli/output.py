"""Turning library results (polars frames, dicts) into table, CSV or JSON text.

Tables are for people (rich; colour only on a terminal, rounded numbers);
CSV and JSON are for programs (full precision, ISO-8601 times, nested values
as JSON text in CSV) and parse back to the same values.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from typing import IO, Any

    import polars as pl
    from rich.console import Console
    from rich.table import Table


FORMATS = ("table", "csv", "json")


def console(stream: IO[str] | None = None) -> Console:
    from rich.console import Console

    # highlight=False: rich would otherwise colour numbers and quotes inside cells.
    return Console(file=stream, highlight=False, soft_wrap=False)


# --- JSON ----------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """A value json.dumps accepts, losslessly where JSON allows (NaN/inf become null)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), ensure_ascii=False, allow_nan=False)


def rows_json(rows: list) -> str:
    """A JSON array with one object per line: valid JSON that still greps well."""
    rows = list(rows)
    if not rows:
        return "[]\n"
    return "[" + ",\n ".join(dumps(r) for r in rows) + "]\n"


def frame_json(df: pl.DataFrame) -> str:
    return rows_json(df.to_dicts())


# --- CSV -----------------------------------------------------------------
def frame_csv(df: pl.DataFrame) -> str:
    """CSV with a header row; lists and structs are written as JSON text."""
    import polars as pl

    nested = [name for name, dtype in df.schema.items() if dtype.is_nested()]
    if nested:
        df = df.with_columns(
            pl.Series(name, [None if v is None else dumps(v) for v in df[name].to_list()],
                      dtype=pl.String)
            for name in nested)
    return df.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z", date_format="%Y-%m-%d")


# --- tables --------------------------------------------------------------
def cell(value: Any, *, digits: int = 6, seconds: bool = False) -> str:
    """How one value reads in a table: rounded floats, blank for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    if isinstance(value, dt.datetime):
        if seconds:  # for people: UTC to the second, no zone suffix
            value = value.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, (dict, list, tuple)):
        return dumps(value)
    return str(value)


def table(columns: list[str], rows: Iterable[Sequence[Any]], *, title: str | None = None, numeric: Collection[str] = (),
          no_wrap: Collection[str] = (), min_widths: dict[str, int] | None = None) -> Table:
    """A rich Table; ``numeric`` columns are right-aligned, ``no_wrap`` ones never fold,
    ``min_widths`` maps a column to the width it never shrinks below."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Two spaces between columns, a rule under the header, nothing else: dense
    # enough for 80 columns, and awk/cut-friendly.
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
              show_edge=False, padding=(0, 1), collapse_padding=True)
    for c in columns:
        # Text, not str: a value such as "[red]" must print as itself, not as markup.
        t.add_column(Text(c, style="bold"), justify="right" if c in numeric else "left", overflow="fold",
                     no_wrap=c in no_wrap, min_width=(min_widths or {}).get(c))
    for r in rows:
        t.add_row(*(Text(v) for v in r))
    return t


def frame_table(df: pl.DataFrame, *, title: str | None = None, digits: int = 6) -> Table:
    numeric = {name for name, dtype in df.schema.items() if dtype.is_numeric()}
    rows = ([cell(v, digits=digits) for v in row] for row in df.iter_rows())
    return table(df.columns, rows, title=title, numeric=numeric)


def print_table(t: Table) -> None:
    """Print ``t`` to stdout at the console's width (80 columns when piped)."""
    console().print(t)


def print_frame(df: pl.DataFrame, *, digits: int = 6) -> None:
    """Print a frame as a table. One too wide for the screen is printed at its
    natural width when piped (nothing folded, so it greps and cuts cleanly) and
    as one block per row on a terminal, like psql's expanded display."""
    from rich.measure import Measurement

    t = frame_table(df, digits=digits)
    con = console()
    natural = Measurement.get(con, con.options.update(max_width=100_000), t).maximum
    if natural <= con.width:
        con.print(t)
    elif not con.is_terminal:
        con.width = natural
        con.print(t)
    else:
        import click

        click.echo(expanded(df, digits=digits))


def expanded(df: pl.DataFrame, *, digits: int = 6) -> str:
    """Rows as blocks of ``column  value`` lines."""
    width = max((len(c) for c in df.columns), default=0)
    blocks = []
    for i, row in enumerate(df.iter_rows(), 1):
        lines = [f"-[ row {i} ]" + "-" * max(0, width - 6)]
        lines += [f"{c.ljust(width)}  {cell(v, digits=digits)}" for c, v in zip(df.columns, row)]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def render(renderable: Any) -> str:
    """Text of a rich renderable as the console would print it (for tests and pipes)."""
    buf = io.StringIO()
    console(buf).print(renderable)
    return buf.getvalue()
