"""``hptrack.optuna.warm_start(study, from_search)``: past trials into a new study.

Each recorded trial of the searches named becomes an ``optuna.trial.FrozenTrial``
(``optuna.trial.create_trial``) with its params, the distributions it was
sampled from, its value(s), state and intermediate values, and user attrs
``hptrack_source_search`` / ``hptrack_source_trial`` naming where it came from;
``study.add_trials`` adds them. Optuna's samplers then count them as history
(TPE skips its random start-up once they are enough).

Distributions: those Optuna recorded per trial (the ``Callback``, the decorator,
``import_study``), else the search's recorded space: a scikit-learn grid gives
one ``CategoricalDistribution`` per param (its values over every sub-grid),
scipy's ``uniform``, ``loguniform`` and ``randint`` give Float and Int
distributions. Anything else raises :class:`WarmStartError` naming the param;
``distributions=`` (the new study's space) then supplies them.

Recording: Optuna calls callbacks and objectives only for the trials it runs,
so a study recorded with ``hptrack.optuna.Callback`` or ``@hptrack.track``
never records the added trials; ``import_study`` of such a study marks them as
reused (``reused_from``), and ``hptrack.analysis.compare`` leaves reused
trials out of a search's budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
    json_to_distribution,
)
from optuna.trial import FrozenTrial, TrialState

from hptrack._history import finished_trials
from hptrack.api import StoreLike
from hptrack.errors import HptrackError

SOURCE_SEARCH, SOURCE_TRIAL = "hptrack_source_search", "hptrack_source_trial"
STUDY_ATTR = "hptrack_warm_start"        # study user attr: the search ids it was warm-started from
_STATES = {"COMPLETE": ("complete", TrialState.COMPLETE), "PRUNED": ("pruned", TrialState.PRUNED),
           "FAIL": ("failed", TrialState.FAIL)}


class WarmStartError(HptrackError, ValueError):
    """A recorded search cannot warm-start this study (other direction, a param outside
    the given space, a distribution Optuna would refuse); nothing was added."""


@dataclass
class WarmStart:
    """What :func:`warm_start` did: trials added, already in the study, left out (by reason)."""
    added: int
    already: int
    left_out: dict[str, int] = field(default_factory=dict)
    searches: list[str] = field(default_factory=list)


def warm_start(study: optuna.Study, from_search: str | Iterable[str], store: StoreLike = None, *,
               states: Iterable[str] = ("COMPLETE",), distributions: Mapping[str, BaseDistribution] | None = None,
               outside: str = "raise") -> WarmStart:
    """Add the recorded trials of ``from_search`` (a name or id, or several) to ``study``.

    ``states``: which trials, of ``"COMPLETE"``, ``"PRUNED"`` (with their intermediate
    values, which pruners and TPE read) and ``"FAIL"``; running trials never.
    ``distributions``: the new study's space; each trial is then added with these
    distributions, and a recorded value outside them raises (``outside="skip"``
    leaves that trial out instead), as does a param the space lacks.
    Directions must equal the study's. Idempotent: a trial already added (its
    ``hptrack_source_trial`` user attr) is not added again. Returns a :class:`WarmStart`.
    """
    if outside not in ("raise", "skip"):
        raise ValueError(f"outside must be 'raise' or 'skip', got {outside!r}")
    wanted = _states(states)
    names = [from_search] if isinstance(from_search, str) else list(from_search)
    directions = [d.name.lower() for d in study.directions]
    existing = study.get_trials(deepcopy=False)
    present = {(ft.user_attrs.get(SOURCE_SEARCH), ft.user_attrs.get(SOURCE_TRIAL)) for ft in existing}
    known = _study_distributions(existing)
    result = WarmStart(0, 0, searches=[])
    new: list[FrozenTrial] = []
    for name in names:
        past = finished_trials(store, name)
        sid, label, recorded = past["search_id"], past["name"], past["directions"]
        if recorded != directions:
            raise WarmStartError(
                f"search {label!r} was recorded with direction(s) {recorded}, the study has {directions}: "
                "warm-start a study of the same direction(s) (optuna.create_study(direction=...))")
        result.searches.append(sid)
        space = _space(past["space"])
        for rec in [_trial(r, sid) for r in past["trials"]]:
            if rec["state"] not in wanted:
                _count(result, f"state {rec['state']}")
                continue
            origin = rec["origin"]
            if origin in present:
                result.already += 1
                continue
            dists = _trial_distributions(rec, space, distributions, label, outside)
            if dists is None:
                _count(result, "outside the space")
                continue
            for p, d in dists.items():
                if p in known:
                    try:
                        check_distribution_compatibility(known[p], d)
                    except ValueError as exc:
                        raise WarmStartError(
                            f"param {p!r} of trial {rec['number']} of {label!r} has distribution {d}, "
                            f"the study already has {known[p]} ({exc}): pass distributions= with "
                            "the study's space") from None
                known.setdefault(p, d)
            new.append(_frozen(rec, dists, wanted[rec["state"]]))
            present.add(origin)
    study.add_trials(new)
    result.added = len(new)
    if new:
        sources = list(dict.fromkeys([*study.user_attrs.get(STUDY_ATTR, []), *result.searches]))
        study.set_user_attr(STUDY_ATTR, sources)
    return result


def _states(states) -> dict[str, TrialState]:
    if isinstance(states, str):
        states = [states]
    out = {}
    for s in states:
        key = s.name if isinstance(s, TrialState) else str(s).upper()
        if key not in _STATES:
            raise ValueError(f"state {s!r} cannot be warm-started: use COMPLETE, PRUNED or FAIL")
        out[_STATES[key][0]] = _STATES[key][1]
    return out


def _count(result: WarmStart, why: str) -> None:
    result.left_out[why] = result.left_out.get(why, 0) + 1


def _study_distributions(trials) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for ft in trials:
        out.update(ft.distributions)
    return out


def _trial(rec: dict, sid: str) -> dict:
    """A recorded trial with its distributions as Optuna's, its user attrs without the
    warm-start marks, and its origin: where it was first measured (a copy, or a trial
    warm-started before, is known by its source)."""
    attrs = rec["user_attrs"]
    src = rec["reused_from"]
    if src is not None:
        origin = (src.get("search_id"), src.get("trial_id"))
    elif SOURCE_TRIAL in attrs:
        origin = (attrs.get(SOURCE_SEARCH), attrs.get(SOURCE_TRIAL))
    else:
        origin = (sid, rec["trial_id"])
    return {**rec, "origin": origin,
            "distributions": {k: json_to_distribution(json.dumps(d)) for k, d in rec["distributions"].items()},
            "user_attrs": {k: v for k, v in attrs.items() if k not in (SOURCE_SEARCH, SOURCE_TRIAL)}}


def _trial_distributions(rec, space, given, label, outside) -> dict[str, BaseDistribution] | None:
    """The distributions to add trial ``rec`` with; None when it is left out (``outside="skip"``)."""
    out = {}
    for p, v in rec["params"].items():
        if given is not None:
            d = given.get(p)
            if d is None:
                raise WarmStartError(
                    f"trial {rec['number']} of {label!r} has param {p!r}, which distributions= lacks: add it "
                    "to distributions=, or warm-start from a search of the same params")
            if not _contains(d, v):
                if outside == "skip":
                    return None
                raise WarmStartError(
                    f"trial {rec['number']} of {label!r} has {p}={v!r}, outside the study's {d}: widen the "
                    "distribution, or pass outside='skip' to leave such trials out")
        else:
            d = rec["distributions"].get(p) or space.get(p)
            if d is None:
                raise WarmStartError(
                    f"param {p!r} of search {label!r} has no distribution Optuna can use (none recorded, and "
                    "its space gives none): pass distributions= with the study's space")
            if not _contains(d, v):
                raise WarmStartError(
                    f"trial {rec['number']} of {label!r} has {p}={v!r}, outside its recorded {d}: pass "
                    "distributions= with a space that holds it")
        out[p] = d
    return out


def _contains(d: BaseDistribution, value: Any) -> bool:
    try:
        return bool(d._contains(d.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _frozen(rec, dists, state: TrialState) -> FrozenTrial:
    attrs = {**rec["user_attrs"], SOURCE_SEARCH: rec["origin"][0], SOURCE_TRIAL: rec["origin"][1]}
    params = {p: dists[p].to_external_repr(dists[p].to_internal_repr(v)) for p, v in rec["params"].items()}
    value = values = None
    if state == TrialState.COMPLETE:
        if rec["values"]:
            values = [float(v) for v in rec["values"]]
        else:
            value = float(rec["value"])
    elif state == TrialState.PRUNED and rec["reports"] and not rec["values"]:
        # as Optuna's tell: a pruned trial's value is its last intermediate value
        value = rec["reports"][max(rec["reports"])]
        value = value if math.isfinite(value) else None
    return optuna.trial.create_trial(state=state, value=value, values=values, params=params,
                                     distributions=dists, user_attrs=attrs,
                                     intermediate_values=rec["reports"] or None)


def _space(space: Any) -> dict[str, BaseDistribution]:
    """Optuna distributions from a recorded space: Optuna's own JSON, a scikit-learn
    grid (a dict or list of dicts of value lists) or scipy distributions."""
    items = space if isinstance(space, list) else [space] if isinstance(space, dict) else []
    choices: dict[str, list] = {}
    out: dict[str, BaseDistribution] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        for name, spec in item.items():
            if isinstance(spec, list):
                if all(isinstance(c, (bool, int, float, str, type(None))) for c in spec):
                    seen = choices.setdefault(name, [])
                    seen.extend(c for c in spec if not any(c == s and type(c) is type(s) for s in seen))
            elif isinstance(spec, dict):
                d = _one(spec)
                if d is not None:
                    out[name] = d
    out.update({name: CategoricalDistribution(c) for name, c in choices.items()})
    return out


def _one(spec: dict) -> BaseDistribution | None:
    if "name" in spec and "attributes" in spec:  # optuna.distributions.distribution_to_json
        try:
            return json_to_distribution(json.dumps(spec))
        except (ValueError, KeyError, TypeError):
            return None
    name, args, kwds = spec.get("distribution"), list(spec.get("args") or []), dict(spec.get("kwds") or {})
    try:
        if name == "uniform" and not kwds:
            loc, scale = (args + [0.0, 1.0][len(args):])[:2]
            return FloatDistribution(float(loc), float(loc) + float(scale))
        if name in ("loguniform", "reciprocal") and len(args) == 2 and not kwds:
            return FloatDistribution(float(args[0]), float(args[1]), log=True)
        if name == "randint" and len(args) == 2 and not kwds:
            return IntDistribution(int(args[0]), int(args[1]) - 1)
    except (TypeError, ValueError):
        return None
    return None
