"""hptrack analysis: which hyperparameters matter, whether the winner is overfit
to its validation data, and which strategy buys the best model for a budget.

Pure functions from tables to results; names are imported lazily so that
``import hptrack.analysis`` stays cheap.

>>> from hptrack import analysis
>>> analysis.importance("rf-grid")          # sensitivity (fANOVA, permutation, impurity)
>>> analysis.diagnose("rf-grid")            # hyperparameter-overfitting diagnostics
>>> analysis.compare(["grid", "random"])    # strategy comparison
>>> analysis.pareto("mlp-digits")           # multi-objective: Pareto front, hypervolume
>>> analysis.progress()                     # running searches: trials by state, best, ETA
>>> analysis.plan(GridSearchCV(...), X, y)  # fits and time of a search before it runs
>>> analysis.refine("svc-coarse")           # a narrower space to search next, as code
"""

import importlib
from typing import Any

_EXPORTS = {
    "importance": ".sensitivity",
    "interactions": ".sensitivity",
    "marginals": ".sensitivity",
    "analyse": ".sensitivity",
    "stability": ".sensitivity",
    "diagnose": ".overfitting",
    "compare": ".comparison",
    "IncomparableSearches": ".comparison",
    "pareto": ".multiobjective",
    "progress": ".search_progress",
    "refine": ".refinement",
    "Refinement": ".refinement",
    "lineage": ".population",
    "schedule": ".population",
    "plan": ".planning",
    "plan_space": ".planning",
    "Plan": ".planning",
}

__all__ = ["IncomparableSearches", "Plan", "Refinement", "analyse", "compare", "diagnose", "importance",
           "interactions", "lineage", "marginals", "pareto", "plan", "plan_space", "progress", "refine",
           "schedule", "stability"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'hptrack.analysis' has no attribute {name!r}")
