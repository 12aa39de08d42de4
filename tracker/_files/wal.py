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

import errno
import io
import json
import os
import pickle
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field

from hptrack.schema import ROW_FIELDS

MAGIC = b"HPTWAL01"
SUFFIX = ".wal"
_HEAD = struct.Struct("<II")

# Caps (schemas/README.md). A reader refuses what is over them without reading it,
# and the writer never makes it: it splits a batch into records of at most
# MAX_RECORD_BYTES, starts a new log once one holds ROTATE_LOG_BYTES, and refuses
# an event larger than MAX_EVENT_BYTES when it is appended.
MAX_HEADER_BYTES = 64 << 10
MAX_RECORD_BYTES = 64 << 20
MAX_EVENT_BYTES = 32 << 20
ROTATE_LOG_BYTES = 256 << 20
MAX_LOG_BYTES = 4 << 30  # a rotation plus one flush batch of events fits far below
_WRITER_ID = re.compile(r"[0-9a-f]{16,64}")


def _frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


ENCODING = "pickle5"


def encode_rows(first_seq: int, rows: list[tuple]) -> bytes:
    """Records of ``rows`` (without seq) numbered from ``first_seq``: one, or
    several if one would be larger than MAX_RECORD_BYTES."""
    payload = pickle.dumps((first_seq, rows), protocol=5)
    if len(payload) <= MAX_RECORD_BYTES:
        return _frame(payload)
    if len(rows) < 2:  # check_event_size refuses such an event before it is appended
        raise ValueError(f"an event of {len(payload)} bytes cannot be logged (at most {MAX_EVENT_BYTES})")
    half = len(rows) // 2
    return encode_rows(first_seq, rows[:half]) + encode_rows(first_seq + half, rows[half:])


