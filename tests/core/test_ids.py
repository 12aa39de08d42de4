"""Ids, hostile logs, event ids and stored text (issue 13, items 3, 4, 7).

- A search_id / trial_id is refused at every entry point unless it is a safe id
  (hptrack.schema.check_id): it can never hide a process's other events, name a
  folder outside the store, or act as a DuckDB glob.
- A log of an old or hostile writer holding bad rows is read without them: the
  rows are named, the others kept, and compact writes nothing outside the store.
- Hand-made partition folders with glob characters are read once.
- Event ids hold the whole writer id and seq, so no two events share one.
- Any Python string stored as free text (payload, error, param value) reads back
  exactly, or as its documented escape (lone surrogates as \\udXXX text).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import warnings

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hptrack
from hptrack._files.rows import to_table
from hptrack._files.wal import LogFile, encode_rows
from hptrack._write.writer import Writer
from hptrack.schema import ID_MAX_BYTES, storable

BAD_IDS = {
    "surrogate": "a\ud800",
    "nul": "a\x00b",
    "newline": "a\nb",
    "dotdot-slash": "../../../escaped",
    "slash": "a/b",
    "backslash": "a\\b",
    "dotdot": "..",
    "star": "*",
    "bracket": "[a]",
    "question": "a?",
    "brace": "{a,b}",
    "line-separator": "a\u2028b",
    "too-long": "x" * (ID_MAX_BYTES + 1),
    "too-many-bytes": "\U0001f389" * 51,  # 51 characters, 204 bytes: no file name could hold search=<it>
}


def _tree(root) -> set[str]:
    """Every path under ``root``, relative to it."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def _count(store) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hptrack.connect(store).sql("SELECT count(*) FROM events").fetchall()[0][0]


def _entry_points():
    def score_search(s, t, bad):
        hptrack.score_trial(bad, t.trial_id, 0.5, store=s.writer.store.root)

    def score_trial(s, t, bad):
        hptrack.score_trial(s.search_id, bad, 0.5, store=s.writer.store.root)

    def trial_id(s, t, bad):
        s.trial({"a": 1}, trial_id=bad)

    def write_search(s, t, bad):
        s.writer.write({"type": "annotation", "search_id": bad, "payload": {}})

    def write_trial(s, t, bad):
        s.writer.write({"type": "trial_started", "search_id": s.search_id, "trial_id": bad})

    def attach(s, t, bad):
        hptrack.Trial.attach(s, bad, 0).complete(1.0)

    return {"Trial.attach": attach, "score_trial(search_id)": score_search, "score_trial(trial_id)": score_trial,
            "Search.trial(trial_id)": trial_id, "Writer.write(search_id)": write_search,
            "Writer.write(trial_id)": write_trial}


ENTRY = _entry_points()


@pytest.mark.parametrize("entry", sorted(ENTRY))
def test_bad_ids_are_refused_and_nothing_recorded_is_lost(tmp_path, entry):
    store = tmp_path / "store"
    s = hptrack.search("ids", store=store)
    try:
        with s.trial({"a": 1}) as t:
            t.complete(0.5)
        around = _tree(tmp_path)
        for kind, bad in BAD_IDS.items():
            with pytest.raises(ValueError, match="not a valid id") as info:
                ENTRY[entry](s, t, bad)
            assert repr(bad)[:40] in str(info.value), kind
        with s.trial({"a": 2}) as t2:
            t2.complete(0.7)
        s.writer.flush()
        assert _count(store) == 5  # search_started, then started and completed twice
    finally:
        s.writer.close()
    hptrack.compact(store)
    assert _count(store) == 5
    report = hptrack.verify(store)
    assert report.ok, [p.message for p in report.errors]
    assert hptrack.trials("ids", store=store)["value"].to_list() == [0.5, 0.7]
    assert {p for p in _tree(tmp_path) if not p.startswith("store")} == {
        p for p in around if not p.startswith("store")}


def test_store_partition_dir_refuses_unsafe_ids(tmp_path):
    st_ = hptrack.Store(tmp_path)
    for kind, bad in BAD_IDS.items():
        if kind == "dotdot":
            continue  # search=.. is a folder inside events/, and older hptrack made such ids
        with pytest.raises(ValueError, match="not a valid id"):
            st_.partition_dir(bad)
    assert st_.partition_dir("ok-1").endswith(os.path.join("events", "search=ok-1"))


