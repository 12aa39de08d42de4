"""The per-writer write-ahead log: fsynced, checksummed records of rows.

A writer appends small batches of events here (one ``write`` and, when asked,
one ``fdatasync``), which is far cheaper than a Parquet file per batch; the log
is later sealed into Parquet segments and deleted. Readers read both.

File layout: the 8-byte magic ``HPTWAL01``, then records of
``<u32 length><u32 crc32><payload>``. The first record's payload is a JSON
header (writer id, schema version, pid, host); each later one is a JSON list of
rows. A crash can only tear the last record: reading stops at the first record
that is short or fails its checksum, and reports how many bytes it skipped.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"HPTWAL01"
SUFFIX = ".wal"
_HEAD = struct.Struct("<II")


def _frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def encode_rows(rows) -> bytes:
    return _frame(json.dumps(rows, separators=(",", ":"), allow_nan=True).encode())


class LogFile:
    """An open log being appended to by its one writer."""

    def __init__(self, path: str, header: dict):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.size = 0
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
    torn_bytes: int = 0      # bytes after the last good record
    problem: str | None = None  # set when the file is not a log at all


def read_log(path: str) -> LogContents:
    out = LogContents(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        out.problem = "not an hptrack log (bad magic)" if data else "empty file"
        out.torn_bytes = len(data)
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
            obj = json.loads(payload)
        except ValueError:
            break
        if first:
            out.header = obj
            first = False
        else:
            out.rows.extend(tuple(r) for r in obj)
        pos = start + length
    out.torn_bytes = end - pos
    if out.header is None:
        out.problem = "log header is missing or torn"
    return out


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
