"""Opening a search name that exists: one name is one experiment.

The same settings (strategy, direction(s), metric, an explicit task) append to the search; other
settings are refused before anything is written, since their values would be
ranked together with the old ones (log losses maximised as accuracies).
Appending to a search that holds trials and is not open right now (a script
run again, a notebook cell run again) says so once, as an
:class:`~hptrack.errors.AppendingToSearch` warning; opening a search that is
open (workers of one distributed study, threads) says nothing.

What the store holds is read from the search's own partition and the
write-ahead logs only, never from every event of the store.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

from hptrack._files.store import Store
from hptrack.errors import AppendingToSearch, SearchSettingsConflict
from hptrack.schema import ROW_FIELDS

# The settings that make two searches one experiment, in the order the error names them.
COMPARED = ("directions", "metric", "strategy", "task")
_MARKERS = ("search_started", "search_finished", "trial_started")
_TYPE, _SEARCH = ROW_FIELDS.index("type"), ROW_FIELDS.index("search_id")  # in a logged row


@dataclass
class Recorded:
    """What a store holds of one search."""
    settings: dict   # the COMPARED settings of its first search_started (as the searches view)
    n_trials: int
    open: bool       # started again since its last finish (running elsewhere, or crashed)
    studies: set     # the Optuna studies it was recorded from (payload optuna_study)


def settings_of(payload: dict) -> dict:
    """The COMPARED settings of a search_started payload; None where it has none."""
    directions = payload.get("directions") or (
        [payload["direction"]] if payload.get("direction") is not None else None)
    return {"directions": list(directions) if directions else None,
            "metric": payload.get("metric"), "strategy": payload.get("strategy"),
            "task": payload.get("task") or None}


def recorded(st: Store, search_id: str) -> Recorded | None:
    """What ``st`` holds of ``search_id`` (None: nothing), from its partition's
    segments and the logs; a damaged segment is skipped (readers name it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from hptrack._read.views import wal_table

    cols = ["event_id", "ts", "type", "trial_id", "payload"]
    parts = []
    wal, _ = wal_table(st, keep=lambda row: len(row) > _SEARCH and row[_SEARCH] == search_id
                       and row[_TYPE] in _MARKERS)
    if wal.num_rows:
        parts.append(_markers(wal.filter(pc.equal(wal["search_id"], search_id)).select(cols)))
    # Store._walk lists one folder (Store has no public per-search listing yet)
    for path in st._walk(st.partition_dir(search_id)):
        if not path.endswith(".parquet") or path.rsplit("/", 1)[-1].startswith("."):
            continue
        try:
            parts.append(_markers(st.parquet_file(path).read(columns=cols)))
        except (OSError, pa.ArrowException):
            continue  # gone since listed (compacted), or damaged
    events = pa.concat_tables(parts, promote_options="permissive") if parts else None
    if events is None or events.num_rows == 0:
        return None
    rows = events.to_pylist()
    started = [r for r in rows if r["type"] == "search_started"]
    if not started:
        return None  # trials without a search_started: nothing to compare with
    started.sort(key=lambda r: r["event_id"])
    payloads = [_payload(r) for r in started]
    finished = [r["ts"] for r in rows if r["type"] == "search_finished"]
    trials = {r["trial_id"] for r in rows if r["type"] == "trial_started"}
    is_open = not finished or max(finished) < max(r["ts"] for r in started)
    studies = {p["optuna_study"] for p in payloads if isinstance(p.get("optuna_study"), str)}
    return Recorded(settings_of(payloads[0]), len(trials), is_open, studies)


def _payload(row) -> dict:
    import json

    try:
        payload = json.loads(row["payload"] or "{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _markers(table):
    """The rows of ``table`` that say what a search is (its starts, finishes, trials)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    types = pc.cast(table["type"], pa.string())  # stored as a dictionary column
    return table.set_column(table.schema.get_field_index("type"), "type", types).filter(
        pc.is_in(types, value_set=pa.array(_MARKERS, pa.string())))


def conflicts(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """(setting, old value, new value) of each setting both know and that differs."""
    return [(k, old[k], new[k]) for k in COMPARED
            if old.get(k) is not None and new.get(k) is not None and old[k] != new[k]]


def _shown(key: str, value):
    if key == "directions" and len(value) == 1:
        return "direction", value[0]
    return key, value


def conflict_error(name: str, root: str, found: list) -> SearchSettingsConflict:
    olds = ", ".join("{}={!r}".format(*_shown(k, o)) for k, o, _ in found)
    news = ", ".join("{}={!r}".format(*_shown(k, n)) for k, _, n in found)
    new = _shown(found[0][0], found[0][2])[1]
    example = f"{name}-{new if isinstance(new, str) else '-'.join(new)}"
    return SearchSettingsConflict(
        f"search {name!r} in store {root} was recorded with {olds}; opening it with {news} "
        f"would rank the new trials together with the old ones. Use a new name for the new "
        f"settings (e.g. {example!r}), or open "
        f"{name!r} with {olds} to append to it. Nothing was written.")


# --- this process's open searches ----------------------------------------------------
# (store root, search id) -> [settings, number of Search objects open here]. Opening a
# search this process has open needs no read of the store (threads, a callback and a
# decorator on one study), and a search opened here but not yet flushed is still checked.
_opened: dict[tuple[str, str], list] = {}
_lock = threading.Lock()


def check(name: str, st: Store, search_id: str, settings: dict, *, quiet: bool = False,
          study: str | None = None) -> dict | None:
    """Refuse other settings for an existing search; say once that a script
    appends to a search it does not have open, unless ``quiet`` (importers) or
    the search was recorded from the same Optuna ``study`` (which goes on).
    Registers the search as open in this process; :func:`closed` undoes that.
    Returns the settings recorded for the search (None: a new one); a setting
    left None in ``settings`` is not compared, and the caller takes the recorded one."""
    key = (st.root, search_id)
    with _lock:
        known = _opened.get(key)
        if known is not None and known[1] > 0:
            found = conflicts(known[0], settings)
            if found:
                raise conflict_error(name, st.root, found)
            known[1] += 1
            return known[0]
    rec = recorded(st, search_id)
    old = rec.settings if rec is not None else (known[0] if known is not None else None)
    found = conflicts(old, settings) if old is not None else []
    if found:
        raise conflict_error(name, st.root, found)
    if rec is not None and rec.n_trials and not rec.open and not quiet and study not in rec.studies:
        warnings.warn(AppendingToSearch(
            f"hptrack: appending to {name!r}, {rec.n_trials} trial(s) already (store {st.root}); "
            "pass a new name to start a new search"), **_outside_hptrack())
    with _lock:
        entry = _opened.setdefault(key, [{**(old or {}), **{k: v for k, v in settings.items() if v is not None}}, 0])
        entry[1] += 1
    return old


def _outside_hptrack() -> dict:
    """warnings.warn arguments naming the user's line, not one of hptrack's."""
    import os
    import sys

    if sys.version_info >= (3, 12):
        return {"skip_file_prefixes": (os.path.dirname(os.path.abspath(__file__)) + os.sep,)}
    return {"stacklevel": 4}  # check <- Search <- search() <- the caller


def closed(st: Store, search_id: str) -> None:
    """A Search of this process has finished."""
    with _lock:
        entry = _opened.get((st.root, search_id))
        if entry is not None and entry[1] > 0:
            entry[1] -= 1
