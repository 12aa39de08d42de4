"""Stored folds (hptrack._read.projections): compact writes each search's trials and
params rows; readers use them only when they are exact, and every answer is the
same as folding the events."""

from __future__ import annotations

import os
import warnings

import pytest

import hptrack
from hptrack._files.store import Store
from hptrack._write.writer import Writer

QUERIES = {
    "trials": "SELECT * FROM trials ORDER BY search_id, trial_number",
    "params": "SELECT * FROM params ORDER BY search_id, trial_id, name",
    "searches": "SELECT * FROM searches ORDER BY search_id",
    "events": "SELECT count(*), count(DISTINCT event_id) FROM events",
}


def answers(root, **kw):
    con = hptrack.connect(root, **kw)
    return {k: con.sql(q).fetchall() for k, q in QUERIES.items()}


def populate(root, name, n, *, start=0):
    """Trials in every state, params of every kind, a param changed after the start."""
    s = hptrack.search(name, store=root, direction="minimize", strategy="random")
    for k in range(start, start + n):
        t = s.trial({"lr": 10.0 ** -(k % 4), "depth": k % 5, "act": ["relu", "tanh"][k % 2],
                     "neg_zero": -0.0, "flag": k % 3 == 0, "none": None, "big": 2 ** 70 + k})
        t.report(1, k / 7, lr=0.1)
        if k % 6 == 1:
            t.set_params({"depth": 99})
        if k % 5 == 4:
            t.prune(1)
        elif k % 7 == 6:
            t.fail("diverged")
        elif k % 9 != 8:          # k % 9 == 8 stays running
            t.complete(float(k % 11) - 0.5)
    Writer.for_store(root).seal()  # one segment per call
    return s


def projection_files(root):
    return sorted(os.path.relpath(p, root) for p in Store(root).view_files())


@pytest.fixture
def compacted(tmp_path):
    root = str(tmp_path / "store")
    for i in range(3):
        populate(root, "alpha", 12, start=12 * i)
    populate(root, "beta", 10)
    Writer.for_store(root).close()
    folded = answers(root)
    result = hptrack.compact(root)
    assert result.projected_searches == 2
    return root, folded


def test_compacted_answers_equal_the_fold(compacted):
    root, folded = compacted
    assert len(projection_files(root)) == 4  # trials + params for each search
    assert answers(root) == folded
    assert answers(root, projections=False) == folded
    con = hptrack.connect(root)
    # the projection is what the views read: its rows, not a fold of the events
    (n,), = con.sql("SELECT count(*) FROM _trials_projected").fetchall()
    assert n == 46 and con.sql("SELECT count(*) FROM _trials_folded").fetchall() == [(0,)]
    states = dict(con.sql("SELECT state, count(*) FROM trials GROUP BY 1").fetchall())
    assert set(states) == {"complete", "pruned", "failed", "running"}
    assert con.sql("SELECT DISTINCT value FROM params WHERE name = 'neg_zero'").fetchall() == [("-0.0",)]
    assert compacted_big(con) == [(str(2 ** 70 + k),) for k in range(12)]


def compacted_big(con):
    return con.sql("SELECT p.value FROM params p JOIN trials t USING (trial_id) "
                   "WHERE p.name = 'big' AND t.search_id IN (SELECT search_id FROM searches WHERE name = 'alpha') "
                   "ORDER BY t.trial_number LIMIT 12").fetchall()


