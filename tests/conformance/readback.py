"""What the store holds, read back the way a user would: ``hptrack.connect(store)``
and its views, and ``hptrack.trials(...)``. Plain dicts, so a test compares them
with Optuna's or scikit-learn's own records and a failure shows both sides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache

import hptrack
from hptrack._read.read import resolve_search
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


@cache
def connection(store: str):
    """One ``hptrack.connect(store)`` per store for the whole session: the material
    is built before any test reads it and does not change after, and a connection
    costs 0.1-0.3 s (more than most of the checks)."""
    return hptrack.connect(store)


def read_search(store: str, name: str) -> Search:
    """Everything the views hold about search ``name``."""
    return read_store(store)[name]


@cache
def read_store(store: str) -> dict:
    """name -> :class:`Search` for every search of ``store``: each view read once
    (a query folds the events; one per search and view cost 0.1 s each)."""
    con = connection(store)
    names = dict(con.sql("SELECT search_id, name FROM searches").fetchall())
    rows = {r["search_id"]: r for r in con.sql("SELECT * FROM searches").pl().to_dicts()}
    trials = {}
    for r in con.sql("SELECT * FROM trials ORDER BY search_id, trial_number").pl().to_dicts():
        trials[r["trial_id"]] = (r["search_id"], Recorded(
            r["trial_id"], r["recorded_number"], r["trial_number"], r["state"], r["value"], None,
            r["started_at"], r["finished_at"], r["last_step"], r["error"], _json(r["metrics"])))
    for tid, name_, kind, num, text in con.sql(
            "SELECT trial_id, name, kind, value_num, value_str FROM params").fetchall():
        trials[tid][1].params[name_] = decode_param(kind, num, text)
    for tid, step, value in con.sql("SELECT trial_id, step, value FROM reports").fetchall():
        t = trials[tid][1]
        assert step not in t.reports, f"step {step} of trial {tid} reported twice"
        t.reports[step] = value
    started, finished = {}, {}
    for sid, tid, typ, payload in con.sql(
            "SELECT search_id, trial_id, type, payload FROM events WHERE type IN "
            "('annotation', 'trial_completed', 'search_started', 'search_finished') "
            "ORDER BY event_id").fetchall():
        p = _json(payload) or {}
        if typ == "search_started":
            started.setdefault(sid, p)
        elif typ == "search_finished":
            finished[sid] = p                    # the latest
        elif tid in trials:
            t = trials[tid][1]
            if typ == "trial_completed" and "values" in p and t.values is None:
                t.values = p["values"]           # the first terminal event wins, as in the trials view
            t.user_attrs.update(p.get("user_attrs") or {})
            t.distributions.update(p.get("distributions") or {})
    by_search: dict = {sid: [] for sid in names}
    for sid, t in trials.values():
        by_search[sid].append(t)
    return {names[sid]: Search(sid, rows[sid], started.get(sid), finished.get(sid), ts)
            for sid, ts in by_search.items()}


@cache
def trials_frame(store: str, name: str):
    """``hptrack.trials(name, store=store)``, the polars table users read."""
    return hptrack.trials(name, con=connection(store))


@cache
def scored(store: str, name: str) -> dict:
    """(trial_id, split, metric, fold, step) -> value of every fold score (test and
    train) of the search."""
    con = connection(store)
    sid, _ = resolve_search(con, name)
    out = {}
    for tid, split, metric, fold, step, value in con.sql(
            "SELECT trial_id, split, coalesce(metric, 'value'), fold, step, value FROM events "
            "WHERE search_id = ? AND type = 'trial_scored' AND split IN ('fold', 'fold_train')",
            params=[sid]).fetchall():
        key = (tid, split, metric, fold, step)
        assert key not in out, f"score {key} recorded twice"
        out[key] = value
    return out
