"""Read-only SQL over a store: the library form of ``hptrack query``.

``query(sql)`` runs exactly one SELECT statement against the views ``events,
searches, trials, params, reports, scores`` and returns a polars DataFrame.
Two independent fences keep it read-only, and two limits keep it bounded:

1. **The parse tree** (:func:`check_sql`). One statement only; DuckDB's own
   parser turns it into a tree (``json_serialize_sql``, which serializes only
   SELECTs: anything else is refused), and every node at every depth - CTEs,
   subqueries, set-operation arms, lateral joins, DESCRIBE targets - must be a
   read: query nodes SELECT / set operation / recursive CTE only (a COPY,
   INSERT, UPDATE or DELETE inside a WITH clause is refused wherever it hides),
   table functions from an allow-list (:data:`TABLE_FUNCTIONS`: generators,
   file readers and metadata; not ``query()``, ``glob()``, ``checkpoint()``,
   ...), and no scalar function that acts outside its result
   (:data:`DENIED_FUNCTIONS`: ``getenv``, ``write_log``, sequences). Stops:
   every write the SQL can express, SQL run from a string, listing folders.
2. **The connection** (:func:`read_only_connection`). External access is off,
   extensions cannot be installed or loaded, spilling is off, and the
   configuration is locked, so no SET can undo any of it. Then, locally,
   DuckDB may open only the files that were in the store when the query
   started (``allowed_paths``, not ``allowed_directories``, which would also
   let it create files there: a forged segment). Stops: reads outside the
   store, creating or replacing any file, anywhere (COPY writes a temporary
   file and renames it). Does not stop: a COPY with ``USE_TMP_FILE false``
   overwriting one of those files in place - fence 1 refuses every COPY.
   On an object store the store's fsspec filesystem is replaced by
   :func:`read_only_filesystem`, which refuses every write and every path
   outside the store's prefix, so nothing in the bucket can change even if
   fence 1 missed something.
3. **Time and Ctrl-C**: the query runs in a worker thread while the main
   thread waits in short steps; at ``timeout`` seconds (the CLI's default is
   60) it calls ``con.interrupt()``. While a query is prepared and run,
   SIGINT only sets a flag and interrupts DuckDB (a KeyboardInterrupt raised
   inside a DuckDB call would come out as some other error); the query then
   raises KeyboardInterrupt, and the CLI exits 130.
4. **Memory**: DuckDB's ``memory_limit`` (default :data:`MEMORY_FRACTION` of
   the machine), set before the configuration is locked. Without spilling a
   query past it fails with an out-of-memory error instead of eating RAM.

Spilling is off because DuckDB adds its temp folder (``./.tmp`` by default)
to the allowed folders, for reading and writing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hptrack._files.store import Store, StoreLike
from hptrack._read.read import connect
from hptrack._read.views import VIEWS, AsOf, Connection
from hptrack.errors import HptrackError, QueryRefused

if TYPE_CHECKING:
    import polars as pl


class InvalidQuery(HptrackError, ValueError):
    """The SQL does not parse or does not run (unknown column, bad type, ...)."""


class QueryStopped(HptrackError, RuntimeError):
    """The query ran past its time or memory limit and was stopped."""


MEMORY_FRACTION = 0.25  # of the machine's RAM, the default memory_limit
_VIEW_LIST = ", ".join(VIEWS)

# --- fence 1: what a statement may contain -------------------------------------------
# Query nodes that only read. Everything else is a write DuckDB lets a WITH
# clause hold (COPY_QUERY_NODE, INSERT_/UPDATE_/DELETE_QUERY_NODE, ...).
_READ_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_WRITE_NODES = {"COPY_QUERY_NODE": "COPY", "INSERT_QUERY_NODE": "INSERT", "UPDATE_QUERY_NODE": "UPDATE",
                "DELETE_QUERY_NODE": "DELETE", "MERGE_QUERY_NODE": "MERGE", "MERGE_INTO_QUERY_NODE": "MERGE"}
# Table references in a FROM clause. A BASE_TABLE may name a file (a
# replacement scan); fence 2 confines that to the store's files.
_TABLE_REFS = {"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY", "PIVOT",
               "SHOW_REF"}
# An allow-list: table functions are where DuckDB puts side effects (checkpoint,
# enable_logging, register_external_resource, add_grammar_extension), SQL from
# a string (query, query_table, json_execute_serialized_sql) and raw pointers
# (arrow_scan), and each release adds some. The readers may open only the
# store's own files (fence 2).
TABLE_FUNCTIONS = frozenset({
    # generators and pure functions
    "range", "generate_series", "unnest", "repeat", "json_each", "json_tree",
    # file readers (fenced to the store's files)
    "read_parquet", "parquet_scan", "read_csv", "read_csv_auto", "read_json", "read_json_auto",
    "read_ndjson", "read_ndjson_auto", "read_json_objects", "read_json_objects_auto", "read_text", "read_blob",
    "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
    # the catalog: what views, columns, functions and settings there are
    "duckdb_columns", "duckdb_views", "duckdb_tables", "duckdb_schemas", "duckdb_databases",
    "duckdb_functions", "duckdb_types", "duckdb_keywords", "duckdb_settings", "duckdb_constraints",
    "duckdb_dependencies", "duckdb_variables", "pragma_table_info", "pragma_version", "pragma_platform",
    "pg_timezone_names", "icu_calendar_names",
})
_TABLE_FUNCTION_WHY = {
    "query": "it runs SQL from a string, which cannot be checked; write the SQL itself",
    "query_table": "it reads a table named by a string, which cannot be checked; name the view itself",
    "json_execute_serialized_sql": "it runs SQL from a string, which cannot be checked; write the SQL itself",
    "glob": "it lists folders; name the store's files exactly, or use the views",
}
# A deny-list: scalar functions compute a value from their arguments; these
# few reach outside the result (the environment holds credentials such as
# AWS_SECRET_ACCESS_KEY; the others change DuckDB state). Aggregates and
# window functions are all reads.
DENIED_FUNCTIONS = {
    "getenv": "it reads the process environment, where credentials live",
    "write_log": "it writes to DuckDB's log",
    "nextval": "it advances a sequence", "setval": "it changes a sequence", "currval": "it reads sequence state",
}

# Words that open a statement and name it better than DuckDB's StatementType
# does (INSTALL parses as LOAD, RESET/USE as SET, IMPORT DATABASE as PRAGMA,
# and UPDATE EXTENSIONS has a type the Python enum does not know).
_VERBS = {
    "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "COPY", "ATTACH", "DETACH",
    "INSTALL", "LOAD", "SET", "RESET", "PRAGMA", "CALL", "EXPORT", "IMPORT", "USE",
    "CHECKPOINT", "VACUUM", "ANALYZE", "BEGIN", "START", "COMMIT", "ROLLBACK", "ABORT", "END",
    "PREPARE", "EXECUTE", "DEALLOCATE", "EXPLAIN", "PIVOT", "UNPIVOT", "MERGE", "TRUNCATE",
    "COMMENT",
}
_TWO_WORDS = {("FORCE", "INSTALL"): "FORCE INSTALL", ("IMPORT", "DATABASE"): "IMPORT DATABASE",
              ("EXPORT", "DATABASE"): "EXPORT DATABASE", ("UPDATE", "EXTENSIONS"): "UPDATE EXTENSIONS"}
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/|\()*", re.S)

_EXPORT = "to export results use `hptrack query --format csv|json` (or hptrack.query() in Python)"
_EXTENSIONS = "extensions cannot be installed, loaded or updated here"
_WHY = {
    "COPY": _EXPORT, "EXPORT": _EXPORT, "EXPORT DATABASE": _EXPORT,
    "ATTACH": f"queries see only this store's views: {_VIEW_LIST}",
    "DETACH": f"queries see only this store's views: {_VIEW_LIST}",
    "USE": f"queries see only this store's views: {_VIEW_LIST}",
    "INSTALL": _EXTENSIONS, "LOAD": _EXTENSIONS, "FORCE INSTALL": _EXTENSIONS, "UPDATE EXTENSIONS": _EXTENSIONS,
    "PIVOT": "write it as SELECT ... FROM t PIVOT (agg FOR column IN (values))",
    "EXPLAIN": "EXPLAIN ANALYZE would run the statement; use hptrack.connect() in Python to see plans",
}
_CHANGES = {"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "MERGE"}
_SETTINGS = {"SET", "RESET", "PRAGMA", "CALL", "CHECKPOINT", "VACUUM", "ANALYZE"}


def statement_label(statement: Any) -> str:
    """A readable name for a parsed statement: its opening keyword(s) when they
    say what it does (``INSTALL``, ``RESET``), else DuckDB's statement type."""
    words = [w.upper() for w in re.findall(r"[A-Za-z_]+", _LEADING_NOISE.sub("", statement.query))[:2]]
    if tuple(words) in _TWO_WORDS:
        return _TWO_WORDS[tuple(words)]
    if words and words[0] in _VERBS:
        return words[0]
    try:
        return statement.type.name.replace("_", " ")
    except ValueError:  # a statement type newer than the Python enum
        return words[0] if words else "this statement"


