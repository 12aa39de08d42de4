"""Where a store's files live, and the all-or-nothing write of a Parquet segment.

Layout of a store::

    events/search=<search_id>/<writer_id>-<first_seq>.parquet   sealed segments
    events/search=<search_id>/compact-<32 hex>.parquet           merged by compact (see _maintain/compaction.py)
    wal/<writer_id>-<first_seq>.wal                              live write-ahead logs
    views/search=<search_id>/<key>.{trials,params}.parquet       folds stored by compact

A store is a local folder or any fsspec URL (``s3://bucket/prefix``,
``gs://...``, ``memory://name``; ``file://`` means a local folder).

In a folder, a segment is written under a temporary name starting with ``.``,
fsynced, then renamed, so readers never see half of one. In object storage a
segment is one PUT, which the object store makes visible whole or not at all.
The write-ahead logs of a remote store stay on the writer's own disk (see
:func:`local_dir`): appends and fsyncs need a local file, and a log is sealed
into the bucket within about a second.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from typing import IO, TYPE_CHECKING, TypeAlias

from hptrack._files.wal import SUFFIX as WAL_SUFFIX
from hptrack._files.wal import file_kind, fsync_dir
from hptrack.errors import StoreError
from hptrack.schema import check_id

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

DEFAULT_STORE = ".hptrack"
_DICTIONARY_COLUMNS = ["type", "search_id", "writer_id", "trial_id", "metric", "split"]
ENV_VAR = "HPTRACK_STORE"
CACHE_ENV_VAR = "HPTRACK_CACHE_DIR"


def is_url(root: str) -> bool:
    """True for a remote fsspec URL (``file://`` and plain paths are local)."""
    return "://" in root and not root.startswith("file://")


def resolve(store: StoreLike = None) -> str:
    """A store's root: an absolute local path, or a URL without a trailing ``/``.

    ``store``, else $HPTRACK_STORE, else ./.hptrack."""
    if isinstance(store, Store):
        return store.root
    root = os.fspath(store if store is not None else os.environ.get(ENV_VAR) or DEFAULT_STORE)
    if root.startswith("file://"):
        root = root[len("file://"):]
    if is_url(root):
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def cache_home() -> str:
    """This machine's folder for hptrack's local state: ``$HPTRACK_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/hptrack``, else ``~/.cache/hptrack``."""
    return os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hptrack")


def local_dir(root: str) -> str:
    """This machine's folder for a remote store's write-ahead logs and lock:
    cache_home() / a name made from the URL."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", root)[-60:]
    return os.path.join(cache_home(), f"{slug}-{hashlib.sha256(root.encode()).hexdigest()[:12]}")


# what a ``store=`` argument accepts: a folder, an fsspec URL, a Store, or None
# for the default ($HPTRACK_STORE, else ./.hptrack)
StoreLike: TypeAlias = "str | os.PathLike[str] | Store | None"


class Store:
    """A store's files, local or remote. Paths it hands out are local paths or
    full URLs (``s3://bucket/prefix/events/...``), usable by DuckDB once
    :meth:`register` has been called on the connection."""

    def __init__(self, store: StoreLike = None) -> None:
        self.root = resolve(store)
        self.remote = is_url(self.root)
        self.events_dir = f"{self.root}/events" if self.remote else os.path.join(self.root, "events")
        self.views_dir = f"{self.root}/views" if self.remote else os.path.join(self.root, "views")
        if self.remote:
            import fsspec

            try:
                self.fs, self._root_key = fsspec.core.url_to_fs(self.root)
            except (ValueError, ImportError) as exc:
                raise StoreError(
                    f"cannot open the store {self.root} ({exc}) - a store is a folder or an fsspec URL "
                    "(s3://, gs://, memory://, file://); s3:// needs `pip install hptrack[s3]`, "
                    "gs:// `pip install hptrack[gcs]`") from None
            self.local_dir = local_dir(self.root)
        else:
            self.fs, self.local_dir = None, self.root
        self.wal_dir = os.path.join(self.local_dir, "wal")

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # --- remote paths --------------------------------------------------------
    def _key(self, path: str) -> str:
        """The filesystem's own name for ``path`` (a URL of this store)."""
        return self._root_key + path[len(self.root):]

    def _url(self, key: str) -> str:
        return self.root + key[len(self._root_key):]

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let the DuckDB connection ``con`` read this store's URLs."""
        if self.remote:
            con.register_filesystem(self.fs)

    # --- listing ---------------------------------------------------------
    def _walk(self, top):
        """The files under ``top``: every object of a bucket; in a local folder,
        only regular files (see :meth:`odd_files` for the rest)."""
        if self.is_remote_path(top):
            key = self._key(top)
            # Other writers and compactions add and delete files all the time. The
            # folders below ``top`` too: fsspec answers later look-ups of a file
            # (DuckDB's, for one) from its listing cache, which would not know it.
            self.fs.invalidate_cache(key)
            cache = getattr(self.fs, "dircache", None)
            if cache is not None:
                for k in [k for k in list(cache) if k.startswith(key + "/")]:
                    cache.pop(k, None)
            try:
                found = self.fs.find(key)
            except FileNotFoundError:
                return
            yield from (self._url(k) for k in sorted(found))
            return
        yield from _scan(top)[0]

    def segment_files(self) -> list[str]:
        return [p for p in self._walk(self.events_dir)
                if p.endswith(".parquet") and not os.path.basename(p).startswith(".")]

    def wal_files(self) -> list[str]:
        return [p for p in self._walk(self.wal_dir)
                if p.endswith(WAL_SUFFIX) and not os.path.basename(p).startswith(".")]

    def view_files(self) -> list[str]:
        """Stored folds of searches (_read/projections.py)."""
        return [p for p in self._walk(self.views_dir)
                if p.endswith(".parquet") and not os.path.basename(p).startswith(".")]

    def temp_files(self) -> list[str]:
        return [p for top in (self.events_dir, self.wal_dir, self.views_dir) for p in self._walk(top)
                if os.path.basename(p).startswith(".")]

    def other_files(self) -> list[str]:
        known = set(self.segment_files()) | set(self.wal_files()) | set(self.temp_files())
        return [p for top in (self.events_dir, self.wal_dir) for p in self._walk(top) if p not in known]

    def odd_files(self) -> list[tuple[str, str]]:
        """``(path, what it is)`` of each entry of a local folder of the store that
        is not a regular file: a link (hptrack never makes one, and never follows
        one out of the store), a FIFO or device (opening it may block or read
        forever), a socket, a folder named like a store file. Readers leave these
        out unopened; ``verify`` names them and ``--quarantine`` moves them."""
        tops = (self.wal_dir,) if self.remote else (self.events_dir, self.wal_dir, self.views_dir)
        return [entry for top in tops for entry in _scan(top)[1]]

    def partition_dir(self, search_id: str) -> str:
        """The folder of a search's segments; ValueError for an id that could not
        name a folder (hptrack.schema.check_id, as readers apply it): no id may
        name a folder outside events/."""
        check_id("search_id", search_id, ValueError, reading=True)
        if self.remote:
            return f"{self.events_dir}/search={search_id}"
        return os.path.join(self.events_dir, f"search={search_id}")

    def found(self) -> bool:
        """Whether the store exists: a folder, or a prefix holding objects."""
        if self.remote:  # objects in the bucket, or logs not yet sealed into it
            self.fs.invalidate_cache(self._root_key)
            return self.fs.exists(self._root_key) or os.path.isdir(self.wal_dir)
        return os.path.isdir(self.root)

    def relative(self, path: str) -> str:
        """``path`` relative to the store (a remote store's logs: to their local folder)."""
        for base in (self.root, self.local_dir):
            if path.startswith(base + "/"):
                return path[len(base) + 1:]
        return os.path.relpath(path, self.root)

    # --- single files ----------------------------------------------------
    def is_remote_path(self, path: str) -> bool:
        """Whether ``path`` is in this store's bucket (a remote store's logs are local)."""
        return self.remote and (path == self.root or path.startswith(self.root + "/"))

    def exists(self, path: str) -> bool:
        if self.is_remote_path(path):
            return self.fs.exists(self._key(path))
        return os.path.lexists(path)  # a dangling link is there too (to be quarantined)

    def size(self, path: str) -> int:
        if self.is_remote_path(path):
            return self.fs.size(self._key(path))
        return os.path.getsize(path)

    def modified(self, path: str) -> float:
        """When ``path`` was last written, in seconds since the epoch (an object
        store's clock for its objects); FileNotFoundError if it is gone."""
        if self.is_remote_path(path):
            return self.fs.modified(self._key(path)).timestamp()
        return os.stat(path).st_mtime

    def open(self, path: str) -> IO[bytes]:
        """A binary file object for reading ``path``."""
        if self.is_remote_path(path):
            return self.fs.open(self._key(path), "rb")
        return open(path, "rb")

    def parquet_file(self, path: str) -> pq.ParquetFile:
        """``path`` opened as a pyarrow ParquetFile (footer read, data on demand)."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.open(path) if self.is_remote_path(path) else path)

    def read_metadata(self, path: str) -> pq.FileMetaData:
        """The Parquet footer of ``path`` (pyarrow FileMetaData)."""
        return self.parquet_file(path).metadata

    def remove(self, path: str) -> None:
        """Delete ``path``; FileNotFoundError if it is already gone."""
        if self.is_remote_path(path):
            key = self._key(path)
            if not self.fs.exists(key):
                raise FileNotFoundError(path)
            self.fs.rm_file(key)
        else:
            os.unlink(path)

    def move(self, path: str, target: str) -> None:
        """Move a file within the store (quarantine). Not atomic in object
        storage (copy, then delete), which is fine for a file being set aside."""
        if self.is_remote_path(path):
            self.fs.mv(self._key(path), self._key(target))
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(path, target)

    def sync_dir(self, directory: str) -> None:
        """Make renames and deletes in a local folder durable (object stores need nothing)."""
        if not self.is_remote_path(directory):
            fsync_dir(directory)

    # --- writing ---------------------------------------------------------
    def write_segments(self, table: pa.Table, name: str) -> list[str]:
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

    def write_file(self, table: pa.Table, directory: str, name: str, row_group_size: int | None = None) -> str:
        if self.is_remote_path(directory):
            return self._put_file(table, directory, name, row_group_size)
        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, name)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                _write_parquet(table, f, row_group_size)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(directory)
        return final

    def _put_file(self, table, directory: str, name: str, row_group_size: int | None) -> str:
        """One PUT of the whole file: the object store shows all of it or nothing."""
        import pyarrow as pa

        final = f"{directory}/{name}"
        sink = pa.BufferOutputStream()
        _write_parquet(table, sink, row_group_size)
        try:
            self.fs.pipe_file(self._key(final), sink.getvalue().to_pybytes())
        except OSError:
            raise
        except Exception as exc:  # botocore and friends: the writer retries on OSError
            raise OSError(f"could not put {final}: {exc}") from exc
        return final


# a folder with one of these names is not a store file, and is not entered
_FILE_SUFFIXES = (".parquet", ".wal", ".tmp")


def _scan(top: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(regular files, [(path, what it is)] of every other entry) under the local
    folder ``top``, in sorted order, from directory entries alone: nothing is
    opened or followed."""
    files: list[str] = []
    odd: list[tuple[str, str]] = []
    if not os.path.isdir(top):
        return files, odd
    todo = [top]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            odd.append((folder, f"a folder that cannot be listed ({exc.strerror})"))
            continue
        subfolders = []
        for e in entries:
            try:
                if e.is_symlink():
                    odd.append((e.path, f"a symbolic link (to {os.readlink(e.path)}); hptrack never makes "
                                        "links and never follows one"))
                elif e.is_dir(follow_symlinks=False):
                    if e.name.endswith(_FILE_SUFFIXES):
                        odd.append((e.path, "a folder, where a file of that name belongs"))
                    else:
                        subfolders.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    files.append(e.path)
                else:
                    odd.append((e.path, file_kind(e.stat(follow_symlinks=False).st_mode)))
            except FileNotFoundError:
                continue  # removed since it was listed
        todo.extend(reversed(subfolders))
    return files, odd


def _write_parquet(table, sink, row_group_size) -> None:
    import pyarrow.parquet as pq

    # dictionaries only where values repeat a lot: smaller and faster
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS,
                   row_group_size=row_group_size)
