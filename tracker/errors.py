"""Exceptions hptrack raises. Each message names the problem and the fix."""


class HptrackError(Exception):
    """Base class of hptrack's own errors."""


class InvalidEvent(HptrackError, ValueError):
    """An event does not match the schema; the message names the field."""


class SearchNotFound(HptrackError, LookupError):
    """No search with that name or id in the store."""


class QueryRefused(HptrackError, PermissionError):
    """A query tried to write, or to read outside the store."""


class StoreError(HptrackError, OSError):
    """The store cannot be read or written."""


class Pruned(Exception):
    """Raise inside a trial to end it as pruned (like ``optuna.TrialPruned``)."""


class SearchSettingsConflict(HptrackError, ValueError):
    """A search name the store holds was opened with another strategy, direction or
    metric; the message names old and new values and the way out."""


class AppendingToSearch(UserWarning):
    """A search that holds trials (and is not open) was opened again: its new
    trials join the old ones. Silence with ``warnings.filterwarnings("ignore",
    category=hptrack.errors.AppendingToSearch)``."""


def missing_extra(err: ImportError, feature: str, extra: str) -> ImportError:
    """The ImportError an integration raises when its optional library is absent:
    it names what failed to import and the extra that installs it."""
    return ImportError(f"{feature} needs the '{extra}' extra ({err}): pip install 'hptrack[{extra}]'",
                       name=err.name)