def _refusal(label: str, where: str = "") -> str:
    if label == "MULTI":
        return ("hptrack query runs read-only SELECT statements; this statement cannot be checked: DuckDB "
                "runs it as several statements (a PIVOT without an IN list creates a type first) - "
                f"{_WHY['PIVOT']}")
    if label in _WHY:
        why = _WHY[label]
    elif label in _CHANGES:
        why = ("the store is an append-only event log; record changes with the hptrack API "
               "(a correction is a new event)")
    elif label in _SETTINGS:
        why = "the connection's configuration is locked"
    else:
        why = "only SELECT (and DESCRIBE/SHOW/SUMMARIZE) can run here"
    return f"hptrack query runs read-only SELECT statements; {label} is not allowed{where} - {why}"


def one_line(message: object) -> str:
    """DuckDB's multi-line error (message, LINE n, caret) as a single line."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    head = lines[0] if lines else str(message)
    # "Parser Error: syntax error at or near "+"" -> keep DuckDB's wording, drop the caret art.
    rest = [ln for ln in lines[1:] if not set(ln) <= {"^", " "} and not ln.startswith("LINE ")]
    return " ".join([head, *rest])


def _check_tree(node) -> None:
    """Refuse anything in DuckDB's serialized parse tree that is not a read."""
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
            continue
        if not isinstance(x, dict):
            continue
        kind = x.get("type") if isinstance(x.get("type"), str) else None
        if "info_type" in x:  # a statement's own payload (COPY_INFO, ...) inside the tree
            raise QueryRefused(_refusal(x["info_type"].removesuffix("_INFO"), " (inside the SELECT)"))
        if "class" in x:  # an expression
            name = x.get("function_name")
            if isinstance(name, str) and name.lower() in DENIED_FUNCTIONS:
                raise QueryRefused(f"hptrack query runs read-only SELECT statements; {name.lower()}() is "
                                   f"not allowed - {DENIED_FUNCTIONS[name.lower()]}")
        elif kind is not None and kind.endswith("_NODE"):
            if kind not in _READ_NODES:
                verb = _WRITE_NODES.get(kind, kind.removesuffix("_QUERY_NODE").removesuffix("_NODE"))
                raise QueryRefused(_refusal(verb, ", not even inside a WITH clause or subquery"))
        elif kind == "TABLE_FUNCTION":  # by its type alone, whatever other keys it has
            _check_table_function(x.get("function") or {})
        elif kind is not None and "alias" in x and "sample" in x and kind not in _TABLE_REFS:  # a table reference
            raise QueryRefused(f"hptrack query runs read-only SELECT statements; a {kind} table "
                               "reference is not allowed - read the views or the store's files")
        stack.extend(x.values())


