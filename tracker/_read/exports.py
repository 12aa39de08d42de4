"""Export one search for sharing: ``hptrack export SEARCH --format parquet|csv|json``.

``trials`` (default) is the table of :func:`hptrack.trials` (one row per
trial, one column per param); ``events`` is the search's raw event log, from
which everything else can be rebuilt (params and payload as JSON text in csv).
"""

from __future__ import annotations

import os

from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf

FORMATS = ("parquet", "csv", "json")
WHATS = ("trials", "events")


def export(search: str, format: str = "parquet", path: str | os.PathLike[str] | None = None,
           store: StoreLike = None, as_of: AsOf = None, what: str = "trials") -> bytes | str:
    """Write ``search`` (name or id) as ``format`` to ``path``; with no path,
    return the bytes instead (csv/json text as UTF-8)."""
    import io

    from hptrack._read.read import connect, resolve_search, trials

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if what not in WHATS:
        raise ValueError(f"what must be one of {', '.join(WHATS)}, got {what!r}")
    con = connect(store, as_of)
    sid, _ = resolve_search(con, search)
    if what == "trials":
        df = trials(sid, con=con)
    else:
        cols = "* REPLACE (to_json(params)::VARCHAR AS params)" if format == "csv" else "*"
        df = con.sql(f"SELECT {cols} FROM events WHERE search_id = ? ORDER BY event_id", params=[sid]).pl()
    buf = io.BytesIO()
    if format == "parquet":
        df.write_parquet(buf)
    elif format == "csv":
        buf.write(df.write_csv().encode())
    else:
        buf.write(df.write_json().encode())
    data = buf.getvalue()
    if path is None:
        return data
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
