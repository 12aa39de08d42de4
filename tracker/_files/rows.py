"""Rows (the writer's in-memory form of events) to Arrow tables, and event ids.

An event id is a pure function of ``(ts, writer_id, seq)`` — identical
wherever the same event is materialised twice (a log sealed twice, a
compaction cut short), which is what lets readers de-duplicate on it — and
time-ordered as text. Its form follows the rows' schema version:

- v2 (52 characters): ``tttttttt-tttt-7sss-<writer_id>-<seq>``, the time
  prefix of a UUIDv7 (48 bits of ms since the epoch, the version digit 7, 12
  bits of sub-millisecond time), then the full 16 hex digits of the writer id
  and the seq as 16 hex digits. Unique by construction, since (writer_id, seq)
  is.
- v1 (36 characters, a UUIDv7): the same time prefix, then only 30 bits of the
  writer id and the low 32 bits of seq, so two writers could collide. Rows of
  a v1 log still get v1 ids when sealed, so they match any copy an old writer
  sealed already.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from hptrack.schema import COLUMNS, ID_MAX_BYTES, ID_UNSAFE_RE2, SCHEMA_VERSION, arrow_schema, id_problem

_SCHEMA = None
WRITER_ID = re.compile(r"[0-9a-f]{16}")

if TYPE_CHECKING:
    import pyarrow as pa


def schema() -> pa.Schema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = arrow_schema()
    return _SCHEMA


def writer_key(writer_id: str) -> int:
    """The 30 bits of a writer id that a v1 event id holds."""
    return int(writer_id[:8], 16) >> 2


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# where the 32 hex digits go in the 36-character text form
_DIGIT_SLOTS = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]
V1_LENGTH, V2_LENGTH = 36, 52


def _hex_digits(words):
    """(n, 16) ASCII hex digits of uint64 ``words``, most significant first."""
    n = len(words)
    raw = words.astype(">u8").view(np.uint8).reshape(n, 8)
    digits = np.empty((n, 16), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    return digits


def event_ids(ts_us: Any, writer_id: str, seqs: Any, version: int = SCHEMA_VERSION) -> pa.Array:
    """Event ids (a pyarrow string array) for rows of one writer, vectorised."""
    import pyarrow as pa

    if not isinstance(writer_id, str) or not WRITER_ID.fullmatch(writer_id):
        raise ValueError(f"writer id {writer_id!r:.40} is not 16 lowercase hex digits")
    ts = np.asarray(ts_us, dtype=np.int64)
    ms, sub_us = np.divmod(ts, 1000)
    rand_a = (sub_us * 4096 // 1000).astype(np.uint64)
    hi = ((ms.astype(np.uint64) & np.uint64(0xFFFFFFFFFFFF)) << np.uint64(16)) | np.uint64(0x7000) | rand_a
    seq = np.asarray(seqs, dtype=np.int64).astype(np.uint64)
    n = len(ts)
    if version < 2:
        lo = np.uint64(0b10 << 62) | np.uint64(writer_key(writer_id) << 32) | (seq & np.uint64(0xFFFFFFFF))
        width = V1_LENGTH
        text = np.full((n, width), ord("-"), dtype=np.uint8)
        text[:, _DIGIT_SLOTS] = np.concatenate([_hex_digits(hi), _hex_digits(lo)], axis=1)
    else:
        width = V2_LENGTH
        text = np.full((n, width), ord("-"), dtype=np.uint8)
        text[:, _DIGIT_SLOTS[:16]] = _hex_digits(hi)
        text[:, 19:35] = np.frombuffer(writer_id.encode(), dtype=np.uint8)
        text[:, 36:52] = _hex_digits(seq)
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def to_table(rows: list[tuple], writer_id: str, version: int = SCHEMA_VERSION,
             first_seq: int | None = None) -> pa.Table:
    """An Arrow table in the stored schema from rows of one writer.

    Each row starts with its seq, or, given ``first_seq``, rows have no seq and
    are numbered from it (the writer's own form)."""
    import pyarrow as pa

    sch = schema()
    if not rows:
        return sch.empty_table()
    cols: list = list(zip(*rows))
    if first_seq is None:
        seqs = np.asarray(cols[0], dtype=np.int64)
    else:
        seqs = np.arange(first_seq, first_seq + len(rows), dtype=np.int64)
        cols.insert(0, None)
    tss = cols[1]
    n = len(rows)
    params = _params_array(cols[12], sch.field("params").type)
    data = {
        "event_id": event_ids(tss, writer_id, seqs, version),
        "schema_version": [version] * n,
        "ts": tss,
        "writer_id": [writer_id] * n,
        "seq": pa.array(seqs, pa.int64()),
        "search_id": cols[3],
        "trial_id": cols[4],
        "trial_number": cols[5],
        "type": cols[2],
        "step": cols[6],
        "resource": cols[7],
        "value": cols[8],
        "metric": cols[9],
        "split": cols[10],
        "fold": cols[11],
        "params": params,
        "payload": cols[13],
    }
    arrays = [data[name] if isinstance(data[name], pa.Array)
              else pa.array(data[name], type=sch.field(name).type, from_pandas=False) for name in COLUMNS]
    return pa.Table.from_arrays(arrays, schema=sch)


def _params_array(column, list_type):
    """The params column from each row's list of ``[name, kind, num, str]``:
    built from flat child arrays, several times faster than a dict per param."""
    import pyarrow as pa

    offsets = [0]
    nulls = []
    flat = []
    for ps in column:
        nulls.append(ps is None)
        if ps:
            flat.extend(ps)
        offsets.append(len(flat))
    struct_type = list_type.value_type
    children = list(zip(*flat)) if flat else [(), (), (), ()]
    values = pa.StructArray.from_arrays(
        [pa.array(c, type=struct_type.field(i).type, from_pandas=False) for i, c in enumerate(children)],
        fields=list(struct_type),
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=list_type,
                                    mask=pa.array(nulls, pa.bool_()))


# --- rows read back from a log ---------------------------------------------------

def log_rows_table(rows: list[tuple], writer_id: str, version: int) -> tuple[pa.Table, list[tuple[int, str]]]:
    """A log's rows as a table in the stored schema, leaving out each row that
    breaks the event rules (a log of an old or hostile writer: an unsafe id, text
    that is not valid Unicode, a value of the wrong type), so that one bad row
    never hides the others. Returns ``(table, [(seq, reason), ...])`` for the rows
    left out. Raises ValueError only if no row can be read (a bad writer id)."""
    tables, bad = _convertible(rows, writer_id, version)
    import pyarrow as pa

    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    table, bad_ids = _drop_bad_ids(table)
    return table, sorted(bad + bad_ids, key=lambda b: (not isinstance(b[0], int), b[0]))


def _convertible(rows, writer_id, version):
    """(tables, bad rows): rows that convert, found by halving, so that a few bad
    rows among many cost a few conversions each, not one per row."""
    try:
        return [to_table(rows, writer_id, version)], []
    except Exception as exc:
        if not rows:
            raise
        event_ids([0], writer_id, [0], version)  # a bad writer id spoils every row: raise it
        if len(rows) == 1:
            row = rows[0]
            seq = row[0] if isinstance(row, (tuple, list)) and row else None
            why = ("holds text that is not valid Unicode (a lone surrogate)" if isinstance(exc, UnicodeError)
                   else f"does not fit the event schema ({type(exc).__name__}: {str(exc)[:120]})")
            return [], [(seq, why)]
    half = len(rows) // 2
    t1, b1 = _convertible(rows[:half], writer_id, version)
    t2, b2 = _convertible(rows[half:], writer_id, version)
    return (t1 + t2) or [schema().empty_table()], b1 + b2


def _drop_bad_ids(table):
    """``table`` without rows whose ids could not name a folder or a file pattern
    (a search_id that is null or empty; either id holding a character of
    ``ID_UNSAFE_RE2`` or longer than ID_MAX_BYTES), and ``(seq, reason)`` of those rows."""
    import pyarrow.compute as pc

    if not table.num_rows:
        return table, []

    def unsafe(ids):
        return pc.or_(pc.match_substring_regex(ids, ID_UNSAFE_RE2), pc.greater(pc.binary_length(ids), ID_MAX_BYTES))

    sid = table["search_id"]
    bad = pc.or_kleene(pc.or_kleene(pc.is_null(sid), pc.equal(pc.binary_length(sid), 0)), unsafe(sid))
    bad = pc.fill_null(pc.or_kleene(bad, pc.fill_null(unsafe(table["trial_id"]), False)), True)
    if not pc.any(bad).as_py():
        return table, []
    rejected = table.filter(bad)
    reasons = []
    for seq, s, t in zip(*(rejected[c].to_pylist() for c in ("seq", "search_id", "trial_id"))):
        field, value, why = "search_id", s, id_problem(s, reading=True)
        if why is None:
            field, value, why = "trial_id", t, id_problem(t, reading=True)
        reasons.append((seq, f"{field} {value!r:.60} is not a valid id: {why}"))
    return table.filter(pc.invert(bad)), reasons


def describe_bad_rows(bad: list[tuple[int, str]], kept: int, shown: int = 3) -> str:
    """What a reader says of a log's rows that :func:`log_rows_table` left out."""
    listed = "; ".join(f"seq {seq}: {why}" for seq, why in bad[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    return (f"{len(bad)} of its records break the event rules and are left out ({listed}{more}); "
            f"its other {kept} events are read")