def _check_table_function(call: dict) -> None:
    name = str(call.get("function_name", "")).lower()
    if name in TABLE_FUNCTIONS:
        return
    why = _TABLE_FUNCTION_WHY.get(name) or (
        "hptrack query reads the views and the store's files; the table functions it allows are "
        + ", ".join(sorted(TABLE_FUNCTIONS)))
    raise QueryRefused(f"hptrack query runs read-only SELECT statements; the table function {name}() "
                       f"is not allowed - {why}")


def check_sql(sql: str, con: Connection | None = None) -> Any:
    """The single SELECT statement in ``sql``, or :class:`QueryRefused` naming why not.

    Parses without running anything (see fence 1 in the module doc). A syntax
    error is :class:`InvalidQuery` with DuckDB's explanation on one line.
    ``con`` is the connection whose parser to use (default: a private one).
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
    try:
        is_select = statement.type == duckdb.StatementType.SELECT
    except ValueError:  # "29 is not a valid StatementType": a type the Python enum does not know
        is_select = False
    if not is_select:
        raise QueryRefused(_refusal(statement_label(statement)))
    # The whole text, exactly as query() will run it.
    (tree,), = parser.sql("SELECT json_serialize_sql(?)", params=[sql]).fetchall()
    tree = json.loads(tree)
    if tree.get("error") or len(tree.get("statements") or ()) != 1:
        raise QueryRefused(
            "hptrack query runs read-only SELECT statements; this statement cannot be checked "
            f"(DuckDB: {tree.get('error_message') or 'not one SELECT'}) - write it as a plain SELECT, "
            "e.g. SELECT ... FROM t PIVOT (agg FOR column IN (values))")
    _check_tree(tree["statements"][0])
    return statement


# --- fence 2: the connection ------------------------------------------------------------
def _refuse_write(*_a, **_k):
    raise PermissionError("hptrack query is read-only: this filesystem refuses every write")


def read_only_filesystem(fs: Any, root_key: str) -> Any:
    """An fsspec filesystem that reads ``fs`` under ``root_key`` only and writes nothing.

    Used in place of an object store's filesystem on a query connection: a
    write (open for writing, rm, mv, mkdir, put, ...) is a PermissionError, and
    so is any path outside the store's prefix.
    """
    from fsspec import AbstractFileSystem

    prefix = root_key.rstrip("/") + "/"

    class ReadOnlyFileSystem(AbstractFileSystem):
        protocol = fs.protocol
        cachable = False

        def _inside(self, path):
            key = fs._strip_protocol(path)
            key = os.path.normpath(key) if ".." in key.split("/") else key
            if key != root_key and not key.startswith(prefix):
                raise PermissionError(f'Cannot access file "{path}" outside the store')
            return path

        def _open(self, path, mode: str = "rb", **kw):
            if set(mode) - {"r", "b"}:
                _refuse_write()
            return fs._open(self._inside(path), mode, **kw)

        def info(self, path, **kw):
            return fs.info(self._inside(path), **kw)

        def ls(self, path, detail: bool = True, **kw):
            return fs.ls(self._inside(path), detail=detail, **kw)

        def glob(self, path, **kw):
            return fs.glob(self._inside(path), **kw)

        def find(self, path, *a, **kw):
            return fs.find(self._inside(path), *a, **kw)

        def modified(self, path):
            return fs.modified(self._inside(path))

        def cat_file(self, path, start=None, end=None, **kw):
            return fs.cat_file(self._inside(path), start=start, end=end, **kw)

        mkdir = makedirs = rmdir = rm = rm_file = _rm = mv = move = rename = cp_file = copy = _refuse_write
        put = put_file = pipe = pipe_file = touch = write_text = write_bytes = _refuse_write

    return ReadOnlyFileSystem()


def _store_files(root: str) -> list[str]:
    """The regular files under a local store, not following links out of it."""
    real = os.path.realpath(root)
    found = []
    for dirpath, _dirnames, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                if stat.S_ISREG(os.lstat(p).st_mode) or (
                        os.path.commonpath([os.path.realpath(p), real]) == real
                        and stat.S_ISREG(os.stat(p).st_mode)):
                    found.append(p)
            except (OSError, ValueError):
                continue  # gone since listed, or a broken link
    return found


def default_memory_limit() -> int:
    """:data:`MEMORY_FRACTION` of this machine's RAM, in bytes."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(int(total * MEMORY_FRACTION), 64 << 20)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.I)


