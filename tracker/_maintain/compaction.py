"""``compact``: seal orphaned write-ahead logs and merge each search's segments into one file.

Safe next to running writers, readers and other compactions (on this machine or
another one sharing the bucket or folder). It never touches a log a live writer
holds, never overwrites a file (a merged file's name is new), and never deletes
a file when it merges it: the merged file's footer names the files it replaces,
readers leave those out, and a later compaction deletes them once ``grace``
seconds have passed since they were replaced and it has checked that a merged
file holds every event of theirs. So a kill at any moment leaves each event in
at least one file readers use, two compactions racing leave at worst two merged
files holding the same events (readers de-duplicate on ``event_id``, the next
compaction merges them), and a reader that listed a file before it was replaced
can still read it for the grace period.

>>> compact("./.hptrack").to_dict()
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field

from hptrack._files.checks import IDENTITY_COLUMNS, REPLACES_KEY, REQUIRED_COLUMNS
from hptrack._files.store import Store, StoreLike
from hptrack._files.wal import fsync_dir, read_log
from hptrack._maintain.logs import Log, inspect_log, log_table, writer_alive
from hptrack._read.projections import refresh as refresh_projections
from hptrack._read.views import map_files, segment_state
from hptrack.schema import COLUMNS, SCHEMA_VERSION

# Rows per row group of a compacted file: small enough that DuckDB has several
# to read in parallel and that as_of (time-sorted files) skips whole groups,
# large enough to compress well.
COMPACT_ROW_GROUP = 16_384
# How long a replaced file (and a stale stored fold) stays after it was
# replaced: a reader that listed it just before keeps answering at least this long.
DEFAULT_GRACE = 15 * 60.0


@dataclass
class CompactResult:
    files_before: int = 0       # segments readers use + logs, before
    files_after: int = 0        # segments readers use + logs, after
    events: int = 0             # rows held by the segments readers use, after
    sealed_logs: int = 0        # logs of dead writers sealed into segments (or, if empty, deleted)
    removed_duplicates: int = 0  # duplicate rows dropped while merging
    merged_searches: int = 0    # partitions given a merged file
    merged_files: int = 0       # segments those merged files replace (left for readers, deleted later)
    deleted_files: int = 0      # replaced segments deleted (their grace period had passed)
    awaiting_deletion: int = 0  # replaced segments kept until their grace period passes
    grace_s: float = DEFAULT_GRACE
    removed_temp_files: int = 0  # stale temporary files of interrupted writes
    skipped: list[str] = field(default_factory=list)  # damaged files left in place
    projected_searches: int = 0  # searches whose trials and params fold was (re)written

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _compact_lock(st: Store):
    """A shared lock held by every compaction on this machine: compactions may
    run at once (their steps are safe in any order), and the one that finds
    itself alone (:func:`_alone`) may delete the temporary files of killed
    ones. The OS drops the lock when the process dies."""
    import fcntl

    os.makedirs(st.local_dir, exist_ok=True)
    fd = os.open(os.path.join(st.local_dir, ".compact.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


def _alone(fd) -> bool:
    """Whether no other compaction on this machine holds the lock. Called last:
    a failed conversion may drop our shared lock (flock(2))."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def compact(store: StoreLike = None, *, grace: float = DEFAULT_GRACE) -> CompactResult:
    """Seal logs of dead writers into Parquet, merge each search's segments into
one file, then store each search's fold (_read/projections.py) for readers.

    Safe to kill at any moment (run it again to finish), to run while writers
    append and readers read, and next to another compaction of the same store.
    Files it merges stay, left out by readers, until a compaction run ``grace``
    seconds (default 15 minutes) later deletes them; ``grace=0`` deletes them
    at once (a reader listing files at that moment retries). Damaged files are
    left in place (see :func:`verify`).

    >>> compact().to_dict()
    {'files_before': 312, 'files_after': 3, 'events': 48210, 'sealed_logs': 1, ...}
    """
    st = store if isinstance(store, Store) else Store(store)
    result = CompactResult(grace_s=float(grace))
    if not st.found():
        return result
    with _compact_lock(st) as lock:
        result.files_before = len(segment_state(st)[0]) + len(st.wal_files())
        _seal_orphans(st, result)
        _merge_partitions(st, result)
        result.projected_searches = refresh_projections(st, grace=grace)
        _delete_replaced(st, result, grace)
        if _alone(lock):
            _remove_stale_temps(st, result)
        segments, _, replaced = segment_state(st)
        result.files_after = len(segments) + len(st.wal_files())
        result.awaiting_deletion = len(replaced)
        result.events = _count_rows(st, segments)
    return result


