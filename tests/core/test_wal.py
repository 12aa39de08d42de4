"""The write-ahead log format: framing, torn tails, and a decoder that runs no code."""

import os
import pickle

from hptrack._files.wal import LogFile, _frame, encode_rows, read_log

ROW = (1_764_230_000_000_000, "annotation", "s", None, None, None, None, None, None, None,
       None, [["lr", "float", 0.1, None]], '{"text":"hi"}')


def test_rows_round_trip_and_torn_tail_is_reported(tmp_path):
    path = str(tmp_path / "w-000000000000.wal")
    log = LogFile(path, {"writer_id": "ab" * 8, "schema_version": 1})
    log.append(encode_rows(0, [ROW, ROW]), sync=True)
    log.append(encode_rows(2, [ROW])[:-3], sync=True)  # a record cut by a crash
    log.close()
    got = read_log(path)
    assert got.header["encoding"] == "pickle5" and got.problem is None
    assert got.rows == [(0, *ROW), (1, *ROW)]   # seq restored from the record's first seq
    assert got.torn_bytes == len(encode_rows(2, [ROW])) - 3


class Boom:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/should-never-exist-hptrack",))


def test_a_record_naming_a_global_is_refused_not_run(tmp_path):
    path = str(tmp_path / "w-000000000000.wal")
    log = LogFile(path, {"writer_id": "ab" * 8, "schema_version": 1})
    log.append(encode_rows(0, [ROW]), sync=True)
    log.append(_frame(pickle.dumps((1, [Boom()]), protocol=5)), sync=True)
    log.close()
    got = read_log(path)
    assert got.rows == [(0, *ROW)]      # the bad record is skipped (it passed its checksum) and named
    assert got.damaged and "posix.mkdir" in got.bad_records[0][1]
    assert not os.path.exists("/tmp/should-never-exist-hptrack")
