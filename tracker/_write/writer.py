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

When the store cannot take a flush (a full disk, a failing mount), the rows
go, fsynced, to a fallback log in ``$HPTRACK_FALLBACK_DIR`` (default
``<tempdir>/hptrack-fallback``), in the store's log format: a trial's
``complete`` still returns only once its events are on a disk. Fallback rows
are sealed into the store when it takes writes again; if the process dies
first, copying the fallback file into ``wal/`` and running ``hptrack compact``
restores them (``verify`` names such files). When neither disk takes the rows,
the run goes on: they stay in memory, are retried at every flush, and a
warning with their count repeats while that lasts.

A forked child gets a fresh writer_id, seq and log, and never writes the
parent's rows. At interpreter exit every writer flushes and seals. SIGTERM
(where its handler is the default) is handled by a thread of ours, woken by
the signal's wake-up byte, so it works whatever the main thread is doing: it
records the process's running trials as failed, seals, and exits with 143.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (imported up front: see the comment after the imports)
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable

from hptrack import schema
from hptrack._files.rows import to_table
from hptrack._files.store import Store, StoreLike, resolve
from hptrack._files.wal import ROTATE_LOG_BYTES, LogFile, check_event_size, encode_rows

# pyarrow imports pandas lazily, at the first conversion - possibly our seal at
# exit, when pandas' import of concurrent.futures.thread can no longer register
# its atexit hook and fails. Importing that module up front avoids it.

FLUSH_INTERVAL_S = 1.0
FALLBACK_ENV = "HPTRACK_FALLBACK_DIR"
STORE_RETRY_S = 1.0       # after a failed write, flushes go to the fallback this long
LOSS_WARN_S = 10.0        # the "not durable" warning repeats at least this often
SEAL_EVENTS = 50_000
BATCH_EVENTS = 10_000

_writers: dict[str, Writer] = {}
_registry_lock = threading.Lock()


def new_writer_id() -> str:
    return os.urandom(8).hex()


def now_us() -> int:
    return time.time_ns() // 1000


