"""The Writer: buffers events, logs them durably, seals them into Parquet.

One Writer per store per process (:func:`Writer.for_store`). It owns a random
``writer_id`` and a gapless ``seq``; appending is a lock, a counter and a list
append, so tracking adds microseconds to a trial. Rows reach disk in two steps:

1. flush: pending rows become one checksummed record appended to the writer's
   write-ahead log and fdatasync'ed. With ``durability="trial"`` the trial's own
   ``complete``/``fail``/``prune`` waits for this (concurrent trials share one
   fsync); a background thread flushes everything else at least every second.
2. seal: when the log holds enough rows, and at exit, it is rotated and its rows
   are written as Parquet segments (temp name, fsync, rename); then the log is
   deleted. A crash between the two leaves the same events in both places;
   readers de-duplicate on ``event_id``.

A forked child gets a fresh writer_id, seq and log, and never writes the
parent's rows. At interpreter exit and on SIGTERM every writer flushes and seals.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (see below)
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings

from . import schema
from .rows import to_table
from .store import Store, resolve
from .wal import ROTATE_LOG_BYTES, LogFile, check_event_size, encode_rows

# pyarrow imports pandas lazily, at the first conversion - possibly our seal at
# exit, when pandas' import of concurrent.futures.thread can no longer register
# its atexit hook and fails. Importing that module up front avoids it.

FLUSH_INTERVAL_S = 1.0
FALLBACK_ENV = "HPTRACK_FALLBACK_DIR"
SEAL_EVENTS = 50_000
BATCH_EVENTS = 10_000

_writers: dict[str, "Writer"] = {}
_registry_lock = threading.Lock()


def new_writer_id() -> str:
    return os.urandom(8).hex()


def now_us() -> int:
    return time.time_ns() // 1000


class Writer:
    """Appends events to one store. Thread-safe; use :meth:`for_store`."""

    def __init__(self, store=None, *, flush_interval=FLUSH_INTERVAL_S,
                 seal_events=SEAL_EVENTS, batch_events=BATCH_EVENTS):
        self.store = store if isinstance(store, Store) else Store(store)
        self.flush_interval = flush_interval
        self.seal_events = seal_events
        self.batch_events = batch_events
        self._reset()

    @classmethod
    def for_store(cls, store=None) -> "Writer":
        root = resolve(store)
        w = _writers.get(root)
        if w is None:
            with _registry_lock:
                w = _writers.get(root)
                if w is None:
                    w = _writers[root] = cls(root)
                    _install_exit_hooks(remote=w.store.remote)
        return w

    def _reset(self):
        """Fresh identity and empty buffers (at creation and in a forked child)."""
        self.writer_id = new_writer_id()
        # ids for trials; a private generator, so the user's `random` stream is untouched
        self._ids = random.Random(os.urandom(16))
        self._lock = threading.Lock()      # seq and pending
        self._io_lock = threading.Lock()   # the log file
        # Rows are kept without their seq: a row's seq is its position after
        # _base. Appending is then one list.append, which no signal can split
        # into a seq taken and a row not stored (a false gap).
        self._base = 0                     # seq of _pending[0]
        self._pending: list[tuple] = []
        self._log: LogFile | None = None
        self._log_first = 0                # seq of _logged[0]
        self._logged: list[tuple] = []     # rows in the current log, kept for sealing
        self._unsealed: list[tuple[LogFile, int, list]] = []  # rotated logs awaiting sealing
        self._durable_seq = -1
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False
        self._last_error: BaseException | None = None

    def new_id(self) -> str:
        """A random 64-bit id as 16 hex digits (trial ids)."""
        return f"{self._ids.getrandbits(64):016x}"

    # --- appending -----------------------------------------------------
    def write(self, event: dict) -> int:
        """Validate one event (a dict of schema fields) and append it; returns its seq."""
        return self.append(schema.validate(event, now_us()))

    def append(self, row: tuple) -> int:
        """Append an already-validated row (ROW_FIELDS without seq); returns its seq."""
        check_event_size(row)  # one the log could not hold is refused before it takes a seq
        with self._lock:
            pending = self._pending
            pending.append(row)
            n = len(pending)
            seq = self._base + n - 1
        if self._thread is None:
            self._start_thread()
        if n % self.batch_events == 0:
            self._wake.set()
        return seq

    # --- flushing ------------------------------------------------------
    def flush(self, upto: int | None = None) -> None:
        """Make every appended row durable in the log (or at least row ``upto``)."""
        _critical.depth += 1
        try:
            self._flush(upto)
        finally:
            _leave_critical()

    def _flush(self, upto):
        with self._io_lock:
            if upto is not None and self._durable_seq >= upto:
                return  # another thread's fsync already covered it
            with self._lock:
                rows, self._pending = self._pending, []
                first = self._base
                self._base = first + len(rows)
            if not rows:
                return
            try:
                data = encode_rows(first, rows)
                if self._log is not None and self._log.size >= ROTATE_LOG_BYTES:
                    self._rotate_log()  # readers refuse a log over wal.MAX_LOG_BYTES
                if self._log is None:
                    self._log = LogFile(self._log_path(first), self._header())
                    self._log_first = first
                    _lock_file(self._log.fd)
                self._log.append(data, sync=True)
            except OSError as exc:
                # Keep the rows for the next try; the torn log is abandoned, so a
                # partial record is only ever at the end of a file.
                with self._lock:
                    self._pending[:0] = rows
                    self._base = first
                if self._log is not None:
                    self._rotate_log()
                self._warn_once(exc)
                return
            self._logged.extend(rows)
            self._durable_seq = first + len(rows) - 1

    def _log_path(self, first_seq: int) -> str:
        os.makedirs(self.store.wal_dir, exist_ok=True)
        return os.path.join(self.store.wal_dir, f"{self.writer_id}-{first_seq:012d}.wal")

    def _header(self) -> dict:
        return {"writer_id": self.writer_id, "schema_version": schema.SCHEMA_VERSION,
                "pid": os.getpid(), "host": socket.gethostname()}

    def _rotate_log(self):
        """Stop appending to the current log; queue it and its rows for sealing.

        The log stays open, and so locked, until sealed: compact must not take
        it for a dead writer's log in between."""
        self._unsealed.append((self._log, self._log_first, self._logged))
        self._log, self._logged = None, []

    # --- sealing -------------------------------------------------------
    def seal(self) -> None:
        """Flush, then turn every closed or current log into Parquet segments."""
        self.flush()
        with self._io_lock:
            if self._log is not None:
                self._rotate_log()
            todo, self._unsealed = self._unsealed, []
        for log, first, rows in todo:
            try:
                if rows:
                    table = to_table(rows, self.writer_id, first_seq=first)
                    self.store.write_segments(table, f"{self.writer_id}-{first:012d}.parquet")
                try:
                    os.unlink(log.path)
                except FileNotFoundError:
                    pass  # already gone: the segments above hold its rows
                log.close()
            except OSError as exc:
                with self._io_lock:
                    self._unsealed.append((log, first, rows))
                self._warn_once(exc)

    def close(self) -> None:
        """Flush and seal everything; the writer stays usable (appending restarts it)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._closed = True
            self._wake.set()
            thread.join()
        self.seal()
        self._thread, self._closed = None, False
        if self._pending:
            self._save_fallback()

    def _save_fallback(self) -> None:
        """The store could not take these rows: put them in a log file elsewhere
        and say where, so that nothing acknowledged is silently lost."""
        with self._lock:
            rows, first = self._pending, self._base
        folder = os.environ.get(FALLBACK_ENV) or os.path.join(tempfile.gettempdir(), "hptrack-fallback")
        why = self._last_error
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{self.writer_id}-{first:012d}.wal")
            log = LogFile(path, {**self._header(), "store": self.store.root})
            log.append(encode_rows(first, rows), sync=True)
            log.close()
        except OSError as exc:
            print(f"hptrack: could not save {len(rows)} events to store {self.store.root} ({why}) "
                  f"nor to a fallback file in {folder} ({exc}): they are lost", file=sys.stderr)
            return
        with self._lock:
            del self._pending[:len(rows)]
            self._base = first + len(rows)
        print(f"hptrack: could not save {len(rows)} events to store {self.store.root} ({why}); "
              f"they are in {path} - to restore them, copy that file into "
              f"{self.store.wal_dir}{os.sep} and run `hptrack compact`", file=sys.stderr)

    # --- background ----------------------------------------------------
    def _start_thread(self):
        with _registry_lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name=f"hptrack-writer-{self.writer_id}", daemon=True)
                self._thread = t
                t.start()

    def _run(self):
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._pending:
                    self.flush()
                if len(self._logged) >= self.seal_events:
                    self.seal()
            except Exception as exc:  # never take the user's run down
                self._warn_once(exc)

    def _warn_once(self, exc):
        self._last_error = exc
        if not self._warned:
            self._warned = True
            warnings.warn(f"hptrack: cannot write to store {self.store.root}: {exc}; the run goes on, "
                          "events are kept in memory and retried (at exit, what could not be saved "
                          "goes to a fallback file)", RuntimeWarning, stacklevel=2)

    def _after_fork(self):
        # the parent keeps its own descriptors and locks on these logs
        for log in [self._log] + [log for log, _, _ in self._unsealed]:
            if log is not None:
                log.close()
        self._reset()


class _Critical(threading.local):
    depth = 0          # > 0 while this thread is inside the writer's bookkeeping
    deferred = None    # an exception a signal handler postponed until it leaves


_critical = _Critical()


def _leave_critical():
    c = _critical
    c.depth -= 1
    if c.depth == 0 and c.deferred is not None:
        exc, c.deferred = c.deferred, None
        raise exc


def _lock_file(fd: int) -> None:
    """Hold an advisory lock on our live log, so compact knows it is not orphaned."""
    import fcntl

    # blocking: compact's liveness probe holds the lock for an instant
    fcntl.flock(fd, fcntl.LOCK_EX)


def log_is_live(path: str) -> bool:
    """True when a writer process still holds the log open."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def close_all() -> None:
    for w in list(_writers.values()):
        try:
            w.close()
        except Exception as exc:  # at exit: report, never raise
            print(f"hptrack: could not save events to {w.store.root}: {exc}", file=sys.stderr)


