"""What the store holds, read back the way a user would: ``hptrack.connect(store)``
and its views, and ``hptrack.trials(...)``. Plain dicts, so a test compares them
with Optuna's or scikit-learn's own records and a failure shows both sides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import hptrack
from hptrack.read import resolve_search
from hptrack.schema import decode_param


@dataclass
class Recorded:
    """One trial as the store holds it."""
    trial_id: str
    recorded_number: int | None     # the number the writer gave it (Optuna's number)
    trial_number: int               # the number the trials view gives it
    state: str
    value: float | None
    values: list | None             # payload.values of trial_completed (multi-objective)
    started_at: object
    finished_at: object
    last_step: int | None
    error: str | None
    metrics: dict | None
    params: dict = field(default_factory=dict)          # name -> typed value
    distributions: dict = field(default_factory=dict)   # name -> distribution JSON
    reports: dict = field(default_factory=dict)         # step -> value
    user_attrs: dict = field(default_factory=dict)


@dataclass
class Search:
    search_id: str
    row: dict                       # the searches view
    payload: dict                   # search_started payload
    finished: dict | None           # search_finished payload
    trials: list                    # [Recorded], in the trials view's order


def _json(text):
    return None if text is None else json.loads(text)


@lru_cache(maxsize=None)
def read_search(store: str, name: str) -> Search:
    """Everything the views hold about search ``name`` (cached: the store does not
    change once its material is built)."""
    con = hptrack.connect(store)
    sid, _ = resolve_search(con, name)
    row = con.sql("SELECT * FROM searches WHERE search_id = ?", params=[sid]).pl().to_dicts()[0]
    finished = con.sql("SELECT payload FROM events WHERE search_id = ? AND type = 'search_finished' "
                       "ORDER BY event_id DESC LIMIT 1", params=[sid]).fetchall()
    trials = {}
    for r in con.sql("SELECT * FROM trials WHERE search_id = ? ORDER BY trial_number",
                     params=[sid]).pl().to_dicts():
        trials[r["trial_id"]] = Recorded(
            r["trial_id"], r["recorded_number"], r["trial_number"], r["state"], r["value"], None,
            r["started_at"], r["finished_at"], r["last_step"], r["error"], _json(r["metrics"]))
    for tid, name_, kind, num, text in con.sql(
            "SELECT trial_id, name, kind, value_num, value_str FROM params WHERE search_id = ?",
            params=[sid]).fetchall():
        trials[tid].params[name_] = decode_param(kind, num, text)
    for tid, step, value in con.sql("SELECT trial_id, step, value FROM reports WHERE search_id = ?",
                                    params=[sid]).fetchall():
        assert step not in trials[tid].reports, f"step {step} of trial {tid} reported twice"
        trials[tid].reports[step] = value
    for tid, typ, payload in con.sql(
            "SELECT trial_id, type, payload FROM events WHERE search_id = ? AND trial_id IS NOT NULL "
            "AND type IN ('annotation', 'trial_completed') ORDER BY event_id", params=[sid]).fetchall():
        p = _json(payload) or {}
        t = trials.get(tid)
        if t is None:
            continue
        if typ == "trial_completed" and "values" in p and t.values is None:
            t.values = p["values"]   # the first terminal event wins, as in the trials view
        t.user_attrs.update(p.get("user_attrs") or {})
        t.distributions.update(p.get("distributions") or {})
    started = con.sql("SELECT payload FROM events WHERE search_id = ? AND type = 'search_started' "
                      "ORDER BY event_id LIMIT 1", params=[sid]).fetchall()[0][0]
    con.close()
    return Search(sid, row, _json(started), _json(finished[0][0]) if finished else None,
                  list(trials.values()))


@lru_cache(maxsize=None)
def trials_frame(store: str, name: str):
    """``hptrack.trials(name, store=store)``, the polars table users read."""
    return hptrack.trials(name, store=store)


@lru_cache(maxsize=None)
def scored(store: str, name: str) -> dict:
    """(trial_id, split, metric, fold, step) -> value of every fold score (test and
    train) of the search."""
    con = hptrack.connect(store)
    sid, _ = resolve_search(con, name)
    out = {}
    for tid, split, metric, fold, step, value in con.sql(
            "SELECT trial_id, split, coalesce(metric, 'value'), fold, step, value FROM events "
            "WHERE search_id = ? AND type = 'trial_scored' AND split IN ('fold', 'fold_train')",
            params=[sid]).fetchall():
        key = (tid, split, metric, fold, step)
        assert key not in out, f"score {key} recorded twice"
        out[key] = value
    con.close()
    return out