class Writer:
    """Appends events to one store. Thread-safe; use :meth:`for_store`."""

    def __init__(self, store: StoreLike = None, *, flush_interval: float = FLUSH_INTERVAL_S,
                 seal_events: int = SEAL_EVENTS, batch_events: int = BATCH_EVENTS) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.flush_interval = flush_interval
        self.seal_events = seal_events
        self.batch_events = batch_events
        self._reset()

    @classmethod
    def for_store(cls, store: StoreLike = None) -> Writer:
        root = resolve(store)
        w = _writers.get(root)
        if w is None:
            with _registry_lock:
                w = _writers.get(root)
                if w is None:
                    w = _writers[root] = cls(root)
                    _install_exit_hooks(remote=w.store.remote)
        return w

    def _reset(self) -> None:
        """Fresh identity and empty buffers (at creation and in a forked child)."""
        self.writer_id = new_writer_id()
        self._pid = os.getpid()            # a forked child resets the writer at its first use
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
        # the fallback log and the chunks (first_seq, rows) it holds that the store lacks
        self._fb: LogFile | None = None
        self._fb_empty = True
        self._fb_old: list[LogFile] = []   # earlier fallback logs, each cut at a failed write
        self._fb_rows: list[tuple[int, list]] = []
        self._fb_error: BaseException | None = None
        self._store_retry_at = 0.0
        self._loss_warned_n = 0            # events not durable when we last warned
        self._loss_warned_at = 0.0

    def new_id(self) -> str:
        """A random 64-bit id as 16 hex digits (trial ids)."""
        return f"{self._ids.getrandbits(64):016x}"

    # --- appending -----------------------------------------------------
    def write(self, event: dict) -> int:
        """Validate one event (a dict of schema fields) and append it; returns its seq."""
        return self.append(schema.validate(event, now_us()))

    def append(self, row: tuple) -> int:
        """Append an already-validated row (ROW_FIELDS without seq); returns its seq."""
        self._forked()
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
        self._forked()
        if _terminating.is_set():
            wait_if_terminating()  # SIGTERM's final seal is done or under way: never acknowledge
        _critical.depth += 1
        try:
            self._flush(upto)
        finally:
            _leave_critical()

    def _flush(self, upto) -> None:
        with self._io_lock:
            if upto is not None and self._durable_seq >= upto:
                return  # another thread's fsync already covered it
            with self._lock:
                rows, self._pending = self._pending, []
                first = self._base
                self._base = first + len(rows)
            if not rows:
                return
            if time.monotonic() >= self._store_retry_at:
                try:
                    self._append_to_store(first, rows)
                    self._loss_warned_n = 0
                    return
                except OSError as exc:
                    self._store_failed(exc)
            try:
                self._append_to_fallback(first, rows)
                self._loss_warned_n = 0
            except OSError as exc:
                # Durable nowhere: keep the rows for the next try, and say so, again and again.
                self._fb_error = exc
                with self._lock:
                    self._pending[:0] = rows
                    self._base = first
                self._warn_loss()

    def _append_to_store(self, first, rows) -> None:
        data = encode_rows(first, rows)  # before the log is opened: it may refuse (oversize)
        if self._log is not None and self._log.size >= ROTATE_LOG_BYTES:
            self._rotate_log()  # readers refuse a log over wal.MAX_LOG_BYTES
        if self._log is None:
            self._log = LogFile(self._log_path(first), self._header())
            self._log_first = first
            _lock_file(self._log.fd)
        self._log.append(data, sync=True)
        self._logged.extend(rows)
        self._durable_seq = first + len(rows) - 1

    def _store_failed(self, exc) -> None:
        # The torn log is abandoned, so a partial record is only ever at the end of a file.
        if self._log is not None:
            if self._logged:
                self._rotate_log()
            else:  # nothing of ours in it; its name is the next log's
                _discard(self._log)
                self._log = None
        self._store_retry_at = time.monotonic() + STORE_RETRY_S
        self._last_error = exc

    def _fallback_dir(self) -> str:
        return os.environ.get(FALLBACK_ENV) or os.path.join(tempfile.gettempdir(), "hptrack-fallback")

    def _append_to_fallback(self, first, rows):
        if self._fb is None:
            folder = self._fallback_dir()
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{self.writer_id}-{first:012d}.wal")
            self._fb = LogFile(path, {**self._header(), "store": self.store.root})
            self._fb_empty = True
        try:
            self._fb.append(encode_rows(first, rows), sync=True)
        except OSError:
            # like the store's log: never append after a torn record
            if self._fb_empty:
                _discard(self._fb)
            else:
                self._fb_old.append(self._fb)
            self._fb = None
            raise
        self._fb_empty = False
        new_file = not self._fb_rows
        if self._fb_rows and self._fb_rows[-1][0] + len(self._fb_rows[-1][1]) == first:
            self._fb_rows[-1][1].extend(rows)
        else:
            self._fb_rows.append((first, list(rows)))
        self._durable_seq = first + len(rows) - 1
        if new_file or not self._warned:
            self._warned = True
            warnings.warn(f"hptrack: cannot write to store {self.store.root}: {self._last_error}; "
                          f"the run goes on, events are written (fsynced) to the fallback log "
                          f"{self._fb.path} until the store takes writes again", RuntimeWarning,
                          stacklevel=2)

    def _warn_loss(self) -> None:
        n = len(self._pending)
        now = time.monotonic()
        # at the first failure, whenever the count has doubled, and every LOSS_WARN_S
        if self._loss_warned_n and n < 2 * self._loss_warned_n and now - self._loss_warned_at < LOSS_WARN_S:
            return
        self._loss_warned_n, self._loss_warned_at = max(n, 1), now
        warnings.warn(f"hptrack: {n} events of this run are NOT durable: they are only in memory "
                      f"(cannot write to store {self.store.root}: {self._last_error}; nor to the fallback "
                      f"folder {self._fallback_dir()}: {self._fb_error}). The run goes on and they are "
                      "retried at every flush; if the process dies before a write succeeds they are "
                      "lost. Free some disk space.", RuntimeWarning, stacklevel=2)

    def _log_path(self, first_seq: int) -> str:
        os.makedirs(self.store.wal_dir, exist_ok=True)
        return os.path.join(self.store.wal_dir, f"{self.writer_id}-{first_seq:012d}.wal")

    def _header(self) -> dict:
        return {"writer_id": self.writer_id, "schema_version": schema.SCHEMA_VERSION,
                "pid": os.getpid(), "host": socket.gethostname()}

    def _rotate_log(self) -> None:
        """Stop appending to the current log; queue it and its rows for sealing.

        The log stays open, and so locked, until sealed: compact must not take
        it for a dead writer's log in between."""
        assert self._log is not None  # only an open log is rotated
        self._unsealed.append((self._log, self._log_first, self._logged))
        self._log, self._logged = None, []

    # --- sealing -------------------------------------------------------
    def seal(self) -> None:
        """Flush, then turn every closed or current log into Parquet segments."""
        self._forked()
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
        if self._fb_rows:
            self._seal_fallback()

    def _seal_fallback(self) -> None:
        """Move what the fallback log holds into the store, once the store takes writes."""
        with self._io_lock:
            while self._fb_rows:
                first, rows = self._fb_rows[0]
                try:
                    self.store.write_segments(to_table(rows, self.writer_id, first_seq=first),
                                              f"{self.writer_id}-{first:012d}.parquet")
                except OSError as exc:
                    self._warn_once(exc)
                    return
                del self._fb_rows[0]
            for fb in self._fallback_logs():
                _discard(fb)  # its rows are all in the store: a copy restored later is only duplicates
            self._fb, self._fb_old = None, []

    def _fallback_logs(self) -> list[LogFile]:
        return self._fb_old + ([self._fb] if self._fb is not None else [])

    def close(self) -> None:
        """Flush and seal everything; the writer stays usable (appending restarts it)."""
        self._forked()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._closed = True
            self._wake.set()
            thread.join()
        self.seal()
        self._thread, self._closed = None, False
        why = self._last_error
        if self._fb_rows:
            n = sum(len(rows) for _, rows in self._fb_rows)
            files = [fb.path for fb in self._fallback_logs()]
            where = (f"{files[0]} - to restore them, copy that file" if len(files) == 1 else
                     f"{', '.join(files)} - to restore them, copy these files")
            print(f"hptrack: could not save {n} events to store {self.store.root} ({why}); "
                  f"they are in {where} into {self.store.wal_dir}{os.sep} and run `hptrack compact`",
                  file=sys.stderr)
        if self._pending:
            print(f"hptrack: could not save {len(self._pending)} events to store {self.store.root} "
                  f"({why}) nor to a fallback file in {self._fallback_dir()} ({self._fb_error}): "
                  "they are lost", file=sys.stderr)

    # --- background ----------------------------------------------------
    def _start_thread(self) -> None:
        _sigterm_pipe_in_child()
        with _registry_lock:
            if self._thread is None and not _terminating.is_set():
                t = threading.Thread(target=self._run, name=f"hptrack-writer-{self.writer_id}", daemon=True)
                self._thread = t
                t.start()

    def _run(self) -> None:
        _critical.exempt = True
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

    def _warn_once(self, exc) -> None:
        self._last_error = exc
        if not self._warned:
            self._warned = True
            warnings.warn(f"hptrack: cannot write to store {self.store.root}: {exc}; the run goes on: "
                          "logged events are sealed into it later, and flushes go to a fallback log "
                          "while the store refuses them", RuntimeWarning, stacklevel=2)

    def _forked(self) -> None:
        """In a forked child, give this writer its own identity before it is used."""
        if self._pid != os.getpid():
            with _registry_lock:
                if self._pid != os.getpid():
                    self._after_fork()

    def _after_fork(self) -> None:
        # the parent keeps its own descriptors and locks on these logs
        for log in [self._log] + self._fallback_logs() + [log for log, _, _ in self._unsealed]:
            if log is not None:
                log.close()
        self._reset()


