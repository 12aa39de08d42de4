"""Where a store's files live, and the all-or-nothing write of a Parquet segment.

Layout of a store folder::

    events/search=<search_id>/<writer_id>-<first_seq>.parquet   sealed segments
    events/search=<search_id>/compact-<event_id>.parquet         merged by compact
    wal/<writer_id>-<first_seq>.wal                              live write-ahead logs

A file whose name starts with ``.`` is a temporary file: written, fsynced, then
renamed to its final name, so readers never see half a segment.
"""

from __future__ import annotations

import os
import uuid

from .wal import SUFFIX as WAL_SUFFIX
from .wal import fsync_dir

DEFAULT_STORE = ".hptrack"
_DICTIONARY_COLUMNS = ["type", "search_id", "writer_id", "trial_id", "metric", "split"]
ENV_VAR = "HPTRACK_STORE"


def resolve(store=None) -> str:
    """The absolute path of a store: ``store``, else $HPTRACK_STORE, else ./.hptrack."""
    if isinstance(store, Store):
        return store.root
    root = store if store is not None else os.environ.get(ENV_VAR) or DEFAULT_STORE
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


class Store:
    def __init__(self, store=None):
        self.root = resolve(store)
        self.events_dir = os.path.join(self.root, "events")
        self.wal_dir = os.path.join(self.root, "wal")

    def __repr__(self):
        return f"Store({self.root!r})"

    # --- listing ---------------------------------------------------------
    def _walk(self, top):
        if not os.path.isdir(top):
            return
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                yield os.path.join(dirpath, name)

    def segment_files(self) -> list[str]:
        return [p for p in self._walk(self.events_dir)
                if p.endswith(".parquet") and not os.path.basename(p).startswith(".")]

    def wal_files(self) -> list[str]:
        return [p for p in self._walk(self.wal_dir)
                if p.endswith(WAL_SUFFIX) and not os.path.basename(p).startswith(".")]

    def temp_files(self) -> list[str]:
        return [p for top in (self.events_dir, self.wal_dir) for p in self._walk(top)
                if os.path.basename(p).startswith(".")]

    def other_files(self) -> list[str]:
        known = set(self.segment_files()) | set(self.wal_files()) | set(self.temp_files())
        return [p for top in (self.events_dir, self.wal_dir) for p in self._walk(top) if p not in known]

    def partition_dir(self, search_id: str) -> str:
        return os.path.join(self.events_dir, f"search={search_id}")

    # --- writing ---------------------------------------------------------
    def write_segments(self, table, name: str) -> list[str]:
        """Write ``table`` as one file per search partition, each atomically."""
        search_ids = set(table.column("search_id").to_pylist())
        if len(search_ids) == 1:  # the common case, without importing pyarrow.compute (~40 ms)
            return [self.write_file(table, self.partition_dir(search_ids.pop()), name)]
        import pyarrow.compute as pc

        paths = []
        for search_id in sorted(search_ids):
            part = table.filter(pc.equal(table["search_id"], search_id))
            paths.append(self.write_file(part, self.partition_dir(search_id), name))
        return paths

    def write_file(self, table, directory: str, name: str, row_group_size: int | None = None) -> str:
        import pyarrow.parquet as pq

        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, name)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                # dictionaries only where values repeat a lot: smaller and faster
                pq.write_table(table, f, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS,
                               row_group_size=row_group_size)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(directory)
        return final
