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
same either way. A pass folds several searches at once; each search's rows are
cut from the fold sorted on ``search_id`` where that column's value changes and
checked to hold only that search before they are stored, so no library's group
order can put one search's rows in another's file. A partition holding another
search's rows is not projected (nor is that other search). Layout::

    views/search=<search_id>/<key>.trials.parquet
    views/search=<search_id>/<key>.params.parquet
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from hptrack._files.store import Store
from hptrack._read.views import (
    VIEW_SQL_DIGEST,
    define_views,
    map_files,
    open_connection,
    readable_segments,
    split_overlapping,
    sql_list,
)

_SUFFIXES = (".trials.parquet", ".params.parquet")
# compact folds the searches it projects in passes of at most this many events
# (a search is never split), which bounds its memory: ~1 GiB per million events
EVENTS_PER_PASS = 2_000_000


def _paths(st: Store, partition: str, segments) -> tuple[str, str]:
    """The trials and params projection files of a partition holding ``segments``."""
    names = sorted(os.path.basename(p) for p in segments)
    key = hashlib.sha256("\0".join([VIEW_SQL_DIGEST, *names]).encode()).hexdigest()[:24]
    folder = os.path.join(st.views_dir, os.path.basename(partition))
    trials_file, params_file = (os.path.join(folder, key + suffix) for suffix in _SUFFIXES)
    return trials_file, params_file


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
    def ok(path) -> bool:
        try:
            st.read_metadata(path)
            return True
        except Exception:
            return False

    return map_files(st, ok, paths)


def usable(st: Store, distinct: list[str], overlapping: list[str], wal: Any,
           left_out: Iterable[str] = ()) -> dict:
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
    keep: set[str] = set()
    todo: dict = {}
    targets_of: dict = {}
    for partition, paths in _by_partition(distinct).items():
        if partition in blocked:
            continue
        sid = os.path.basename(partition)[len("search="):]
        targets = targets_of[sid] = _paths(st, partition, paths)
        keep.update(targets)
        if not (all(p in existing for p in targets) and all(_readable(st, targets))):
            todo[sid] = (paths, targets)
    mixed = _mixed(st, todo)
    todo = {sid: v for sid, v in todo.items() if sid not in mixed}
    # A stored fold of a mixed search is wrong, not merely stale: readers would
    # still pick it (its partition's files did not change), so it goes now, grace or not.
    wrong = {p for sid in mixed for p in targets_of.get(sid, ())}
    keep -= wrong
    _delete_stale(st, wrong & existing, 0)
    written = 0
    for batch in _passes(todo, footers):
        try:
            written += _write_batch(st, footers, batch)
        except Exception:
            # Another compaction deleted a file it had replaced: these folds are
            # for a file set no reader uses any more; the next run writes the new ones.
            listed = set(st.segment_files())  # a fresh listing: a remote store's cache may not know yet
            if all(p in listed for paths, _ in batch.values() for p in paths):
                raise
    _delete_stale(st, set(st.view_files()) - keep, grace)
    return written


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


def _mixed(st: Store, todo) -> set:
    """The searches of ``todo`` a fold by ``search_id`` would get wrong, and
    the others they involve: a partition holding rows of another search (a file
    copied into the wrong folder) makes both wrong; so does a partition whose
    files cannot be read past their footers. Readers fold those from their events."""
    owner = {_tail(p): sid for sid, (files, _) in todo.items() for p in files}
    found = _ids_in_files(st, [p for files, _ in todo.values() for p in files])
    if found is None:  # a damaged file somewhere: find it search by search
        found = []
        for sid, (files, _) in todo.items():
            ids = _ids_in_files(st, files)
            found += [("", sid)] if ids is None else ids  # "": an unreadable file, owned by nobody
    mixed = set()
    for path, sid in found:
        if sid != owner.get(_tail(path)):
            mixed |= {owner.get(_tail(path)), sid}
    return mixed - {None}