def test_search_names_with_dots_give_safe_ids(tmp_path):
    s = hptrack.search("v1..v2/../x", store=tmp_path)
    assert ".." not in s.search_id and "/" not in s.search_id
    s.writer.close()


def test_score_of_a_trial_the_store_does_not_hold_is_recorded(tmp_path):
    # documented choice: another process may still be writing that trial
    hptrack.score_trial("elsewhere-0123456789", "t1", 0.25, store=tmp_path)
    Writer.for_store(tmp_path).close()
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT search_id, trial_id, value FROM scores").fetchall() == [
        ("elsewhere-0123456789", "t1", 0.25)]


# --- hostile logs -------------------------------------------------------------

WRITER = "00000000000000ab"
T0 = 1_760_000_000_000_000


def _row(seq, search_id="good", trial_id="t0", etype="trial_started", payload=None):
    return (seq, T0 + seq, etype, search_id, trial_id, 0, None, None, None, None, None, None,
            None, payload)


def _hostile_log(store, rows, writer_id=WRITER, version=2):
    wal = os.path.join(store, "wal")
    os.makedirs(wal, exist_ok=True)
    path = os.path.join(wal, f"{writer_id}-{0:012d}.wal")
    log = LogFile(path, {"writer_id": writer_id, "schema_version": version, "pid": 1,
                         "host": "hostile-host"})
    log.append(encode_rows(0, [r[1:] for r in rows]), sync=True)
    log.close()
    return path


HOSTILE = {
    1: "../../x",
    2: "../../../outside",
    3: "../../../../further",
    5: "nul\x00id",
    6: "sur\ud800",
    7: "glob-*",
}


def _hostile_rows():
    rows = []
    for seq in range(10):
        if seq in HOSTILE:
            rows.append(_row(seq, search_id=HOSTILE[seq]))
        elif seq == 8:
            rows.append(_row(seq, trial_id="t\udcff"))  # a bad trial_id
        elif seq == 9:
            rows.append(_row(seq, etype="annotation", trial_id=None, payload='{"e": "\ud800"}'))
        else:
            rows.append(_row(seq))
    return rows  # good rows: seq 0 and 4


def test_hostile_log_rows_are_left_out_named_and_the_rest_kept(tmp_path):
    store = tmp_path / "store"
    os.makedirs(store)
    path = _hostile_log(str(store), _hostile_rows())
    around = _tree(tmp_path)
    parent = set(os.listdir(tmp_path.parent))

    with pytest.warns(RuntimeWarning) as caught:
        con = hptrack.connect(store)
    assert sorted(r[0] for r in con.sql("SELECT seq FROM events").fetchall()) == [0, 4]
    said = " ".join(str(w.message) for w in caught)
    assert os.path.basename(path) in said
    for seq in (1, 5, 6, 8, 9):
        assert f"seq {seq}" in said or "more" in said
    assert "'../../x'" in said

    report = hptrack.verify(store)
    bad = [p for p in report.problems if p.kind == "bad_rows"]
    assert len(bad) == 1 and bad[0].path == path and "8 of its records" in bad[0].message
    assert report.n_events == 2

    hptrack.verify(store, quarantine=True)
    assert os.path.exists(path), "quarantine must not move the good events out of the store"

    result = hptrack.compact(store)
    assert path in result.skipped and os.path.exists(path)  # kept: it holds what cannot be stored
    segments = hptrack.Store(store).segment_files()
    assert [os.path.basename(os.path.dirname(p)) for p in segments] == ["search=good"]
    assert sorted(pq.read_table(segments[0])["seq"].to_pylist()) == [0, 4]
    assert _count(store) == 2
    hptrack.compact(store)  # again: still nothing new, nothing doubled
    assert _count(store) == 2 and len(hptrack.Store(store).segment_files()) == 1

    # nothing was written outside the store, anywhere around it
    assert {p for p in _tree(tmp_path) if not p.startswith("store")} == {
        p for p in around if not p.startswith("store")}
    assert set(os.listdir(tmp_path.parent)) == parent
    inside = _tree(store)
    assert not any("outside" in p or "further" in p or p.endswith("x") for p in inside)


