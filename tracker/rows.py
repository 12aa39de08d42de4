"""Rows (the writer's in-memory form of events) to Arrow tables, and event ids.

An event id is a UUIDv7 derived from ``(ts, writer_id, seq)``: 48 bits of
milliseconds, 12 bits of sub-millisecond time, then 30 bits of the writer id and
the low 32 bits of seq. It is time-ordered like any UUIDv7, unique because a
writer's seq is, and — being a pure function of the row — identical wherever the
same event is materialised twice (a log sealed twice, a compaction cut short),
which is what lets readers de-duplicate on it.
"""

from __future__ import annotations

from .schema import COLUMNS, SCHEMA_VERSION, arrow_schema

_SCHEMA = None


def schema():
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = arrow_schema()
    return _SCHEMA


def writer_key(writer_id: str) -> int:
    return int(writer_id[:8], 16) >> 2


def event_id(ts_us: int, key: int, seq: int) -> str:
    ms, sub_us = divmod(ts_us, 1000)
    rand_a = sub_us * 4096 // 1000
    rand_b = (key << 32) | (seq & 0xFFFFFFFF)
    x = ((ms & 0xFFFFFFFFFFFF) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{x:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_table(rows, writer_id: str, version: int = SCHEMA_VERSION):
    """An Arrow table in the stored schema from rows of one writer."""
    import pyarrow as pa

    sch = schema()
    if not rows:
        return sch.empty_table()
    cols = list(zip(*rows))
    seqs, tss = cols[0], cols[1]
    key = writer_key(writer_id)
    n = len(rows)
    params = [
        None if ps is None else [{"name": p[0], "kind": p[1], "num": p[2], "str": p[3]} for p in ps]
        for ps in cols[12]
    ]
    data = {
        "event_id": [event_id(t, key, s) for t, s in zip(tss, seqs)],
        "schema_version": [version] * n,
        "ts": tss,
        "writer_id": [writer_id] * n,
        "seq": seqs,
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
    arrays = [pa.array(data[name], type=sch.field(name).type, from_pandas=False) for name in COLUMNS]
    return pa.Table.from_arrays(arrays, schema=sch)
