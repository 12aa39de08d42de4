"""The warnings of :mod:`hptrack.sklearn`: it recorded less than it should, the fit went on."""

from __future__ import annotations


class TrackingWarning(UserWarning):
    """hptrack.sklearn could not record a search fully; the search's own ``fit`` was untouched.

    At most one per ``fit``; filter this class to silence both kinds below."""


class LiveRecordingOff(TrackingWarning):
    """The live per-fold recording cannot run on this scikit-learn (a private name it
    relies on moved, changed its signature, or the version is outside the tested
    range): the search is recorded from ``cv_results_`` after ``fit``."""


class RecordingFailed(TrackingWarning):
    """Recording raised during a fit (e.g. the store became unwritable); live per-fold
    recording is off for the rest of that fit, which goes on, and what ``cv_results_``
    holds is recorded after it where the store allows."""
