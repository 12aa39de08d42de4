"""Read-only SQL over a store: the library form of ``hptrack query``.

``query(sql)`` runs exactly one SELECT statement against the views ``events,
searches, trials, params, reports, scores`` and returns a polars DataFrame.
Three fences keep it from touching anything but the store, read-only:

1. The SQL is parsed first (``extract_statements``): one statement only, and
   it must be a SELECT (``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, ``VALUES`` and
   ``FROM x`` are SELECTs too). COPY, INSERT, ATTACH, INSTALL, SET, PRAGMA,
   ... are refused before anything runs, so nothing can be written, not even
   inside the store (DuckDB's allowed_directories grants write as well as
   read, so the parse check is what stops ``COPY ... TO '<store>/x'``).
2. The connection may open files only under the store's folder
   (``allowed_directories``), external access is off, extension autoload is
   off and the configuration is locked, so a SELECT cannot ``read_csv`` a file
   elsewhere or re-open the door with SET.
3. DuckDB's temporary-file spilling is switched off (``temp_directory = ''``).
   By default an in-memory DuckDB spills to ``./.tmp`` under the current
   working directory, and DuckDB silently adds that folder to
   ``allowed_directories`` - which would let a query both write there and
   read anything a user keeps in ``./.tmp``. Without spilling, a query too big
   for memory fails with an out-of-memory error instead; for such work open
   ``hptrack.connect()`` in Python.
"""

from __future__ import annotations

import os
import re

from .errors import HptrackError, QueryRefused
from .read import VIEWS, connect
from .store import Store


class InvalidQuery(HptrackError, ValueError):
    """The SQL does not parse or does not run (unknown column, bad type, ...)."""


# Words that open a statement and name it better than DuckDB's StatementType
# does (INSTALL parses as LOAD, RESET/USE as SET, IMPORT DATABASE as PRAGMA).
_VERBS = {
    "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "COPY", "ATTACH", "DETACH",
    "INSTALL", "LOAD", "SET", "RESET", "PRAGMA", "CALL", "EXPORT", "IMPORT", "USE",
    "CHECKPOINT", "VACUUM", "ANALYZE", "BEGIN", "START", "COMMIT", "ROLLBACK", "ABORT", "END",
    "PREPARE", "EXECUTE", "DEALLOCATE", "EXPLAIN", "PIVOT", "UNPIVOT", "MERGE", "TRUNCATE",
    "COMMENT", "UPDATE_EXTENSIONS",
}
_TWO_WORDS = {"FORCE": "FORCE INSTALL", "IMPORT": "IMPORT DATABASE", "EXPORT": "EXPORT DATABASE"}
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/|\()*", re.S)