def _count_rows(st: Store, paths) -> int:
    n = 0
    for p in paths:
        try:
            n += st.read_metadata(p).num_rows
        except Exception:
            pass  # damaged or gone: verify reports it
    return n


def _seal_orphans(st: Store, result: CompactResult) -> None:
    for path in st.wal_files():
        lg = inspect_log(st, path)
        if lg is None or lg.live:
            continue
        if lg.disposable:  # holds no events
            if _unlink(st, path):
                result.sealed_logs += 1
        elif not lg.sealable:
            result.skipped.append(path)
        elif _seal_log(st, lg) and not lg.bad_rows:  # a log with rows it cannot store is kept
            _unlink(st, path)
            result.sealed_logs += 1
        else:
            result.skipped.append(path)
    if os.path.isdir(st.wal_dir):
        fsync_dir(st.wal_dir)


def _seal_log(st: Store, lg: Log) -> bool:
    """Write a dead writer's logged rows as the segments it would have written.

    A partition file that already exists is the writer's own seal (it died
    before deleting the log) or ours from a killed run: keep it if it holds
    the rows. Returns False, keeping the log, if it does not.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not lg.rows:
        return True
    assert lg.header is not None  # a log with rows has a header
    writer_id = lg.header["writer_id"]
    table = log_table(lg)
    if table is None:
        return False
    first = lg.rows[0][0]  # the name the writer itself would have sealed into
    if type(first) is not int:  # a hostile first row, left out of table
        first = pc.min(table["seq"]).as_py() or 0
    name = f"{writer_id}-{first:012d}.parquet"
    todo = []
    for search_id in pc.unique(table["search_id"]).to_pylist():
        target = f"{st.partition_dir(search_id)}/{name}"
        if not st.exists(target):
            todo.append(search_id)
        elif not _holds(st, target, table.filter(pc.equal(table["search_id"], search_id))):
            return False
    if todo:
        st.write_segments(table.filter(pc.is_in(table["search_id"], value_set=pa.array(todo))), name)
    return True


def _holds(st: Store, path: str, part) -> bool:
    """Whether the segment at ``path`` already holds every event of ``part``
    (the writer crashed after sealing it but before deleting its log)."""
    try:
        ids = set(st.parquet_file(path).read(columns=["event_id"]).column("event_id").to_pylist())
    except Exception:
        return False
    return set(part.column("event_id").to_pylist()) <= ids


def _read_segment(st: Store, path: str):
    """A segment's table, or None if it must not be compacted (damaged, foreign, newer)."""
    import pyarrow.compute as pc

    table = st.parquet_file(path).read()  # not pq.read_table: it would add a hive 'search' column
    names = set(table.column_names)
    if not set(REQUIRED_COLUMNS) <= names:
        return None
    if table.num_rows:
        top = pc.max(table["schema_version"]).as_py()
        if top is not None and top > SCHEMA_VERSION:
            return None
        if any(table[c].null_count for c in IDENTITY_COLUMNS):
            return None  # verify calls these rows incomplete
    return table


_GONE = object()


def _try_read_segment(args):
    st, path = args
    try:
        return _read_segment(st, path)
    except FileNotFoundError:
        return _GONE
    except Exception:
        return None


