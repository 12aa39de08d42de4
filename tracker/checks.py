"""What can be wrong with a store's files, found cheaply from sizes and Parquet
footers. Shared by ``verify`` (which also reads the data) and ``connect`` (which
leaves out what it cannot read, and says so)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .schema import COLUMNS, SCHEMA_VERSION, arrow_schema
from .store import Store

ERROR, WARNING = "error", "warning"
REQUIRED_COLUMNS = COLUMNS          # every v1 column; later versions only add columns


@dataclass
class Problem:
    path: str        # the file concerned (the store folder for store-wide problems)
    kind: str        # e.g. "temp_file", "unreadable_segment", "seq_gap"
    severity: str    # "error" (data unreadable or lost) or "warning" (normal leftovers)
    message: str     # plain words: which file, what is wrong, what to do

    def to_dict(self) -> dict:
        return asdict(self)


def rel_path(st: Store, path: str) -> str:
    return st.relative(path)


def _norm_type(t):
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    return t


def segment_problems(st: Store, path: str, footers: dict | None = None) -> list[Problem] | None:
    """Problems found in a segment's size and footer; None if it vanished.

    ``footers``, if given, receives ``path -> FileMetaData`` of a clean segment,
    so a caller that also wants its statistics does not read the footer twice."""

    rel = rel_path(st, path)
    try:
        size = st.size(path)
    except FileNotFoundError:
        return None
    if size == 0:
        return [Problem(path, "empty_segment", ERROR,
                        f"{rel}: zero-byte segment (a copy or write that never finished); it holds "
                        "no events and makes every query fail: delete it")]
    try:
        meta = st.read_metadata(path)
        sch = meta.schema.to_arrow_schema()
    except FileNotFoundError:
        return None
    except Exception as exc:
        return [Problem(path, "unreadable_segment", ERROR,
                        f"{rel}: not a readable Parquet file ({short(exc)}); queries fail while it is "
                        "in the store: move it out (restore it from a backup if you have one)")]
    missing = [c for c in REQUIRED_COLUMNS if c not in sch.names]
    if missing:
        return [Problem(path, "missing_columns", ERROR,
                        f"{rel}: not an hptrack event file, it lacks the column(s) {', '.join(missing)}; "
                        "move it out of the store")]
    expected = arrow_schema()
    wrong = [f"{c} is {sch.field(c).type}, expected {expected.field(c).type}"
             for c in REQUIRED_COLUMNS if _norm_type(sch.field(c).type) != expected.field(c).type]
    if wrong:
        return [Problem(path, "wrong_column_types", ERROR,
                        f"{rel}: column types do not match the event schema ({'; '.join(wrong)}); "
                        "move it out of the store")]
    version = _max_statistic(meta, "schema_version")
    if version is not None and version > SCHEMA_VERSION:
        return [Problem(path, "newer_schema", ERROR, newer(rel, version))]
    if footers is not None:
        footers[path] = meta
    return []


def column_range(meta, column: str):
    """(min, max) of a top-level column over all row groups by the footer's
    statistics; None if any row group lacks them (or the column is absent)."""
    idx = [i for i in range(meta.num_columns) if meta.schema.column(i).path == column]
    if not idx:
        return None
    lo = hi = None
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(idx[0]).statistics
        if stats is None or not stats.has_min_max:
            if meta.row_group(g).num_rows == 0:
                continue
            return None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return None if lo is None else (lo, hi)


def _max_statistic(meta, column: str):
    """The largest value of a top-level column by the row groups' statistics (None if unknown)."""
    idx = [i for i in range(meta.num_columns) if meta.schema.column(i).path == column]
    if not idx:
        return None
    best = None
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(idx[0]).statistics
        if stats is None or not stats.has_min_max:
            return None
        best = stats.max if best is None else max(best, stats.max)
    return best


def short(exc) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def newer(rel: str, version) -> str:
    return (f"{rel}: written by a newer hptrack (schema v{version}; this hptrack reads up to "
            f"v{SCHEMA_VERSION}): upgrade hptrack to read it; compact leaves it alone")