class _Critical(threading.local):
    depth = 0          # > 0 while this thread is inside the writer's bookkeeping
    exempt = False     # a thread of ours, which may flush while SIGTERM ends the run
    deferred: BaseException | None = None  # an exception a signal handler postponed until it leaves


_critical = _Critical()


def _leave_critical():
    c = _critical
    c.depth -= 1
    if c.depth == 0 and c.deferred is not None:
        exc, c.deferred = c.deferred, None
        raise exc


def _discard(log: LogFile) -> None:
    log.close()
    try:
        os.unlink(log.path)
    except OSError:
        pass


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


def _after_fork_in_child() -> None:
    # As little as possible here: subprocess runs this hook in the child it
    # forks to exec (with preexec_fn), and allocating there, in a copy of a
    # threaded process, crashed such children (Ray's raylet, `hptrack` run by a
    # test). Each writer resets itself at its first use in the child (_forked).
    global _registry_lock
    _registry_lock = threading.Lock()
    _reinstall_sigterm_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _writers:
        # A multiprocessing child clears its finalizers after this hook, then runs
        # the after-fork callbacks, and leaves through os._exit (skipping atexit):
        # a callback registers the finalizer that will close our writers.
        mp_util.register_after_fork(next(iter(_writers.values())), _register_mp_finalizer)


def _register_mp_finalizer(_=None) -> None:
    from multiprocessing import util

    util.Finalize(None, close_all, exitpriority=100)


_hooks_installed = False
_early_hook_installed = False


def _install_exit_hooks(remote: bool = False) -> None:
    global _hooks_installed, _early_hook_installed
    if remote and not _early_hook_installed:
        # s3fs, gcsfs and friends do their I/O on asyncio, whose executors refuse
        # new work once interpreter shutdown has begun, before atexit runs. Seal
        # remote stores earlier, with the hooks threading runs first (latest
        # registered first, so before concurrent.futures shuts its pools down).
        try:
            threading._register_atexit(close_all)  # type: ignore[attr-defined]  # private: see above
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
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                _install_sigterm()
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:
            pass


