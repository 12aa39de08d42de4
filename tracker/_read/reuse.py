"""Trials a search holds that it did not evaluate itself: copies of another search's
trial (``hptrack.sklearn.track(..., skip_done=True)``, an imported Optuna study's
warm-start trials), marked by a trial ``annotation`` whose payload holds
``reused_from`` (``{"search_id", "trial_id"}`` of the original)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hptrack._read.views import Connection


def reused_trials(con: Connection, search_ids: list[str]) -> dict[str, set[str]]:
    """``{search_id: {trial_id, ...}}`` of the reused trials of ``search_ids``."""
    rows = con.sql(
        "SELECT DISTINCT search_id, trial_id FROM events WHERE type = 'annotation' AND trial_id IS NOT NULL "
        "AND search_id IN (SELECT unnest(?::VARCHAR[])) AND TRY(payload -> 'reused_from') IS NOT NULL",
        params=[list(search_ids)]).fetchall()
    out: dict[str, set[str]] = {sid: set() for sid in search_ids}
    for sid, tid in rows:
        out[sid].add(tid)
    return out