def _memory_setting(memory_limit) -> str:
    if memory_limit is None:
        return f"{default_memory_limit()}B"
    if isinstance(memory_limit, (int, float)) and not isinstance(memory_limit, bool) and memory_limit > 0:
        return f"{int(memory_limit)}B"
    size = _SIZE.match(memory_limit) if isinstance(memory_limit, str) else None
    if size and float(size[1]) > 0:
        return memory_limit.strip()
    raise ValueError(f"cannot read memory limit {memory_limit!r}; use a size such as 500MB, 4GB or 2GiB")


def read_only_connection(store: StoreLike = None, as_of: AsOf = None, *, strict: bool = False,
                         memory_limit: int | float | str | None = None) -> Connection:
    """A connection over ``store`` that can read only the store's files and write none.

    See fence 2 in the module doc. ``memory_limit`` (bytes, or a size such as
    ``"4GB"``) defaults to :data:`MEMORY_FRACTION` of the machine.
    """
    setting = _memory_setting(memory_limit)
    st = Store(store)
    con = connect(st, as_of, strict=strict)
    try:
        _fence(con, st, setting)
    except BaseException:
        con.close()
        raise
    return con


def _fence(con, st: Store, memory_limit: str) -> None:
    # Spilling off first: DuckDB adds the temp directory to allowed_directories.
    con.sql("SET temp_directory = ''")
    con.sql("SET memory_limit = ?", params=[memory_limit])
    if st.remote:
        for name in st.fs.protocol if isinstance(st.fs.protocol, (tuple, list)) else [st.fs.protocol]:
            if con.filesystem_is_registered(name):
                con.unregister_filesystem(name)
        con.register_filesystem(read_only_filesystem(st.fs, st._root_key))
        expected = [st.root + "/"]
        con.sql("SET allowed_directories = ?", params=[expected])
    else:
        expected = []
        con.sql("SET allowed_paths = ?", params=[_store_files(st.root)])
    con.sql("SET enable_external_access = false")
    con.sql("SET autoinstall_known_extensions = false")
    con.sql("SET autoload_known_extensions = false")
    con.sql("SET lock_configuration = true")
    # Refuse to run at all if DuckDB widened the fence on its own.
    (allowed,), = con.sql("SELECT current_setting('allowed_directories')").fetchall()
    allowed = list(allowed) if not isinstance(allowed, str) else [allowed]
    if allowed != expected:
        raise QueryRefused(f"cannot confine the query to the store {st.root}: DuckDB allows {allowed}")


