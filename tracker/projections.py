"""Stored folds: each search's ``trials`` and ``params`` rows, written by
``compact`` beside the events so that readers need not fold millions of events
on every query.

A projection is used exactly or not at all. It is named by a key over the
view SQL and the names of the segment files it was folded from (a file name
never changes content: writers and compact never replace a file), and a
reader uses it only when

- the search's partition holds exactly those files, none of which may share
  events with another (no de-duplication pending),
- no write-ahead log holds events of the search (a live or crashed writer),
- no file of the partition was left out as damaged,
- the read is not ``as_of`` a past time, and
- both projection files can be read.

Otherwise that search is folded from its events as before; the answers are the
same either way. Layout::

    views/search=<search_id>/<key>.trials.parquet
    views/search=<search_id>/<key>.params.parquet
"""

from __future__ import annotations

import hashlib
import os

from .read import VIEW_SQL_DIGEST, define_views, map_files, open_connection, readable_segments, split_overlapping
from .store import Store

_SUFFIXES = (".trials.parquet", ".params.parquet")
# compact folds the searches it projects in passes of at most this many events
# (a search is never split), which bounds its memory: ~1 GiB per million events
EVENTS_PER_PASS = 2_000_000


def _paths(st: Store, partition: str, segments) -> tuple[str, str]:
    """The trials and params projection files of a partition holding ``segments``."""
    names = sorted(os.path.basename(p) for p in segments)
    key = hashlib.sha256("\0".join([VIEW_SQL_DIGEST, *names]).encode()).hexdigest()[:24]
    folder = os.path.join(st.views_dir, os.path.basename(partition))
    return tuple(os.path.join(folder, key + suffix) for suffix in _SUFFIXES)


def _by_partition(paths) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in paths:
        out.setdefault(os.path.dirname(p), []).append(p)
    return out


def _blocked(st: Store, overlapping, wal, left_out) -> set[str]:
    """Partitions whose fold cannot come from a projection."""
    blocked = {os.path.dirname(p) for p in [*overlapping, *left_out]}
    if wal is not None and wal.num_rows:
        blocked |= {st.partition_dir(sid) for sid in set(wal.column("search_id").to_pylist())}
    return blocked


def _readable(st: Store, paths) -> list[bool]:
    def ok(path):
        try:
            st.read_metadata(path)
            return True
        except Exception:
            return False

    return map_files(st, ok, paths)


def usable(st: Store, distinct, overlapping, wal, left_out=()) -> dict:
    """partition folder -> (its segments, trials projection, params projection)
    of every search a reader may take from its projection (see the module doc)."""
    existing = set(st.view_files())
    if not existing:
        return {}
    blocked = _blocked(st, overlapping, wal, left_out)
    found = {}
    for partition, segments in _by_partition(distinct).items():
        if partition not in blocked:
            paths = _paths(st, partition, segments)
            if all(p in existing for p in paths):
                found[partition] = (segments, *paths)
    files = [p for v in found.values() for p in v[1:]]
    bad = {p for p, good in zip(files, _readable(st, files)) if not good}
    return {k: v for k, v in found.items() if not bad & set(v[1:])}


def refresh(st: Store, grace: float = 0.0) -> int:
    """Write the projection of every search whose partition can have one and
    lacks it, delete the stale ones a reader can no longer be using (see
    :func:`_delete_stale`); returns how many searches were written. Run by
    ``compact``, after merging."""
    footers: dict = {}
    segments, left_out = readable_segments(st, footers)
    distinct, overlapping = split_overlapping(segments, footers, None)
    blocked = _blocked(st, overlapping, None, [p for p, _ in left_out])
    existing = set(st.view_files())
    keep, todo = set(), {}
    for partition, paths in _by_partition(distinct).items():
        if partition in blocked:
            continue
        targets = _paths(st, partition, paths)
        keep.update(targets)
        if not (all(p in existing for p in targets) and all(_readable(st, targets))):
            todo[os.path.basename(partition)[len("search="):]] = (paths, targets)
    for batch in _passes(todo, footers):
        try:
            _write(st, footers, batch)
        except Exception:
            # Another compaction deleted a file it had replaced: these folds are
            # for a file set no reader uses any more; the next run writes the new ones.
            listed = set(st.segment_files())  # a fresh listing: a remote store's cache may not know yet
            if all(p in listed for paths, _ in batch.values() for p in paths):
                raise
    _delete_stale(st, set(st.view_files()) - keep, grace)
    return len(todo)


def _delete_stale(st: Store, stale, grace: float) -> None:
    """Delete the stale projections no reader can still be using.

    A reader uses a projection only while its partition holds exactly the files
    it was folded from; that stops being so when a file appears (a segment, a
    merged file, a newer projection), and every file written after the
    projection is such a change. So once any file of the partition (events or
    views) written after the projection is ``grace`` seconds old, every reader
    that chose it has had the grace period."""
    import time

    now = time.time()

    def modified(path):
        try:
            return st.modified(path)
        except (OSError, ValueError):
            return None

    by_folder: dict[str, list[str]] = {}  # partition folder name -> its files (events and views)
    if grace > 0 and stale:
        for p in [*st.view_files(), *st.segment_files()]:
            by_folder.setdefault(os.path.basename(os.path.dirname(p)), []).append(p)
    times: dict[str, list[float]] = {}  # partition folder name -> times its files were written
    for path in sorted(stale):
        folder = os.path.basename(os.path.dirname(path))
        if grace > 0 and folder not in times:
            times[folder] = [t for t in map(modified, by_folder.get(folder, [])) if t is not None]
        if grace > 0:
            mine = modified(path)
            if mine is None or not any(t > mine and now - t >= grace for t in times[folder]):
                continue
        try:
            st.remove(path)
        except FileNotFoundError:
            pass


def _passes(todo, footers):
    """``todo`` in batches of at most EVENTS_PER_PASS events (a bigger search alone)."""
    batch, n = {}, 0
    for sid, (paths, targets) in sorted(todo.items()):
        rows = sum(footers[p].rows for p in paths)
        if batch and n + rows > EVENTS_PER_PASS:
            yield batch
            batch, n = {}, 0
        batch[sid] = (paths, targets)
        n += rows
    if batch:
        yield batch


def _write(st: Store, footers, todo) -> None:
    """Fold the searches of ``todo`` (search_id -> (segments, targets)) in one pass, store each."""
    con = open_connection(st)
    define_views(con, footers, [p for paths, _ in todo.values() for p in paths], [])
    for i, view in enumerate(("_trials_folded", "_params_folded")):
        table = con.sql(f"SELECT * FROM {view} ORDER BY search_id").to_arrow_table()
        # each search's rows are one run of the sorted table; groups come in table order
        runs = table.group_by("search_id", use_threads=False).aggregate([([], "count_all")])
        offsets, at = {}, 0
        for sid, n in zip(runs["search_id"].to_pylist(), runs["count_all"].to_pylist()):
            offsets[sid] = (at, n)
            at += n
        for sid, (_, targets) in todo.items():
            start, n = offsets.get(sid, (0, 0))  # a search without trials or params: an empty file
            path = targets[i]
            st.write_file(table.slice(start, n), os.path.dirname(path), os.path.basename(path))
    con.close()
