"""hptrack: an event-sourced tracker for hyperparameter searches.

Write::

    import hptrack
    with hptrack.search("rf-grid", strategy="grid", metric="f1") as s:
        with s.trial({"max_depth": 5}) as t:
            t.report(1, 0.80)
            t.complete(0.85)

Read::

    con = hptrack.connect()          # DuckDB: events, searches, trials, params, reports, scores
    df = hptrack.trials("rf-grid")   # polars, one row per trial, one column per param
"""

from hptrack._files.store import Store
from hptrack._maintain.compaction import compact
from hptrack._maintain.verification import verify
from hptrack._read.overview import ls, show
from hptrack._read.read import connect, trials
from hptrack._read.sql import query
from hptrack._write.writer import Writer
from hptrack.api import Search, Trial, score_trial, search, track
from hptrack.errors import (
    AppendingToSearch,
    HptrackError,
    InvalidEvent,
    Pruned,
    QueryRefused,
    SearchNotFound,
    SearchSettingsConflict,
    StoreError,
)
from hptrack.loops import EarlyStopping
from hptrack.schema import SCHEMA_VERSION

__version__ = "0.1.0"

__all__ = [
    "AppendingToSearch", "EarlyStopping", "HptrackError", "InvalidEvent", "Pruned", "QueryRefused", "SCHEMA_VERSION",
    "Search", "SearchNotFound", "SearchSettingsConflict", "Store", "StoreError", "Trial", "Writer",
    "compact", "connect", "ls", "query",
    "score_trial", "search", "show", "track", "trials", "verify",
]


def __getattr__(name: str) -> object:
    # integrations with heavy optional dependencies (Optuna, process pools) load on first use
    import importlib
    if name in ("optuna", "pbt", "ray", "sklearn", "loops", "training"):
        return importlib.import_module(f".{name}", __name__)
    # hptrack.report / hptrack.export: functions whose modules load on first use
    if name == "report":
        return importlib.import_module(".analysis.report", __name__).report
    if name == "export":
        return importlib.import_module("._read.exports", __name__).export
    raise AttributeError(f"module 'hptrack' has no attribute {name!r}")