_ACCESS = re.compile(r'Cannot access (file|directory) "([^"]*)"')


def _permission_message(e, root: str) -> str:
    found = _ACCESS.search(str(e))
    if not found:
        return f"query refused: {one_line(e)}"
    kind, path = found.groups()
    real_root = os.path.realpath(root)
    if "://" not in path and os.path.realpath(path).startswith(real_root + os.sep):
        return (f"query refused: {path} is not one of the store's files; hptrack query may open only "
                "the files the store held when the query began, each named exactly (no wildcards, "
                f"no folders) - or use the views ({_VIEW_LIST})")
    return (f"query refused: it tried to access the {kind} {path}, outside the store {root}; "
            f"hptrack query reads only the views ({_VIEW_LIST}) and the store's own files, "
            "named exactly (no wildcards)")


# --- limits 3 and 4: time, Ctrl-C, memory ---------------------------------------------
class _CtrlC:
    """While a query is prepared and run, Ctrl-C only sets a flag and interrupts
    DuckDB; the query then raises KeyboardInterrupt at one known place. (A
    KeyboardInterrupt raised inside a DuckDB call turns into whatever error that
    call was making: "Query interrupted", a failed registration, ...)"""

    def __init__(self) -> None:
        self.pressed = False
        self.con = None
        self._previous: Callable[..., Any] | None = None

    def _handler(self, signum, frame) -> None:
        self.pressed = True
        if self.con is not None:
            self.con.interrupt()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # leave an ignored SIGINT ignored
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def check(self):
        if self.pressed:
            raise KeyboardInterrupt


