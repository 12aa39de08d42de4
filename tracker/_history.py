"""What a new run reads back from the store to start from earlier work: the fold
results ``hptrack.sklearn.track(..., skip_done=True)`` can reuse, and the finished
trials ``hptrack.optuna.warm_start`` adds to a study. Plain Python values out, so
the integrations never open a connection themselves (they sit above the write
API, like importers: see :mod:`hptrack._importing`)."""

from __future__ import annotations

import json
from typing import Any

from hptrack._files.store import StoreLike
from hptrack.schema import decode_param


def candidate_lists(store: StoreLike, sha256: str) -> list[tuple[str, dict]]:
    """``(search_id, payload)`` of the candidate annotations written by
    ``hptrack.sklearn`` fits on data whose X has this SHA-256."""
    from hptrack._read.read import connect

    with connect(store) as con:
        rows = con.sql(
            "SELECT search_id, payload FROM events WHERE type = 'annotation' AND trial_id IS NULL "
            "AND TRY(payload -> 'evaluated' -> 'dataset_fingerprint' -> 'X' ->> 'sha256') = ? ORDER BY event_id",
            params=[sha256]).fetchall()
    return [(sid, json.loads(text)) for sid, text in rows if text]


def original_folds(store: StoreLike, search_ids: list[str], trial_ids: list[str]) -> list[tuple]:
    """``(trial_id, fold, split, metric, value, payload)`` of the fold scores of those
    trials (``split`` fold or fold_train, no halving rung), in event order, without the
    copies a reusing fit wrote (payload ``reused_from``)."""
    from hptrack._read.read import connect

    with connect(store) as con:
        rows = con.sql(
            "SELECT trial_id, fold, split, metric, value, payload FROM events "
            "WHERE type = 'trial_scored' AND split IN ('fold', 'fold_train') AND fold IS NOT NULL "
            "AND step IS NULL AND TRY(payload ->> 'reused_from') IS NULL "
            "AND search_id IN (SELECT unnest(?::VARCHAR[])) AND trial_id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY event_id", params=[search_ids, trial_ids]).fetchall()
    return [(t, f, s, m, v, json.loads(p) if p else {}) for t, f, s, m, v, p in rows]


def finished_trials(store: StoreLike, search: str) -> dict[str, Any]:
    """One search (name or id) as a warm start reads it: ``search_id``, ``name``,
    ``directions``, recorded ``space`` and ``trials``, each finished trial a dict with
    ``trial_id, number, state, value, values, params, distributions`` (JSON, last per
    name), ``reports`` ({step: first value}), ``user_attrs`` and ``reused_from``."""
    from hptrack._read.read import connect, objectives, resolve_search
    from hptrack._read.reuse import reused_trials

    with connect(store) as con:
        sid, name = resolve_search(con, search)
        directions = objectives(con, sid)
        started = con.sql("SELECT arg_min(payload, event_id) FROM events WHERE type = 'search_started' "
                          "AND search_id = ?", params=[sid]).fetchall()
        rows = con.sql('SELECT trial_id, trial_number, state, value, "values" FROM trials '
                       "WHERE search_id = ? AND state <> 'running' ORDER BY trial_number", params=[sid]).fetchall()
        param_rows = con.sql("SELECT trial_id, name, kind, value_num, value_str FROM params "
                             "WHERE search_id = ? ORDER BY name", params=[sid]).fetchall()
        notes = con.sql("SELECT trial_id, payload FROM events WHERE search_id = ? AND type = 'annotation' "
                        "AND trial_id IS NOT NULL ORDER BY event_id", params=[sid]).fetchall()
        report_rows = con.sql("SELECT trial_id, step, value FROM reports WHERE search_id = ? ORDER BY ts, step",
                              params=[sid]).fetchall()
        copies = reused_trials(con, [sid])[sid]
    payload = json.loads(started[0][0]) if started and started[0][0] else {}
    params: dict[str, dict] = {}
    for tid, pname, kind, num, text in param_rows:
        params.setdefault(tid, {})[pname] = decode_param(kind, num, text)
    dists: dict[str, dict] = {}
    attrs: dict[str, dict] = {}
    origins: dict[str, dict] = {}
    for tid, text in notes:
        note = json.loads(text) if text else {}
        dists.setdefault(tid, {}).update(note.get("distributions") or {})
        attrs.setdefault(tid, {}).update(note.get("user_attrs") or {})
        if tid in copies and isinstance(note.get("reused_from"), dict):
            origins[tid] = note["reused_from"]
    reports: dict[str, dict] = {}
    for tid, step, value in report_rows:
        reports.setdefault(tid, {}).setdefault(int(step), float(value))  # Optuna keeps a step's first value
    trials = [{"trial_id": tid, "number": number, "state": state, "value": value, "values": values,
               "params": params.get(tid, {}), "distributions": dists.get(tid, {}),
               "reports": reports.get(tid, {}), "user_attrs": attrs.get(tid, {}),
               "reused_from": origins.get(tid)}
              for tid, number, state, value, values in rows]
    return {"search_id": sid, "name": name, "directions": directions,
            "space": payload.get("space") if isinstance(payload, dict) else None, "trials": trials}