def check_event_size(row: tuple) -> None:
    """Refuse an event (a row) that could not fit in one log record.

    Costs a few type checks per event: only strings and params can be large,
    and the exact (pickled) size is measured only when they might be."""
    chars = 0
    for v in row:
        if type(v) is str:
            chars += len(v)
        elif type(v) is list:  # params: (name, kind, num, str)
            chars += sum(len(p[0]) + len(p[3] or "") + 64 for p in v)
    if chars * 4 + 4096 <= MAX_EVENT_BYTES:  # a character is at most 4 bytes of UTF-8
        return
    size = len(pickle.dumps(row, protocol=5))
    if size > MAX_EVENT_BYTES:
        from hptrack.errors import InvalidEvent

        raise InvalidEvent(f"event too large: {size / 2**20:.1f} MiB of payload and params, at most "
                           f"{MAX_EVENT_BYTES >> 20} MiB per event; store large artefacts in a file "
                           "and put its path in the payload")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name: str):
        raise pickle.UnpicklingError(f"log records hold plain values only, not {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("log records hold no persistent ids")


def _decode_rows(payload: bytes) -> list:
    """A record's rows, each with its seq first; ValueError if it is not a batch of rows."""
    try:
        batch = _PlainUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # any opcode can fail in its own way (BUILD, REDUCE, EXT...)
        raise ValueError(f"does not unpickle ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not (type(batch) is tuple and len(batch) == 2 and type(batch[0]) is int and type(batch[1]) is list
            and 0 <= batch[0] < 2**63):
        raise ValueError(f"holds a {type(batch).__name__}, not (first_seq, rows)")
    first, rows = batch
    width = len(ROW_FIELDS) - 1
    for r in rows:
        if type(r) is not tuple or len(r) != width:
            raise ValueError(f"holds a row that is not a tuple of {width} fields")
    if first + len(rows) > 2**63:
        raise ValueError("its seq numbers overflow")
    return [(first + i, *r) for i, r in enumerate(rows)]


def _parse_header(payload: bytes) -> dict:
    """The log header; ValueError naming what is wrong with it."""
    try:
        header = json.loads(payload)
    except (ValueError, RecursionError):
        raise ValueError("its header is not JSON") from None
    if type(header) is not dict:
        what = {type(None): "null", list: "an array", str: "a string", bool: "a boolean"}.get(type(header), "a number")
        raise ValueError(f"its header is {what}, not a JSON object")
    if type(header.get("writer_id")) is not str or not _WRITER_ID.fullmatch(header["writer_id"]):
        raise ValueError("its header has no valid writer_id (16 or more lowercase hex digits)")
    if header.get("encoding") != ENCODING:
        raise ValueError(f"unknown log encoding {str(header.get('encoding'))[:40]!r}")
    version = header.get("schema_version", 1)
    if type(version) is not int:
        raise ValueError("its header's schema_version is not an integer")
    return header


class LogFile:
    """An open log being appended to by its one writer."""

    def __init__(self, path: str, header: dict) -> None:
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
    # (byte offset, what is wrong) of each record that passes its checksum but is not
    # a batch of rows, or claims more than MAX_RECORD_BYTES; reading skips past the first kind
    bad_records: list = field(default_factory=list)
    regular: bool = True     # False: not a regular file (never read, nor probed for a writer)


def read_log(path: str) -> LogContents:
    """What the log at ``path`` holds, read record by record (never more than
    MAX_RECORD_BYTES at once). FileNotFoundError if it is gone; anything else
    wrong with the file is ``problem``. A FIFO, device or link is not opened for
    reading (O_NONBLOCK, O_NOFOLLOW), and a file over MAX_LOG_BYTES is not read."""
    out = LogContents(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        out.regular = False
        out.problem = "a symbolic link, which hptrack never follows" if exc.errno == errno.ELOOP else (
            f"cannot be opened ({exc.strerror})")
        return out
    with open(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            out.regular = False
            out.problem = f"not a regular file but {file_kind(info.st_mode)}"
            return out
        out.size = info.st_size
        if out.size > MAX_LOG_BYTES:
            out.problem = (f"{out.size} bytes, more than the {MAX_LOG_BYTES >> 30} GiB a log may hold "
                           "(hptrack writes none that large), so it is not read")
            return out
        try:
            _read_records(f, out)
        except OSError as exc:
            out.problem = f"cannot be read ({exc.strerror or exc})"
    return out


def _read_records(f, out: LogContents) -> None:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        out.problem = "not an hptrack log (bad magic)" if magic else "empty file"
        out.torn_bytes = out.size
        out.cut_at_creation = out.size < len(MAGIC) and MAGIC.startswith(magic)
        return
    pos, end = len(MAGIC), out.size
    while end - pos >= _HEAD.size:
        length, crc = _HEAD.unpack(f.read(_HEAD.size))
        cap = MAX_HEADER_BYTES if out.header is None else MAX_RECORD_BYTES
        if length > cap:
            out.bad_records.append((pos, f"claims {length} bytes, more than the {cap} a record may hold"))
            break
        if length == 0:
            break  # a writer never writes an empty record: zeros, a torn or preallocated tail
        payload = f.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            if out.header is None:
                out.header = _parse_header(payload)
            else:
                out.rows.extend(_decode_rows(payload))
        except ValueError as exc:
            if out.header is None:
                out.problem = f"{exc}"
                return
            # checksummed, so written this way: not a torn write; the records after it are intact
            out.bad_records.append((pos, f"passes its checksum but {exc}"))
        pos += _HEAD.size + length
    out.torn_bytes = end - pos
    if out.header is None:
        out.problem = ("log header claims more bytes than a header may hold" if out.bad_records
                       else "log header is missing or torn")
        out.cut_at_creation = not out.bad_records and _record_cut(f, len(MAGIC), end)
    elif out.bad_records:
        out.damaged = True
    elif out.torn_bytes:
        out.damaged = _intact_record_after(f, pos, end)


def _record_cut(f, pos: int, end: int) -> bool:
    """Whether the record at ``pos`` runs past the end of the file (a torn write)."""
    if end - pos < _HEAD.size:
        return True
    f.seek(pos)
    length, _ = _HEAD.unpack(f.read(_HEAD.size))
    return length > end - pos - _HEAD.size


def _intact_record_after(f, pos: int, end: int) -> bool:
    """True when the bad record at ``pos`` is followed by an intact one: damage
    in the middle of a log, not a torn tail (a crash can only cut the last)."""
    if end - pos < _HEAD.size:
        return False
    f.seek(pos)
    length, _ = _HEAD.unpack(f.read(_HEAD.size))
    nxt = pos + _HEAD.size + length
    if nxt + _HEAD.size > end:
        return False
    f.seek(nxt)
    length2, crc2 = _HEAD.unpack(f.read(_HEAD.size))
    if not 0 < length2 <= MAX_RECORD_BYTES:
        return False
    payload = f.read(length2)
    return len(payload) == length2 and zlib.crc32(payload) == crc2


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (from its ``st_mode``)."""
    import stat

    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO): reading it may wait forever"),
                       (stat.S_ISCHR, "a device: reading it may never end"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return "not a regular file"
