"""What can be wrong with a store's files, found cheaply from sizes and Parquet
footers. Shared by ``verify`` (which also reads the data) and ``connect`` (which
leaves out what it cannot read, and says so)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hptrack._files.store import Store
from hptrack.schema import COLUMNS, SCHEMA_VERSION, arrow_schema

ERROR, WARNING = "error", "warning"
REQUIRED_COLUMNS = COLUMNS          # every v1 column; later versions only add columns
# a row without one of these cannot be identified: verify reports it, compact leaves its file alone
IDENTITY_COLUMNS = ("event_id", "writer_id", "seq", "ts", "search_id")
# footer key-value metadata of a file merged by compact: a JSON list of the
# names of the files (in its folder) whose events it holds, which readers leave out
REPLACES_KEY = b"hptrack.replaces"


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

    ``footers``, if given, receives ``path -> Footer`` of a clean segment,
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
    columns = tuple((f.name, str(f.type)) for f in sch)
    wrong = _schema_problem(sch, columns)
    if wrong:
        kind, text = wrong
        return [Problem(path, kind, ERROR, f"{rel}: {text}")]
    footer = Footer.of(meta, columns)
    if footer.version is not None and footer.version > SCHEMA_VERSION:
        return [Problem(path, "newer_schema", ERROR, newer(rel, footer.version))]
    if footers is not None:
        footers[path] = footer
    return []


_SCHEMA_VERDICTS: dict = {}  # Footer.columns -> None or (kind, text): most files share one schema


def _schema_problem(sch, columns):
    """(kind, text) if the file's columns are not the event schema's, else None."""
    if columns not in _SCHEMA_VERDICTS:
        missing = [c for c in REQUIRED_COLUMNS if c not in sch.names]
        expected = arrow_schema()
        wrong = [] if missing else [f"{c} is {sch.field(c).type}, expected {expected.field(c).type}"
                                    for c in REQUIRED_COLUMNS
                                    if _norm_type(sch.field(c).type) != expected.field(c).type]
        _SCHEMA_VERDICTS[columns] = (
            ("missing_columns", f"not an hptrack event file, it lacks the column(s) {', '.join(missing)}; "
                                "move it out of the store") if missing else
            ("wrong_column_types", f"column types do not match the event schema ({'; '.join(wrong)}); "
                                   "move it out of the store") if wrong else None)
    return _SCHEMA_VERDICTS[columns]


@dataclass(frozen=True)
class Footer:
    """What readers need from a clean segment's footer: its columns (files of
    one column list are read in one scan), and ranges by the row groups'
    statistics (None where unknown)."""
    columns: tuple          # ((name, arrow type as text), ...)
    writer_range: tuple | None
    seq_range: tuple | None
    version: int | None     # the largest schema_version
    rows: int = 0           # events in the file
    replaces: tuple = ()    # names of the files this merged file replaces (REPLACES_KEY)

    @classmethod
    def of(cls, meta: Any, columns: tuple) -> Footer:
        index: dict[str, int] = {}
        for i in range(meta.num_columns):
            index.setdefault(meta.schema.column(i).path, i)
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        return cls(columns, _range(groups, index.get("writer_id")), _range(groups, index.get("seq")),
                   _max_of(groups, index.get("schema_version")), meta.num_rows, _replaces(meta))


def _replaces(meta) -> tuple:
    """The plain file names a merged file's footer says it replaces (others are ignored:
    a name with a path in it could hide a file of another folder)."""
    import json

    raw = (meta.metadata or {}).get(REPLACES_KEY)
    if raw is None:
        return ()
    try:
        names = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(names, list):
        return ()
    return tuple(n for n in names if isinstance(n, str) and n.endswith(".parquet")
                 and "/" not in n and "\\" not in n and not n.startswith("."))


def _range(groups, col):
    """(min, max) of one column over the row groups by their statistics; None if
    a non-empty group lacks them (or the column is absent)."""
    if col is None:
        return None
    lo = hi = None
    for rg in groups:
        stats = rg.column(col).statistics
        if stats is None or not stats.has_min_max:
            if rg.num_rows == 0:
                continue
            return None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return None if lo is None else (lo, hi)


def _max_of(groups, col):
    """The largest value of a column by the row groups' statistics (None if unknown)."""
    if col is None:
        return None
    best = None
    for rg in groups:
        stats = rg.column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        best = stats.max if best is None else max(best, stats.max)
    return best


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def newer(rel: str, version: object) -> str:
    return (f"{rel}: written by a newer hptrack (schema v{version}; this hptrack reads up to "
            f"v{SCHEMA_VERSION}): upgrade hptrack to read it; compact leaves it alone")




def load_json(text: str | None, default: Any = None) -> Any:
    """A payload's JSON as Python, never raising: ``default`` for text that is
    not JSON, and lone surrogates (``\\udcff``, valid in JSON text but not in
    UTF-8, so unprintable and unstorable) replaced by U+FFFD."""
    import json

    if not text:
        return default
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return default
    if "\\ud" in text.lower():
        value = json.loads(json.dumps(value, ensure_ascii=False)
                           .encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                           .replace("\ufffd\ufffd\ufffd", "\ufffd"))
    return value
