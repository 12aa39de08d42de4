"""How training loops ended and what learning rates they used, read from a search's
events (``hptrack.training.summary``)."""

from hptrack._read.training import summary

__all__ = ["summary"]