def _after_fork_in_child():
    global _registry_lock
    _registry_lock = threading.Lock()
    for w in _writers.values():
        w._after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _writers:
        # A multiprocessing child clears its finalizers after this hook, then runs
        # the after-fork callbacks, and leaves through os._exit (skipping atexit):
        # a callback registers the finalizer that will close our writers.
        mp_util.register_after_fork(next(iter(_writers.values())), _register_mp_finalizer)


def _register_mp_finalizer(_=None):
    from multiprocessing import util

    util.Finalize(None, close_all, exitpriority=100)


_hooks_installed = False
_early_hook_installed = False


def _install_exit_hooks(remote=False):
    global _hooks_installed, _early_hook_installed
    if remote and not _early_hook_installed:
        # s3fs, gcsfs and friends do their I/O on asyncio, whose executors refuse
        # new work once interpreter shutdown has begun, before atexit runs. Seal
        # remote stores earlier, with the hooks threading runs first (latest
        # registered first, so before concurrent.futures shuts its pools down).
        try:
            threading._register_atexit(close_all)
            _early_hook_installed = True
        except (AttributeError, RuntimeError):  # no such hook, or shutdown already started
            pass
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(close_all)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        _register_mp_finalizer()  # a spawned multiprocessing child: see above
    if threading.current_thread() is threading.main_thread():
        # Only where nobody else handles the signal: default SIGTERM, default Ctrl-C.
        for signum, default, handler in ((signal.SIGTERM, signal.SIG_DFL, _on_sigterm),
                                         (signal.SIGINT, signal.default_int_handler, _on_sigint)):
            try:
                if signal.getsignal(signum) is default:
                    signal.signal(signum, handler)
            except ValueError:
                pass


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives; exits with status 143."""

    def __str__(self):
        return "process terminated by SIGTERM"


def _raise_outside_writer(exc: BaseException):
    # Python runs signal handlers in the main thread between bytecodes, possibly
    # in the middle of flush(): raising there could drop rows it had taken. The
    # writer postpones the exception until it leaves its bookkeeping.
    if _critical.depth:
        _critical.deferred = exc
        return
    raise exc


def _on_sigterm(signum, frame):
    # Exit through SystemExit: unwinding records interrupted trials as failed,
    # and atexit then flushes and seals every writer.
    _raise_outside_writer(Terminated(128 + signum))


def _on_sigint(signum, frame):
    _raise_outside_writer(KeyboardInterrupt())