def test_new_events_after_compaction_are_folded_not_hidden(compacted, tmp_path):
    root, _ = compacted
    s = hptrack.search("alpha", store=root, direction="minimize", strategy="random")
    # a trial that was running at compaction ends now; a new trial starts
    con = hptrack.connect(root)
    (tid, number), = con.sql("SELECT trial_id, recorded_number FROM trials t JOIN searches USING (search_id) "
                             "WHERE name = 'alpha' AND state = 'running' ORDER BY trial_number LIMIT 1").fetchall()
    hptrack.Trial.attach(s, tid, number).complete(-5.0)
    populate(root, "alpha", 2, start=100)
    w = Writer.for_store(root)
    w.flush()  # in this process's log: a live writer blocks the projection
    live = answers(root)
    assert live == answers(root, projections=False)
    row = hptrack.connect(root).sql("SELECT state, value FROM trials WHERE trial_id = ?", params=[tid]).fetchall()
    assert row == [("complete", -5.0)]
    w.close()  # sealed into new segments: the partition no longer matches the projection's key
    sealed = answers(root)
    assert sealed == answers(root, projections=False) == live
    con = hptrack.connect(root)
    assert con.sql("SELECT count(DISTINCT search_id) FROM _trials_projected").fetchall() == [(1,)]  # beta only
    hptrack.compact(root, grace=0)
    assert answers(root) == sealed
    assert len(projection_files(root)) == 4  # the stale alpha projection is gone


def test_as_of_folds_the_events(compacted):
    root, _ = compacted
    con = hptrack.connect(root)
    (mid,), = con.sql("SELECT quantile_disc(ts, 0.5) FROM events").fetchall()
    assert answers(root, as_of=mid) == answers(root, as_of=mid, projections=False)
    assert hptrack.connect(root, as_of=mid).sql("SELECT count(*) FROM _trials_projected").fetchall() == [(0,)]


