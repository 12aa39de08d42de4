"""What a store promises, on every kind of store: a folder, memory:// and S3.

Record, read back, read as of a past moment, compact, verify, export: the same
answers wherever the files live."""

from __future__ import annotations

import json
import time

import hptrack
from hptrack._files.store import Store
from hptrack._write.writer import Writer


def _record(url, name, values, **attrs):
    with hptrack.search(name, direction="minimize", store=url, **attrs) as s:
        for i, v in enumerate(values):
            with s.trial({"x": i, "kind": "a" if i % 2 else "b"}) as t:
                t.report(1, v + 1.0)
                t.score(v, split="fold", fold=0)
                t.complete(v)
    Writer.for_store(url).flush()


def _answers(url, as_of=None):
    con = hptrack.connect(url, as_of=as_of)
    return {
        "searches": con.sql("SELECT name, n_trials, n_complete FROM searches ORDER BY name").fetchall(),
        "trials": con.sql("SELECT trial_number, state, value FROM trials ORDER BY search_id, trial_number").fetchall(),
        "params": con.sql("SELECT name, value FROM params ORDER BY search_id, trial_id, name").fetchall(),
        "scores": con.sql("SELECT split, fold, value FROM scores ORDER BY search_id, trial_id").fetchall(),
        "reports": con.sql("SELECT step, value FROM reports ORDER BY search_id, trial_id").fetchall(),
    }


def test_record_read_compact_verify_export(any_store, tmp_path):
    _record(any_store, "kinds-a", [0.3, 0.1, 0.2])
    cut = time.time()
    time.sleep(0.01)
    _record(any_store, "kinds-b", [0.5, 0.4])
    before = _answers(any_store)
    assert before["searches"] == [("kinds-a", 3, 3), ("kinds-b", 2, 2)]
    assert len(before["trials"]) == 5 and len(before["scores"]) == 5 and len(before["reports"]) == 5
    # as of a moment between the two searches: only the first exists
    from datetime import datetime, timezone

    past = _answers(any_store, as_of=datetime.fromtimestamp(cut, timezone.utc))
    assert past["searches"] == [("kinds-a", 3, 3)]
    Writer.for_store(any_store).close()   # seal this process's log: compaction then merges it
    hptrack.compact(any_store, grace=0)
    assert len(Store(any_store).segment_files()) == 2   # one merged file per search
    assert _answers(any_store) == before
    assert hptrack.verify(any_store).problems == []
    out = tmp_path / "a.json"
    hptrack.export("kinds-a", store=any_store, path=str(out), format="json")
    rows = json.loads(out.read_text())
    assert sorted(r["value"] for r in rows) == [0.1, 0.2, 0.3]
    df = hptrack.trials("kinds-b", store=any_store)
    assert sorted(df["value"].to_list()) == [0.4, 0.5] and set(df.columns) >= {"x", "kind"}