def _run(con, sql, params, timeout, ctrl_c: _CtrlC):
    """``con.sql(sql).pl()`` in a worker thread, so that the calling thread can
    stop it: at ``timeout`` seconds, or on Ctrl-C."""
    out: dict = {}
    # An Event, not Thread.join: a KeyboardInterrupt inside join() can leave
    # the thread marked as finished while it still runs (CPython 3.11).
    done = threading.Event()

    def work() -> None:
        try:
            out["df"] = con.sql(sql, params=params).pl()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e
        finally:
            done.set()

    def stop() -> None:
        # interrupt() stops only a query that is already running in DuckDB:
        # repeat it until the worker, perhaps still binding, has seen it.
        for _ in range(100):
            con.interrupt()
            if done.wait(0.1):
                return

    threading.Thread(target=work, name="hptrack-query", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # Short waits: a signal sent to another thread does not wake a blocked
        # wait, but Python runs the Ctrl-C handler at the next wake-up.
        while not done.is_set() and not ctrl_c.pressed:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                break
            done.wait(left)
    except KeyboardInterrupt:  # a handler of the caller's raised it
        ctrl_c.pressed = True
    if not done.is_set():
        stop()
        ctrl_c.check()
        raise QueryStopped(f"query stopped after {timeout:g} s (the time limit); raise --timeout "
                           "(timeout= in Python) or add filters/LIMIT")
    ctrl_c.check()
    if "error" in out:
        raise out["error"]
    return out["df"]


def query(sql: str, store: StoreLike = None, as_of: AsOf = None, params: list | dict | None = None, *,
          strict: bool = False, timeout: float | None = None,
          memory_limit: int | float | str | None = None) -> pl.DataFrame:
    """Run one read-only SELECT over ``store`` and return a polars DataFrame.

    ``as_of`` (datetime or ISO-8601 string) folds only the events up to then.
    ``params`` fills ``?`` placeholders. ``timeout`` (seconds, default none)
    stops the query with :class:`QueryStopped`; ``memory_limit`` (bytes or a
    size such as ``"2GB"``, default a quarter of the machine) makes a bigger
    query fail with :class:`QueryStopped` instead of using more. Ctrl-C stops
    DuckDB and raises KeyboardInterrupt. Writes, statements other than SELECT,
    several statements and reads of files outside the store raise
    :class:`hptrack.QueryRefused`; SQL that does not parse or run raises
    :class:`InvalidQuery`.

    >>> hptrack.query("SELECT name, n_trials FROM searches ORDER BY started_at")
    """
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    check_sql(sql)  # before opening the store: a refusal costs nothing
    with _CtrlC() as ctrl_c:
        try:
            return _query(sql, Store(store), as_of, params, strict, timeout, memory_limit, ctrl_c)
        except Exception:
            ctrl_c.check()  # whatever DuckDB made of the interrupt, it was Ctrl-C
            raise


def _query(sql, st, as_of, params, strict, timeout, memory_limit, ctrl_c):
    import duckdb

    con = read_only_connection(st, as_of, strict=strict, memory_limit=memory_limit)
    ctrl_c.con = con
    try:
        check_sql(sql, con)  # again with the parser of the connection that runs it
        ctrl_c.check()
        return _run(con, sql, params, timeout, ctrl_c)
    except duckdb.PermissionException as e:
        raise QueryRefused(_permission_message(e, st.root)) from None
    except duckdb.OutOfMemoryException as e:
        used = re.search(r"\(([^()]*used)\)", str(e))
        raise QueryStopped(f"query ran out of memory ({used[1] if used else 'past its memory limit'}); raise "
                           "--memory-limit (memory_limit= in Python) or add filters/LIMIT") from None
    except duckdb.CatalogException as e:
        raise InvalidQuery(f"query failed: {one_line(e)} (the views are {_VIEW_LIST})") from None
    except duckdb.Error as e:
        raise InvalidQuery(f"query failed: {one_line(e)}") from None
    except PermissionError as e:  # the read-only filesystem of a remote store
        raise QueryRefused(f"query refused: {e}") from None
    finally:
        ctrl_c.con = None
        try:
            con.close()
        except duckdb.Error:
            pass  # still busy with a query that ignored interrupt(): the daemon worker dies with us
