"""Plain training loops: early stopping (``hptrack.EarlyStopping``) that records each
trial's stop in its search."""

from hptrack.loops._early_stopping import EarlyStopping

__all__ = ["EarlyStopping"]