def _ids_in_files(st: Store, paths) -> list | None:
    """(file, search_id) of each search_id present in each of ``paths``; None if one cannot be read."""
    import duckdb

    if not paths:
        return []
    con = open_connection(st)
    try:  # one column, dictionary-encoded: cheap next to the fold
        return con.sql(f"SELECT DISTINCT filename, search_id FROM read_parquet({sql_list(paths)}, "
                       "filename = true, hive_partitioning = false)").fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()


def _tail(path: str) -> str:
    """``search=<id>/<file>``: a segment's name as DuckDB's ``filename`` and the
    store both spell it (a URL's slashes may differ in front)."""
    return "/".join(path.replace(os.sep, "/").rsplit("/", 2)[-2:])


def _passes(todo, footers):
    """``todo`` in batches of at most EVENTS_PER_PASS events (a bigger search alone)."""
    batch: dict = {}
    n = 0
    for sid, (paths, targets) in sorted(todo.items()):
        rows = sum(footers[p].rows for p in paths)
        if batch and n + rows > EVENTS_PER_PASS:
            yield batch
            batch, n = {}, 0
        batch[sid] = (paths, targets)
        n += rows
    if batch:
        yield batch


def _write_batch(st: Store, footers, batch) -> int:
    """``_write`` of the batch; if its fold fails (a file damaged past its
    footer), each search alone, so one bad file costs only its own search's
    projection. Returns how many searches were written."""
    import duckdb

    try:
        _write(st, footers, batch)
        return len(batch)
    except duckdb.Error:  # not OSError: a store that cannot take the file fails compact loudly
        if len(batch) == 1:
            return 0  # readers fold it from its events (and meet the damage there)
    return sum(_write_batch(st, footers, {sid: v}) for sid, v in batch.items())


def _write(st: Store, footers, todo) -> None:
    """Fold the searches of ``todo`` (search_id -> (segments, targets)) in one pass, store each."""
    con = open_connection(st)
    try:
        define_views(con, footers, [p for paths, _ in todo.values() for p in paths], [])
        tables = [con.sql(f"SELECT * FROM {view} ORDER BY search_id").to_arrow_table()
                  for view in ("_trials_folded", "_params_folded")]
    finally:
        con.close()
    folds = [runs(table, "search_id") for table in tables]
    extra = {sid for fold in folds for sid in fold} - set(todo)
    if extra:  # _mixed keeps this from happening
        raise RuntimeError(f"the fold of {len(todo)} search(es) holds rows of others: {sorted(extra)[:5]}")
    for sid, (_, targets) in todo.items():
        for table, fold, path in zip(tables, folds, targets):
            part = fold.get(sid)
            if part is None:  # a search without trials or params: an empty file
                part = table.slice(0, 0)
            st.write_file(own_rows(part, sid), os.path.dirname(path), os.path.basename(path))


def runs(table: Any, key: str) -> dict:
    """key value -> the rows of ``table`` holding it, for a table sorted on
    ``key``: cut where the key column's value changes, so each piece holds one
    value by construction, whatever order a library returns groups in."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n == 0:
        return {}
    column = table.column(key)
    if column.null_count:
        raise ValueError(f"column {key!r} holds nulls: rows that belong to no search")
    cuts = pc.indices_nonzero(pc.not_equal(column.slice(1), column.slice(0, n - 1))).to_pylist()
    starts = [0, *(i + 1 for i in cuts)]
    out = {}
    for start, end in zip(starts, [*starts[1:], n]):
        value = column[start].as_py()
        if value in out:
            raise ValueError(f"table not sorted on {key!r}: {value!r} appears in two runs")
        out[value] = table.slice(start, end - start)
    return out


def own_rows(part: Any, search_id: str) -> Any:
    """``part``, checked to hold only ``search_id``'s rows before it is stored."""
    import pyarrow.compute as pc

    ids = part.column("search_id")
    if part.num_rows and not (ids.null_count == 0 and pc.all(pc.equal(ids, search_id)).as_py()):
        raise RuntimeError(f"refusing to store a fold of search {search_id!r} holding other searches' rows")
    return part