# --- SIGTERM ---------------------------------------------------------------
# Raising in the main thread at whatever bytecode the signal lands on lets user
# code swallow the exit (numpy turned it into a ValueError inside a fit, which
# sklearn recorded as a failed fit, and the search ran on). Instead the signal's
# C-level handler writes a wake-up byte to our pipe (signal.set_wakeup_fd, when
# nobody else uses it; the Python-level handler writes one too, for when someone
# does), and a thread of ours ends the run: it records the process's running
# trials as failed, flushes and seals every writer, and exits with 143. It does
# not need the main thread, which may be stuck in a long C call.

TERMINATED_REASON = "terminated by SIGTERM"
TERMINATED_EXIT = 128 + signal.SIGTERM
_term_pipe: tuple[int, int] | None = None     # (read end, write end)
_owns_wakeup = False                           # signal.set_wakeup_fd is our pipe
_pipe_after_fork = False                       # a forked child still to get its own pipe
_terminating = threading.Event()


def _install_sigterm() -> None:
    global _term_pipe, _owns_wakeup
    r, w = os.pipe()
    os.set_blocking(w, False)
    _term_pipe = (r, w)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        _owns_wakeup = old == -1
        if not _owns_wakeup:  # someone else's (asyncio's, say): give it back, rely on our handler
            signal.set_wakeup_fd(old)
    except ValueError:
        _owns_wakeup = False
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_sigterm, args=(r,), name="hptrack-sigterm", daemon=True).start()


def _reinstall_sigterm_after_fork() -> None:
    # The child shares the parent's pipe, and has no watching thread: its own
    # SIGTERM would end the parent. It drops the pipe here and gets its own at
    # its first write (_start_thread): starting a thread inside an at-fork hook
    # can crash a child that subprocess forks to exec (preexec_fn). Until then
    # _on_sigterm ends the child itself.
    global _term_pipe, _pipe_after_fork
    if _term_pipe is None:
        return
    try:
        if _owns_wakeup:
            signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread
        pass
    for fd in _term_pipe:
        try:
            os.close(fd)
        except OSError:
            pass
    _term_pipe = None
    _pipe_after_fork = signal.getsignal(signal.SIGTERM) is _on_sigterm


def _sigterm_pipe_in_child() -> None:
    """A forked child's own pipe and thread, at its first write (main thread only)."""
    global _pipe_after_fork
    if _pipe_after_fork and threading.current_thread() is threading.main_thread():
        _pipe_after_fork = False
        try:
            _install_sigterm()
        except (ValueError, OSError):
            pass


def _on_sigterm(signum, frame) -> None:
    if _term_pipe is None:  # a forked child that has not written yet: no thread to wake
        terminate()
    _wake_terminator()


def _wake_terminator() -> None:
    if _term_pipe is not None:
        try:
            os.write(_term_pipe[1], bytes([signal.SIGTERM]))
        except OSError:
            pass  # the pipe is full: the thread is already woken


def _watch_sigterm(r: int) -> None:
    while True:
        try:
            data = os.read(r, 512)
        except OSError:
            return  # closed after a fork
        if not data:
            return
        if signal.SIGTERM in data:
            terminate()


# What must end before the logs are sealed on SIGTERM: the write API registers
# its "fail the running trials" here (the writer knows nothing of trials).
_on_terminate: list[Callable[[str], object]] = []


def on_terminate(fn: Callable[[str], object]) -> None:
    """Call ``fn(reason)`` when SIGTERM (or :func:`terminate`) ends the process, before sealing."""
    _on_terminate.append(fn)


def terminate(reason: str = TERMINATED_REASON, exit_code: int = TERMINATED_EXIT) -> None:
    """End the process as SIGTERM does: fail the running trials, seal, ``os._exit``."""
    if _terminating.is_set():
        return
    _terminating.set()
    _critical.exempt = True
    try:
        for end_open_work in _on_terminate:
            end_open_work(reason)
        close_all()
    except BaseException as exc:  # exit whatever happens
        print(f"hptrack: while sealing on SIGTERM: {exc!r}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(exit_code)


def wait_if_terminating() -> None:
    """Called where something would be acknowledged: once SIGTERM is ending the
    process, nothing new may look durable, so other threads wait for the exit."""
    if _terminating.is_set() and not _critical.exempt:
        threading.Event().wait()


def _raise_outside_writer(exc: BaseException):
    # Python runs signal handlers in the main thread between bytecodes, possibly
    # in the middle of flush(): raising there could drop rows it had taken. The
    # writer postpones the exception until it leaves its bookkeeping.
    if _critical.depth:
        _critical.deferred = exc
        return
    raise exc


def _on_sigint(signum, frame) -> None:
    _raise_outside_writer(KeyboardInterrupt())