def test_damaged_projection_is_ignored_then_rewritten(compacted):
    root, folded = compacted
    victim = os.path.join(root, [p for p in projection_files(root) if p.endswith(".trials.parquet")][0])
    with open(victim, "r+b") as f:
        f.truncate(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # derived data: folded instead, without a word
        assert answers(root) == folded
    result = hptrack.compact(root)
    assert result.projected_searches == 1
    assert answers(root) == folded
    assert os.path.getsize(victim) > 100


def test_memory_store_projections():
    url = "memory://hptrack-projections"
    try:
        populate(url, "gamma", 15)
        populate(url, "gamma", 15, start=15)
        folded = answers(url)
        assert hptrack.compact(url).projected_searches == 1
        assert len(Store(url).view_files()) == 2
        assert answers(url) == folded
    finally:
        Writer.for_store(url).close()



def test_folds_in_bounded_passes(tmp_path, monkeypatch):
    """compact folds the searches in passes of bounded size; each pass stores the same rows."""
    import hptrack._read.projections as projections

    root = str(tmp_path / "store")
    for name in ("p", "q", "r"):
        populate(root, name, 9)
    hptrack.search("no-trials-yet", store=root)  # its fold is empty: stored all the same
    Writer.for_store(root).close()
    folded = answers(root)
    passes = []
    real = projections._write
    monkeypatch.setattr(projections, "EVENTS_PER_PASS", 20)  # less than one search: one per pass
    monkeypatch.setattr(projections, "_write", lambda st, footers, batch: (passes.append(sorted(batch)),
                                                                            real(st, footers, batch)))
    assert hptrack.compact(root).projected_searches == 4
    assert len(passes) == 4 and sorted(sid for p in passes for sid in p) == sorted(
        sid for (sid,) in hptrack.connect(root).sql("SELECT search_id FROM searches").fetchall())
    assert answers(root) == folded
    con = hptrack.connect(root)
    assert con.sql("SELECT count(*) FROM _trials_folded").fetchall() == [(0,)]  # every search from its fold
    assert con.sql("SELECT n_trials FROM searches WHERE name = 'no-trials-yet'").fetchall() == [(0,)]


PER_SEARCH = {
    "trials": "SELECT * FROM trials WHERE search_id = ? ORDER BY trial_id",
    "params": "SELECT * FROM params WHERE search_id = ? ORDER BY trial_id, name",
}


def per_search(root, **kw):
    """search_id -> {view: its rows}: what each search's own fold says."""
    con = hptrack.connect(root, **kw)
    ids = [sid for (sid,) in con.sql("SELECT search_id FROM searches").fetchall()]
    return {sid: {v: con.sql(q, params=[sid]).fetchall() for v, q in PER_SEARCH.items()} for sid in ids}


def counts(answer):
    return {sid: {v: len(rows) for v, rows in views.items()} for sid, views in answer.items()}


def test_each_stored_fold_holds_its_own_search_only(tmp_path):
    """Many searches of varied sizes, projected in one pass: each search's stored
    fold holds its rows and no other's (the fold was cut by pyarrow group_by,
    which does not keep the table's order: on pyarrow 26 it returns these 20
    search ids out of order, and rows landed in the wrong search's fold)."""
    import pyarrow.parquet as pq

    root = str(tmp_path / "store")
    for i in range(20):
        populate(root, f"run3-{i}", 1 + (i * 7) % 13)
    Writer.for_store(root).close()
    folded = per_search(root, projections=False)
    assert hptrack.compact(root).projected_searches == 20
    assert per_search(root) == folded
    # a new trial in every other search: readers fold those from their events and
    # take the rest from their stored folds, which must hold exactly their rows
    for i in range(0, 20, 2):
        populate(root, f"run3-{i}", 1, start=50)
    Writer.for_store(root).close()
    got, want = per_search(root), per_search(root, projections=False)
    assert counts(got) == counts(want)
    assert got == want
    for path in Store(root).view_files():
        partition = os.path.basename(os.path.dirname(path))
        ids = set(pq.read_table(path, columns=["search_id"]).column("search_id").to_pylist())
        assert ids <= {partition[len("search="):]}, path


def spoil_data_pages(path):
    """Garbage over the middle of a Parquet file's data, its footer intact:
    it passes the footer checks and fails when read."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size - 8)
        footer = int.from_bytes(f.read(4), "little")
        data_end = size - 8 - footer
        f.seek(4 + (data_end - 4) // 4)
        f.write(b"\xff\x13" * ((data_end - 4) // 4))


def test_a_search_with_a_damaged_segment_costs_only_its_own_fold(tmp_path):
    """A segment whose data cannot be read (its footer can) fails the fold of
    its search; the other searches are stored all the same, each with its own rows."""
    root = str(tmp_path / "store")
    for i in range(6):
        populate(root, f"d{i}", 3 + i)
    Writer.for_store(root).close()
    victim_id = hptrack.api.search_id_for("d2")
    (victim,) = [p for p in Store(root).segment_files() if f"search={victim_id}" in p]
    spoil_data_pages(victim)
    result = hptrack.compact(root)
    assert result.projected_searches == 5
    os.replace(victim, str(tmp_path / "moved-out.parquet"))  # what verify --quarantine does
    want = per_search(root, projections=False)
    assert set(want) == {hptrack.api.search_id_for(f"d{i}") for i in range(6) if i != 2}
    assert per_search(root) == want


def test_a_file_in_the_wrong_partition_keeps_both_searches_folded(tmp_path):
    """A segment of search B copied into A's folder: the rows of a fold by
    search_id would not be those of either partition, so neither is stored and
    both are folded from their events."""
    import shutil

    root = str(tmp_path / "store")
    for i in range(4):
        populate(root, f"w{i}", 4 + i)
    Writer.for_store(root).close()
    hptrack.compact(root)
    a, b = (Store(root).partition_dir(hptrack.api.search_id_for(n)) for n in ("w0", "w1"))
    (b_file,) = [p for p in Store(root).segment_files() if p.startswith(b + os.sep)]
    shutil.copy(b_file, os.path.join(a, "copied-" + os.path.basename(b_file)))
    hptrack.compact(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert answers(root) == answers(root, projections=False)
        con = hptrack.connect(root)
        projected = {sid for (sid,) in con.sql("SELECT DISTINCT search_id FROM _trials_projected").fetchall()}
    assert projected == {hptrack.api.search_id_for(n) for n in ("w2", "w3")}
