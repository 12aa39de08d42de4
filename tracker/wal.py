"""The per-writer write-ahead log: fsynced, checksummed records of rows.

A writer appends small batches of events here (one ``write`` and, when asked,
one ``fdatasync``), which is far cheaper than a Parquet file per batch; the log
is later sealed into Parquet segments and deleted. Readers read both.

File layout: the 8-byte magic ``HPTWAL01``, then records of
``<u32 length><u32 crc32><payload>``. The first record's payload is a JSON
header (writer id, schema version, pid, host, encoding); each later one is
``(first_seq, rows)``, rows without their seq (row i has seq first_seq + i),
pickled: protocol 5 is five times cheaper to write than JSON, which matters
because it is on every trial's path. The unpickler refuses every global, so a log can
hold only plain values and reading one cannot run code. A crash can only tear
the last record: reading stops at the first record that is short or fails its
checksum, and reports how many bytes it skipped.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"HPTWAL01"
SUFFIX = ".wal"
_HEAD = struct.Struct("<II")


def _frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


ENCODING = "pickle5"


def encode_rows(first_seq: int, rows) -> bytes:
    """One record: ``rows`` (without seq) numbered from ``first_seq``."""
    return _frame(pickle.dumps((first_seq, rows), protocol=5))


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"log records hold plain values only, not {module}.{name}")


def _decode_rows(payload: bytes, encoding: str) -> list:
    """A record's rows, each with its seq first."""
    if encoding != ENCODING:
        raise ValueError(f"unknown log encoding {encoding!r}")
    first, rows = _PlainUnpickler(io.BytesIO(payload)).load()
    return [(first + i, *r) for i, r in enumerate(rows)]


class LogFile:
    """An open log being appended to by its one writer."""

    def __init__(self, path: str, header: dict):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.size = 0
        header = {**header, "encoding": ENCODING}
        try:
            self.append(MAGIC + _frame(json.dumps(header).encode()), sync=True)
            fsync_dir(os.path.dirname(path))
        except BaseException:
            self.close()
            os.unlink(path)  # nothing of ours is in it yet
            raise

    def append(self, data: bytes, sync: bool) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)
        if sync:
            os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class LogContents:
    path: str
    header: dict | None = None
    rows: list = field(default_factory=list)
    size: int = 0
    torn_bytes: int = 0      # bytes after the last good record
    problem: str | None = None  # set when the file is not a log at all
    cut_at_creation: bool = False  # empty, or magic/header cut short: holds nothing
    damaged: bool = False    # a bad record followed by an intact one: not a crash's torn tail


def read_log(path: str) -> LogContents:
    out = LogContents(path)
    with open(path, "rb") as f:
        data = f.read()
    out.size = len(data)
    if not data.startswith(MAGIC):
        out.problem = "not an hptrack log (bad magic)" if data else "empty file"
        out.torn_bytes = len(data)
        out.cut_at_creation = MAGIC.startswith(data)
        return out
    pos, end = len(MAGIC), len(data)
    first = True
    while pos < end:
        if end - pos < _HEAD.size:
            break
        length, crc = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        payload = data[start:start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            if first:
                out.header = json.loads(payload)
                first = False
            else:
                out.rows.extend(_decode_rows(payload, out.header.get("encoding")))
        except (ValueError, pickle.UnpicklingError, EOFError, TypeError):
            break
        pos = start + length
    out.torn_bytes = end - pos
    if out.header is None:
        out.problem = "log header is missing or torn"
        out.cut_at_creation = _record_cut(data, len(MAGIC))
    elif out.torn_bytes:
        out.damaged = _intact_record_after(data, pos)
    return out


def _record_cut(data: bytes, pos: int) -> bool:
    """Whether the record at ``pos`` runs past the end of the data (a torn write)."""
    if len(data) - pos < _HEAD.size:
        return True
    length, _ = _HEAD.unpack_from(data, pos)
    return length > len(data) - pos - _HEAD.size


def _intact_record_after(data: bytes, pos: int) -> bool:
    """True when the bad record at ``pos`` is followed by an intact one: damage
    in the middle of a log, not a torn tail (a crash can only cut the last)."""
    if len(data) - pos < _HEAD.size:
        return False
    length, _ = _HEAD.unpack_from(data, pos)
    nxt = pos + _HEAD.size + length
    if nxt + _HEAD.size > len(data):
        return False
    length2, crc2 = _HEAD.unpack_from(data, nxt)
    payload = data[nxt + _HEAD.size:nxt + _HEAD.size + length2]
    return len(payload) == length2 and length2 > 0 and zlib.crc32(payload) == crc2


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
