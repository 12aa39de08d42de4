"""Rows (the writer's in-memory form of events) to Arrow tables, and event ids.

An event id is a UUIDv7 derived from ``(ts, writer_id, seq)``: 48 bits of
milliseconds, 12 bits of sub-millisecond time, then 30 bits of the writer id and
the low 32 bits of seq. It is time-ordered like any UUIDv7, unique because a
writer's seq is, and — being a pure function of the row — identical wherever the
same event is materialised twice (a log sealed twice, a compaction cut short),
which is what lets readers de-duplicate on it.
"""

from __future__ import annotations

import numpy as np

from .schema import COLUMNS, SCHEMA_VERSION, arrow_schema

_SCHEMA = None


def schema():
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = arrow_schema()
    return _SCHEMA


def writer_key(writer_id: str) -> int:
    return int(writer_id[:8], 16) >> 2


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# where the 32 hex digits go in the 36-character text form
_DIGIT_SLOTS = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


def event_ids(ts_us, key: int, seqs):
    """Event ids (a pyarrow string array) for rows of one writer, vectorised."""
    import pyarrow as pa

    ts = np.asarray(ts_us, dtype=np.int64)
    ms, sub_us = np.divmod(ts, 1000)
    rand_a = (sub_us * 4096 // 1000).astype(np.uint64)
    hi = ((ms.astype(np.uint64) & np.uint64(0xFFFFFFFFFFFF)) << np.uint64(16)) | np.uint64(0x7000) | rand_a
    lo = (np.uint64(0b10 << 62) | np.uint64(key << 32)
          | (np.asarray(seqs, dtype=np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)))
    n = len(ts)
    raw = np.empty((n, 16), dtype=np.uint8)
    raw[:, :8] = hi.astype(">u8").view(np.uint8).reshape(n, 8)
    raw[:, 8:] = lo.astype(">u8").view(np.uint8).reshape(n, 8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _DIGIT_SLOTS] = digits
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def to_table(rows, writer_id: str, version: int = SCHEMA_VERSION, first_seq: int | None = None):
    """An Arrow table in the stored schema from rows of one writer.

    Each row starts with its seq, or, given ``first_seq``, rows have no seq and
    are numbered from it (the writer's own form)."""
    import pyarrow as pa

    sch = schema()
    if not rows:
        return sch.empty_table()
    cols = list(zip(*rows))
    if first_seq is None:
        seqs = np.asarray(cols[0], dtype=np.int64)
    else:
        seqs = np.arange(first_seq, first_seq + len(rows), dtype=np.int64)
        cols.insert(0, None)
    tss = cols[1]
    key = writer_key(writer_id)
    n = len(rows)
    params = _params_array(cols[12], sch.field("params").type)
    data = {
        "event_id": event_ids(tss, key, seqs),
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