def test_a_log_whose_rows_are_all_bad_keeps_the_other_logs_readable(tmp_path):
    _hostile_log(str(tmp_path), [_row(0, search_id="../x"), _row(1, search_id="a/b")])
    with hptrack.search("fine", store=tmp_path) as s:
        with s.trial({"a": 1}) as t:
            t.complete(1.0)
    with pytest.warns(RuntimeWarning, match="2 of its records"):
        assert hptrack.trials("fine", store=tmp_path)["value"].to_list() == [1.0]
    s.writer.close()


def test_an_old_log_with_a_dotted_search_id_is_read_and_sealed(tmp_path):
    """hptrack before v2 derived 'v1..v2-<hash>' from the name 'v1..v2': readers keep such rows."""
    sid = "v1..v2-0123456789"
    path = _hostile_log(str(tmp_path), [_row(i, search_id=sid) for i in range(3)], version=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _count(tmp_path) == 3
    hptrack.compact(tmp_path)
    assert not os.path.exists(path)
    assert [os.path.basename(os.path.dirname(p)) for p in hptrack.Store(tmp_path).segment_files()] == [
        f"search={sid}"]
    assert _count(tmp_path) == 3 and hptrack.verify(tmp_path).ok


# --- glob characters in partition folders --------------------------------------

@pytest.mark.parametrize("folder", ["search=*", "search=[a]", "search=?", "search=a*"])
def test_hand_made_glob_folder_is_read_once(tmp_path, folder):
    # one writer, two searches, one seal: the same segment name in both partitions
    w = Writer(tmp_path)
    for sid in ("a", "b"):
        w.write({"type": "search_started", "search_id": sid, "payload": {"name": sid}})
        w.write({"type": "annotation", "search_id": sid, "payload": {"text": sid}})
    w.close()
    events = os.path.join(tmp_path, "events")
    os.rename(os.path.join(events, "search=b"), os.path.join(events, folder))
    assert sorted(os.listdir(os.path.join(events, folder))) == sorted(os.listdir(os.path.join(events, "search=a")))
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT search_id, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall() == [
        ("a", 2), ("b", 2)]
    report = hptrack.verify(tmp_path)
    assert report.n_events == 4


# --- event ids -----------------------------------------------------------------

def test_writers_that_collided_in_the_30_bit_key_get_distinct_event_ids(tmp_path):
    ids = ["0000000000000001", "0000000000000002"]  # same first 30 bits
    for wid in ids:
        w = Writer(tmp_path)
        w.writer_id = wid
        w.write({"type": "annotation", "search_id": "s", "payload": {"by": wid}, "ts": T0})
        w.close()
    con = hptrack.connect(tmp_path)
    got = con.sql("SELECT event_id, writer_id FROM events ORDER BY writer_id").fetchall()
    assert [w for _, w in got] == ids and got[0][0] != got[1][0]
    hptrack.compact(tmp_path)
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT writer_id FROM events ORDER BY 1").fetchall() == [(ids[0],), (ids[1],)]
    assert hptrack.verify(tmp_path).ok


def test_event_ids_are_time_ordered_text_and_hold_the_writer_and_seq():
    rows = [(T0 + 10**6 * i, "annotation", "s", None, None, None, None, None, None, None, None,
             None, "{}") for i in range(5)]
    t = to_table(rows, "fedcba9876543210", first_seq=2**40)
    ids = t["event_id"].to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert all(i.split("-")[3:] == ["fedcba9876543210", f"{2**40 + n:016x}"] for n, i in enumerate(ids))
    assert t["schema_version"].to_pylist() == [2] * 5


def test_a_v1_log_sealed_twice_keeps_v1_ids_and_de_duplicates(tmp_path):
    """An old writer sealed its log, then died before deleting it: compact must
    see that the segment holds the log's rows (same v1 ids) and not add copies."""
    rows = [_row(i) for i in range(4)]
    path = _hostile_log(str(tmp_path), rows, version=1)
    old = to_table(rows, WRITER, version=1)  # what the old writer sealed
    part = os.path.join(tmp_path, "events", "search=good")
    os.makedirs(part)
    pq.write_table(old, os.path.join(part, f"{WRITER}-{0:012d}.parquet"))
    assert all(len(i) == 36 for i in old["event_id"].to_pylist())
    assert _count(tmp_path) == 4
    hptrack.compact(tmp_path)
    assert not os.path.exists(path)
    con = hptrack.connect(tmp_path)
    assert con.sql("SELECT count(*), count(DISTINCT event_id), min(length(event_id)) FROM events").fetchall()[0] == (
        4, 4, 36)
    assert hptrack.verify(tmp_path).ok


# --- any Python string as free text -----------------------------------------------

# every code point, lone surrogates included (st.text() leaves them out by default)
ANY_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=12),
    st.sampled_from(["\ud800", "a\udcffb", "\udc80\udc81", "\x00", "\u2028\u2029", "\\ud800",
                     "\\", '"\\u"', "\ud83d\ude00", "\U0001f389", "é\x00\ud800"]),
)
_names = itertools.count()


