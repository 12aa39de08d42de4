"""``compact``: seal orphaned write-ahead logs and merge each search's segments into one file.

Safe next to running writers. It never touches a log a live writer holds, and
only deletes files it has read and rewritten; every step first writes the new
file whole (temp name, fsync, rename in a folder; one PUT in object storage) and
only then deletes the old ones, so a kill at any moment leaves each event in at
least one file. Readers de-duplicate on ``event_id``, and running ``compact``
again finishes the job.

>>> compact("./.hptrack").to_dict()
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import asdict, dataclass, field

from .checks import IDENTITY_COLUMNS, REQUIRED_COLUMNS, segment_problems
from .logs import Log, inspect_log, log_table, writer_alive
from .projections import refresh as refresh_projections
from .schema import COLUMNS, SCHEMA_VERSION
from .store import Store
from .wal import fsync_dir, read_log

# Rows per row group of a compacted file: small enough that DuckDB has several
# to read in parallel and that as_of (time-sorted files) skips whole groups,
# large enough to compress well.
COMPACT_ROW_GROUP = 16_384


@dataclass
class CompactResult:
    files_before: int = 0       # segments + logs before
    files_after: int = 0        # segments + logs after
    events: int = 0             # rows held by segment files after compaction
    sealed_logs: int = 0        # logs of dead writers sealed into segments (or, if empty, deleted)
    removed_duplicates: int = 0  # duplicate rows dropped while merging
    merged_searches: int = 0    # partitions rewritten as one file
    removed_temp_files: int = 0  # stale temporary files of interrupted writes
    skipped: list[str] = field(default_factory=list)  # damaged files left in place
    projected_searches: int = 0  # searches whose trials and params fold was (re)written

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _compact_lock(st: Store):
    """One compaction per store at a time: two could race to rewrite a partition.
    The OS drops the lock when the process dies, so a killed compaction never blocks the next."""
    import fcntl

    os.makedirs(st.local_dir, exist_ok=True)  # a remote store's lock guards this machine only
    fd = os.open(os.path.join(st.local_dir, ".compact.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def compact(store=None) -> CompactResult:
    """Seal logs of dead writers into Parquet, merge each search's segments into
one file, then store each search's fold (hptrack.projections) for readers.

    Safe to kill at any moment (run it again to finish) and to run while writers
    append: live logs are never touched, and only files that were read and
    rewritten are deleted. Damaged files are left in place (see :func:`verify`).

    >>> compact().to_dict()
    {'files_before': 312, 'files_after': 3, 'events': 48210, 'sealed_logs': 1, ...}
    """
    st = store if isinstance(store, Store) else Store(store)
    result = CompactResult()
    if not st.found():
        return result
    with _compact_lock(st):
        result.files_before = len(st.segment_files()) + len(st.wal_files())
        _seal_orphans(st, result)
        _merge_partitions(st, result)
        _remove_stale_temps(st, result)
        result.projected_searches = refresh_projections(st)
        segments = st.segment_files()
        result.files_after = len(segments) + len(st.wal_files())
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


def _merge_partitions(st: Store, result: CompactResult) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    by_dir: dict[str, list[str]] = {}
    for path in st.segment_files():
        by_dir.setdefault(os.path.dirname(path), []).append(path)
    for directory, paths in by_dir.items():
        if len(paths) < 2:
            continue
        tables, read = [], []
        for path in paths:
            if segment_problems(st, path):  # [] means clean, None means gone
                result.skipped.append(path)
                continue
            try:
                table = _read_segment(st, path)
            except FileNotFoundError:
                continue
            except Exception:
                table = None
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
        first = merged.column("event_id")[0].as_py() if merged.num_rows else uuid.uuid4().hex
        name = f"compact-{first}.parquet"
        if st.exists(f"{directory}/{name}"):
            # A rerun after a kill can pick the same first event; never replace a file,
            # so no reader or later step ever sees a name change content.
            name = f"compact-{first}-{uuid.uuid4().hex[:8]}.parquet"
        out = st.write_file(merged, directory, name, row_group_size=COMPACT_ROW_GROUP)
        for path in read:
            if path != out:
                _unlink(st, path)
        st.sync_dir(directory)
        result.merged_searches += 1


def _remove_stale_temps(st: Store, result: CompactResult) -> None:
    """Delete temporary files no process can still be writing.

    A writer's temp segment ``.<writer>-<seq>.parquet.<rand>.tmp`` is written
    while its log ``wal/<writer>-<seq>.wal`` still exists; once that log is
    gone or its writer dead, nobody will rename the temp. ``compact-*`` temps
    are only written under the compaction lock, which we hold, and so are
    the temps of projections (``views/``).
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
