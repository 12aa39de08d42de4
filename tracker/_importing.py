"""What importers of history made elsewhere (Optuna studies, Ray Tune folders)
share: trial ids derived from the source, so that importing again recognises a
trial, and the state of the trials a search already holds."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hptrack._files.store import StoreLike


def derived_trial_id(search_id: str, *source: object) -> str:
    """16 hex digits from the search and what names the trial in its source."""
    return hashlib.sha256("\0".join([search_id, *map(str, source)]).encode()).hexdigest()[:16]


def known_trials(store: StoreLike, search_id: str) -> dict:
    """trial_id -> (state, n_reports) of the trials ``search_id`` holds in ``store``."""
    from hptrack._read.read import connect

    with connect(store) as con:
        return {tid: (state, n) for tid, state, n in con.sql(
            "SELECT trial_id, state, n_reports FROM trials WHERE search_id = ?", params=[search_id]).fetchall()}