@pytest.fixture(scope="module")
def text_store():
    root = tempfile.mkdtemp(prefix="hptrack-text-")
    yield root
    Writer.for_store(root).close()
    shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=ANY_TEXT, key=ANY_TEXT)
def test_any_string_round_trips_as_free_text(text_store, text, key):
    name = f"text-{next(_names)}"
    want, want_key = storable(text), storable(key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no hptrack warning: nothing left out
        s = hptrack.search(name, store=text_store, note=text)
        with s.trial({"p": text}) as t:
            t.report(1, 0.5, m=text)
            t.score(0.6, split="test", extra={key: text})
            t.complete(1.0, said=text)
        with pytest.raises(RuntimeError):
            with s.trial({"p": "x"}):
                raise RuntimeError(text)
        s.annotate(text, x={key: [text]})
        s.writer.flush()
        for where in ("log", "parquet"):
            con = hptrack.connect(text_store)
            sid = s.search_id
            (note,), = con.sql("SELECT payload ->> 'note' FROM searches WHERE search_id = ?", params=[sid]).fetchall()
            assert note == want
            rows = con.sql("SELECT state, error, metrics ->> 'said' FROM trials WHERE search_id = ? "
                           "ORDER BY trial_number", params=[sid]).fetchall()
            assert rows == [("complete", None, want), ("failed", want, None)]
            (value,), = con.sql("SELECT value FROM params WHERE search_id = ? AND trial_id = ?",
                                params=[sid, t.trial_id]).fetchall()
            assert value == want
            (m,), = con.sql("SELECT metrics ->> 'm' FROM reports WHERE search_id = ?", params=[sid]).fetchall()
            assert m == want
            (extra,), = con.sql("SELECT payload FROM scores WHERE search_id = ?", params=[sid]).fetchall()
            assert json.loads(extra) == {"extra": {want_key: want}}
            (ann,), = con.sql("SELECT payload FROM events WHERE search_id = ? AND type = 'annotation'",
                              params=[sid]).fetchall()
            assert json.loads(ann) == {"text": want, "x": {want_key: [want]}}
            (tb,), = con.sql("SELECT payload ->> 'traceback' FROM events WHERE search_id = ? "
                             "AND type = 'trial_failed'", params=[sid]).fetchall()
            assert want in tb
            df = hptrack.trials(sid, con=con)
            assert df["p"].to_list() == [want, "x"] and df["error"].to_list() == [None, want]
            if where == "log":
                s.writer.seal()


def test_the_escape_is_backslashreplace_and_leaves_valid_text_alone():
    assert storable("a\ud800b") == "a\\ud800b"
    assert storable("\udcff") == "\\udcff"
    for ok in ["", "plain", "\x00", "é\U0001f389", "\u2028", "\\ud800"]:
        assert storable(ok) is ok


def test_two_lone_surrogates_in_a_payload_stay_two_escapes():
    """A Python str holding a lone high and a lone low surrogate side by side is two
    unstorable characters, not the astral character their JSON escapes would spell:
    each is stored as its ``\\udXXX`` text (found by the round-trip test above)."""
    from hptrack.schema import encode_payload

    two = "\ud800\udc00"
    assert json.loads(encode_payload({"note": two, two: 1})) == {"note": storable(two), storable(two): 1}
    # a real astral character is stored as before, as its JSON escape pair
    assert encode_payload({"note": "\U00010000"}) == '{"note":"\\ud800\\udc00"}'
