"""What each finished trial cost: the ``compute`` axis of :func:`hptrack.analysis.compare`.

Multi-fidelity searches (successive halving, hyperband, Optuna with a pruner)
spend part of their budget on trials that never finish at full fidelity. On
the "trials" axis such a search looks slow: its few finalists arrive last. The
honest question is "which strategy gets the best model for a budget", so this
module charges every finished trial, pruned and failed ones included, for the
compute it consumed, in **full evaluations**: 1.0 is one candidate evaluated
at full fidelity (every fold, all the data, the full resource) in its search.

How a trial's cost is read, first rule that applies:

1. fold scores that carry the rung's resource (``hptrack.sklearn`` halving
   records ``n_resources`` on every fold it fits): the sum over fold fits of
   resource / full resource, divided by the search's number of folds. A
   halving candidate dropped after rung 0 at 12 of 569 samples costs 12/569.
2. intermediate reports with a ``resource`` (user loops, hyperband-style
   budgets; taken as the cumulative budget spent so far): the largest one
   over the full resource.
3. fold scores without a resource (sklearn grid/random search, an Optuna
   objective that scores fold by fold): folds scored over the search's number
   of folds, so a trial pruned after 2 of 3 folds costs 2/3.
4. intermediate reports without a resource (Optuna ``trial.report``): reports
   made over the most any complete trial made.
5. nothing recorded: 1.

The full resource is, in order: the search's ``max_resources`` when it is a
number; the dataset's row count (``dataset_fingerprint`` X shape, recorded by
``hptrack.sklearn``) when the search's resource is ``n_samples``; else the
largest resource any of its trials used. The number of folds is the
recorded ``cv.n_splits``, else the most folds any trial scored.

Left out on purpose: a search with more folds per evaluation is not charged
more than one with fewer (each is normalised to its own full evaluation); and
wall-clock cost is the ``time`` axis, not this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from hptrack._files.checks import load_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hptrack._read.views import Connection

# strategies that evaluate candidates at several fidelities by design
MULTI_FIDELITY = frozenset({"halving", "hyperband", "asha", "bohb", "pbt"})

BASES = {1: "fold fits x resource", 2: "reported resource", 3: "folds scored",
         4: "reports made", 5: "one per trial"}

_FOLDS = """
WITH f AS (
  SELECT search_id, trial_id, fold,
         TRY_CAST(payload ->> 'iter' AS BIGINT) AS it,
         max(TRY_CAST(payload ->> 'n_resources' AS DOUBLE)) AS res
  FROM scores WHERE split = 'fold' AND search_id IN (SELECT unnest(?::VARCHAR[]))
  GROUP BY ALL)
SELECT search_id, trial_id, count(*) AS fits, count(DISTINCT fold) AS folds,
       sum(res) AS res_sum, count(res) AS n_res, max(res) AS res_max
FROM f GROUP BY ALL
"""

_REPORTS = """
SELECT search_id, trial_id, count(*) AS n, max(resource) AS res
FROM reports WHERE search_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL
"""


def is_multi_fidelity(strategy: str | None, states: dict) -> bool:
    """A search is multi-fidelity when its strategy is, or when it pruned a trial."""
    return strategy in MULTI_FIDELITY or bool(states.get("pruned"))


def trial_costs(con: Connection, ids: Sequence[str]) -> dict:
    """``{search_id: {"cost": {trial_id: float}, "basis": {rule: count}, "fidelity": {trial_id:
    share of the full resource of its last evaluation, where a resource was recorded},
    "full_resource": float|None, "n_splits": int}}`` for every trial of the searches ``ids``
    (running ones too; callers keep the finished)."""
    folds = _by_trial(con.sql(_FOLDS, params=[ids]).fetchall())
    reports = _by_trial(con.sql(_REPORTS, params=[ids]).fetchall())
    trials = con.sql("SELECT search_id, trial_id, state FROM trials "
                     "WHERE search_id IN (SELECT unnest(?::VARCHAR[]))", params=[ids]).fetchall()
    payloads = dict(con.sql("SELECT search_id, payload FROM searches "
                            "WHERE search_id IN (SELECT unnest(?::VARCHAR[]))", params=[ids]).fetchall())
    per: dict = {}
    for sid, tid, state in trials:
        per.setdefault(sid, []).append((tid, state))
    out = {}
    for sid in ids:
        rows = per.get(sid, [])
        f = {tid: folds[(sid, tid)] for tid, _ in rows if (sid, tid) in folds}
        r = {tid: reports[(sid, tid)] for tid, _ in rows if (sid, tid) in reports}
        out[sid] = _search_costs(_payload(payloads.get(sid)), rows, f, r)
    return out


def _by_trial(rows):
    return {(row[0], row[1]): row[2:] for row in rows}


def _payload(text):
    try:
        return load_json(text, {})
    except (TypeError, ValueError):
        return {}


def _search_costs(payload, rows, folds, reports):
    cv = payload.get("cv")
    n_splits = _number(cv.get("n_splits")) if isinstance(cv, dict) else None
    n_splits = n_splits or max((f[1] for f in folds.values()), default=0) or 1
    full = _full_resource(payload, folds, reports)
    most_reports = max((reports[t][0] for t, s in rows if s == "complete" and t in reports), default=0)
    most_reports = most_reports or max((r[0] for r in reports.values()), default=0)
    cost: dict = {}
    basis: dict = {}
    fidelity: dict = {}
    for tid, _ in rows:
        f, r = folds.get(tid), reports.get(tid)
        if f is not None and f[3] and full:
            rule, c = 1, f[2] / full / n_splits
            fidelity[tid] = min(1.0, f[4] / full)
        elif r is not None and r[1] is not None and full:
            rule, c = 2, r[1] / full
            fidelity[tid] = min(1.0, r[1] / full)
        elif f is not None and f[0]:
            rule, c = 3, f[0] / n_splits
        elif r is not None and most_reports:
            rule, c = 4, r[0] / most_reports
        else:
            rule, c = 5, 1.0
        cost[tid] = float(c)
        basis[BASES[rule]] = basis.get(BASES[rule], 0) + 1
    return {"cost": cost, "basis": basis, "fidelity": fidelity, "full_resource": full,
            "n_splits": n_splits}


def _full_resource(payload, folds, reports):
    declared = _number(payload.get("max_resources"))
    if declared:
        return declared
    if payload.get("resource") == "n_samples":
        shape = (((payload.get("dataset_fingerprint") or {}).get("X") or {}).get("shape") or [None])
        rows = _number(shape[0]) if isinstance(shape, list) and shape else None
        if rows:
            return rows
    seen = [f[4] for f in folds.values() if f[4] is not None]
    seen += [r[1] for r in reports.values() if r[1] is not None]
    return max(seen) if seen else None


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def describe(costs: Iterable[dict]) -> str:
    """One phrase per search set: how its costs were read (the most used rules first,
    rules used as often in the order of BASES: never in the order the trials were read)."""
    total: dict = {}
    for c in costs:
        for k, n in c["basis"].items():
            total[k] = total.get(k, 0) + n
    rank = {name: rule for rule, name in BASES.items()}
    return ", ".join(k for k, _ in sorted(total.items(), key=lambda kv: (-kv[1], rank[kv[0]])))