_WHY = {
    "COPY": "to export results use `hptrack query --format csv|json` (or hptrack.query() in Python)",
    "EXPORT": "to export results use `hptrack query --format csv|json` (or hptrack.query() in Python)",
    "ATTACH": f"queries see only this store's views: {', '.join(VIEWS)}",
    "DETACH": f"queries see only this store's views: {', '.join(VIEWS)}",
    "USE": f"queries see only this store's views: {', '.join(VIEWS)}",
    "INSTALL": "extensions cannot be installed or loaded here",
    "LOAD": "extensions cannot be installed or loaded here",
    "FORCE INSTALL": "extensions cannot be installed or loaded here",
    "PIVOT": "write it as SELECT ... FROM t PIVOT (agg FOR column IN (values))",
    "EXPLAIN": "EXPLAIN ANALYZE would run the statement; use hptrack.connect() in Python to see plans",
}
_CHANGES = {"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "MERGE"}
_SETTINGS = {"SET", "RESET", "PRAGMA", "CALL"}


def statement_label(statement) -> str:
    """A readable name for a parsed statement: its opening keyword when that
    says what it does (``INSTALL``, ``RESET``), else DuckDB's statement type."""
    text = _LEADING_NOISE.sub("", statement.query)
    first = re.match(r"[A-Za-z_]+", text)
    word = first.group(0).upper() if first else ""
    if word in _TWO_WORDS:
        return _TWO_WORDS[word]
    if word in _VERBS:
        return word
    return statement.type.name.replace("_", " ")


def _refusal(label: str) -> str:
    if label in _WHY:
        why = _WHY[label]
    elif label in _CHANGES:
        why = ("the store is an append-only event log; record changes with the hptrack API "
               "(a correction is a new event)")
    elif label in _SETTINGS:
        why = "the connection's configuration is locked"
    else:
        why = "only SELECT (and DESCRIBE/SHOW/SUMMARIZE) can run here"
    return f"hptrack query runs read-only SELECT statements; {label} is not allowed - {why}"


def one_line(message: str) -> str:
    """DuckDB's multi-line error (message, LINE n, caret) as a single line."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    head = lines[0] if lines else str(message)
    # "Parser Error: syntax error at or near "+"" -> keep DuckDB's wording, drop the caret art.
    rest = [ln for ln in lines[1:] if not set(ln) <= {"^", " "} and not ln.startswith("LINE ")]
    return " ".join([head, *rest])


def check_sql(sql: str, con=None):
    """The single SELECT statement in ``sql``, or :class:`QueryRefused`.

    Parses without running anything. A syntax error is :class:`InvalidQuery`
    with DuckDB's explanation on one line.
    """
    import duckdb

    if not isinstance(sql, str):
        raise TypeError(f"sql must be a string, got {type(sql).__name__}")
    # A private parser connection: the module-level default one is shared with
    # the caller's own DuckDB use (settings, loaded extensions).
    parser = con if con is not None else duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as e:
        raise InvalidQuery(f"invalid SQL: {one_line(e)}") from None
    if not statements:
        raise InvalidQuery("no SQL statement given; try: SELECT name, n_trials FROM searches")
    if len(statements) > 1:
        labels = ", ".join(statement_label(s) for s in statements)
        raise QueryRefused(f"hptrack query runs one statement at a time; got {len(statements)} "
                           f"statements ({labels}) - remove the extra ';'-separated statements")
    (statement,) = statements
    if statement.type != duckdb.StatementType.SELECT:
        raise QueryRefused(_refusal(statement_label(statement)))
    return statement


def read_only_connection(store=None, as_of=None, *, strict=False):
    """A connection over ``store`` that can open only the store's files and spills nothing.

    It still accepts COPY into the store (DuckDB's allowed_directories grants
    writing too): run only statements that passed :func:`check_sql`.
    """
    st = Store(store)
    con = connect(st, as_of, strict=strict)
    # Spilling off first: DuckDB adds the temp directory to allowed_directories.
    con.sql("SET temp_directory = ''")
    con.sql("SET allowed_directories = ?", params=[[st.root + os.sep]])
    con.sql("SET enable_external_access = false")
    con.sql("SET autoinstall_known_extensions = false")
    con.sql("SET autoload_known_extensions = false")
    con.sql("SET lock_configuration = true")
    # Refuse to run at all if DuckDB widened the fence on its own.
    (allowed,), = con.sql("SELECT current_setting('allowed_directories')").fetchall()
    allowed = list(allowed) if not isinstance(allowed, str) else [allowed]
    # DuckDB stores the folder with symlinks resolved.
    if allowed not in ([st.root + os.sep], [os.path.realpath(st.root) + os.sep]):
        raise QueryRefused(f"cannot confine the query to the store {st.root}: DuckDB allows {allowed}")
    return con


_ACCESS = re.compile(r'Cannot access (file|directory) "([^"]*)"')


def _permission_message(e, root: str) -> str:
    found = _ACCESS.search(str(e))
    if found:
        kind, path = found.groups()
        return (f"query refused: it tried to access the {kind} {path}, outside the store {root}; "
                f"hptrack query reads only the views ({', '.join(VIEWS)}) and files under the "
                "store folder, named by absolute path")
    return f"query refused: {one_line(e)}"


def query(sql: str, store=None, as_of=None, params=None, *, strict=False):
    """Run one read-only SELECT over ``store`` and return a polars DataFrame.

    ``as_of`` (datetime or ISO-8601 string) folds only the events up to then.
    ``params`` fills ``?`` placeholders. Writes, statements other than SELECT,
    several statements and reads of files outside the store raise
    :class:`hptrack.QueryRefused`; SQL that does not parse or run raises
    :class:`InvalidQuery`.

    >>> hptrack.query("SELECT name, n_trials FROM searches ORDER BY started_at")
    """
    import duckdb

    check_sql(sql)
    st = Store(store)
    con = read_only_connection(st, as_of, strict=strict)
    try:
        return con.sql(sql, params=params).pl()
    except duckdb.PermissionException as e:
        raise QueryRefused(_permission_message(e, st.root)) from None
    except duckdb.OutOfMemoryException as e:
        raise InvalidQuery(f"query ran out of memory ({one_line(e)}); hptrack query does not spill "
                           "to disk, so add filters or LIMIT, or use hptrack.connect() in Python") from None
    except duckdb.CatalogException as e:
        raise InvalidQuery(f"query failed: {one_line(e)} (the views are {', '.join(VIEWS)})") from None
    except duckdb.Error as e:
        raise InvalidQuery(f"query failed: {one_line(e)}") from None
    finally:
        con.close()