def _merge_partitions(st: Store, result: CompactResult) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    live, left_out, replaced = segment_state(st)
    result.skipped += [p for p, _ in left_out]
    by_dir: dict[str, list[str]] = {}
    for path in live:
        by_dir.setdefault(os.path.dirname(path), []).append(path)
    for directory, paths in by_dir.items():
        if len(paths) < 2:
            continue
        tables, read = [], []
        for path, table in zip(paths, map_files(st, _try_read_segment, [(st, p) for p in paths])):
            if table is _GONE:
                continue  # merged and deleted by another compaction since we listed it
            if table is None:
                result.skipped.append(path)
                continue
            tables.append(table)
            read.append(path)
        if len(read) < 2:
            continue
        merged = pa.concat_tables(tables, promote_options="permissive")
        extra = [c for c in merged.column_names if c not in COLUMNS]
        merged = merged.select(list(COLUMNS) + extra)
        merged = merged.sort_by([("ts", "ascending"), ("event_id", "ascending")])
        if merged.num_rows > 1:
            # Copies of one event have one event_id, hence one ts: sorted, they are neighbours.
            ids = merged.column("event_id").combine_chunks()
            keep = pa.concat_arrays([pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))])
            dropped = merged.num_rows - pc.sum(keep).as_py()
            if dropped:
                merged = merged.filter(keep)
                result.removed_duplicates += dropped
        # It also replaces what the files it read replace (still awaiting deletion),
        # so those stay hidden whichever of them a later compaction deletes first.
        names = {os.path.basename(p) for p in read}
        names |= {os.path.basename(p) for p, by in replaced.items()
                  if os.path.dirname(p) == directory and set(by) & set(read)}
        merged = merged.replace_schema_metadata({REPLACES_KEY: json.dumps(sorted(names))})
        # a new name, never an existing one: no file ever changes content
        st.write_file(merged, directory, f"compact-{uuid.uuid4().hex}.parquet", row_group_size=COMPACT_ROW_GROUP)
        result.merged_searches += 1
        result.merged_files += len(read)


def _delete_replaced(st: Store, result: CompactResult, grace: float) -> None:
    """Delete each replaced file whose replacement was written ``grace`` seconds
    ago or more and holds every one of its events (checked, not assumed: a
    footer could lie). What cannot be checked stays."""
    _, _, replaced = segment_state(st)
    now = time.time()
    held: dict[str, set | None] = {}  # file -> its event ids

    ages: dict[str, float] = {}

    def age(path):
        if path not in ages:
            try:
                ages[path] = now - st.modified(path)
            except (OSError, ValueError):
                ages[path] = -1.0  # gone: it vouches for nothing
        return ages[path]

    ripe = {path: [m for m in by if age(m) >= grace] for path, by in sorted(replaced.items())}
    ripe = {path: by for path, by in ripe.items() if by}
    wanted = sorted(set(ripe) | {m for by in ripe.values() for m in by})
    for path, ids in zip(wanted, map_files(st, _event_ids, [(st, p) for p in wanted])):
        held[path] = ids
    doomed = [path for path, by in ripe.items() if (ids := held[path]) is not None
              and any((other := held[m]) is not None and ids <= other for m in by)]
    deleted = map_files(st, lambda p: _unlink(st, p), doomed)
    result.deleted_files += sum(deleted)
    for directory in {os.path.dirname(p) for p, gone in zip(doomed, deleted) if gone}:
        st.sync_dir(directory)


def _event_ids(args) -> set | None:
    """A segment's event ids; None if it is gone or unreadable (it vouches for nothing)."""
    st, path = args
    try:
        return set(st.parquet_file(path).read(columns=["event_id"]).column("event_id").to_pylist())
    except Exception:
        return None


def _remove_stale_temps(st: Store, result: CompactResult) -> None:
    """Delete temporary files no process can still be writing.

    A writer's temp segment ``.<writer>-<seq>.parquet.<rand>.tmp`` is written
    while its log ``wal/<writer>-<seq>.wal`` still exists; once that log is
    gone or its writer dead, nobody will rename the temp. ``compact-*`` temps
    and those of projections (``views/``) are written by compactions only:
    called when no other compaction holds the lock.
    """
    for path in st.temp_files():
        base = os.path.basename(path)
        if path.startswith(st.views_dir + os.sep):
            if _unlink(st, path):
                result.removed_temp_files += 1
            continue
        if not (base.startswith(".") and base.endswith(".tmp") and path.startswith(st.events_dir + os.sep)):
            continue
        name = base[1:-len(".tmp")].rsplit(".", 1)[0]
        if not name.endswith(".parquet"):
            continue
        if not name.startswith("compact-"):
            log = os.path.join(st.wal_dir, name[:-len(".parquet")] + ".wal")
            if os.path.exists(log):
                try:
                    header = read_log(log).header
                except FileNotFoundError:
                    header = None
                if os.path.exists(log) and writer_alive(log, header):
                    continue
        if _unlink(st, path):
            result.removed_temp_files += 1


def _unlink(st: Store, path: str) -> bool:
    try:
        st.remove(path)
        return True
    except FileNotFoundError:
        return False
