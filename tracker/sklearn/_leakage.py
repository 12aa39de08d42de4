"""What the data handed to a search says about preprocessing done before it.

Recorded with ``search_started`` (attribute ``leakage``) for the leakage check of
``hptrack.analysis.diagnose``. These are facts about X, y and the estimator, not
verdicts (the analysis weighs them):

- ``scaled``: ``"standard"`` when every non-constant column of X has mean 0 and
  standard deviation 1 over all rows (StandardScaler fitted on all of them),
  ``"minmax"`` when every one spans exactly [0, 1] and most take values inside it
  (MinMaxScaler; columns that are only 0/1 are data, not scaling), else None.
  Measured data does not land on those moments to 1e-6 by chance.
- ``target``: the column most correlated with y (numeric y, or two classes) and
  its Pearson r, when |r| >= 0.9.
- ``in_cv``: the class names of the steps a Pipeline runs before its final
  estimator (inside every CV fit), nested pipelines, column transformers and
  feature unions included; empty for a bare estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TOLERANCE = 1e-6      # how close to mean 0 / std 1 / [0, 1] a column is when a scaler made it
TARGET_FLOOR = 0.9    # |r| from which the most target-like column is recorded


def leakage_facts(X: Any, y: Any, estimator: Any) -> dict:
    facts: dict = {"scaled": None, "target": None, "in_cv": steps_in_cv(estimator)}
    arr = _numeric(X)
    if arr is None or arr.ndim != 2 or arr.shape[0] < 3 or arr.shape[1] == 0:
        return facts
    facts["scaled"] = _scaled(arr)
    facts["target"] = _target_like(arr, y, _names(X, arr.shape[1]))
    return facts


def steps_in_cv(estimator: Any) -> list[str]:
    """Class names of the transformers a (nested) Pipeline fits inside each CV fit."""
    out: list[str] = []

    def walk(est: Any, final: bool) -> None:
        if isinstance(est, str) or est is None:   # "drop", "passthrough"
            return
        steps = getattr(est, "steps", None)
        if isinstance(steps, list) and steps and all(isinstance(s, tuple) for s in steps):  # a Pipeline
            for i, (_, step) in enumerate(steps):
                walk(step, final and i == len(steps) - 1)
            return
        parts = getattr(est, "transformers", None) or getattr(est, "transformer_list", None)
        if isinstance(parts, list):           # ColumnTransformer, FeatureUnion
            for part in parts:
                walk(part[1], False)
            return
        if not final:
            out.append(type(est).__name__)

    walk(estimator, True)
    return out


def _numeric(X: Any) -> np.ndarray | None:
    if hasattr(X, "tocsr"):  # sparse: scaling a sparse matrix does not centre it
        return None
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if np.isfinite(arr).all() else None


def _names(X: Any, p: int) -> list[str]:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None and len(cols) == p else [f"x{j}" for j in range(p)]


def _scaled(arr: np.ndarray) -> str | None:
    std = arr.std(axis=0)
    varying = std > 0
    if not varying.any():
        return None
    a = arr[:, varying]
    mean, std = a.mean(axis=0), std[varying]
    if np.all(np.abs(mean) <= TOLERANCE) and np.all(np.abs(std - 1) <= TOLERANCE):
        return "standard"
    lo, hi = a.min(axis=0), a.max(axis=0)
    inside = ((a > 0) & (a < 1)).any(axis=0)
    if np.all(np.abs(lo) <= TOLERANCE) and np.all(np.abs(hi - 1) <= TOLERANCE) and inside.mean() >= 0.5:
        return "minmax"
    return None


def _target_like(arr: np.ndarray, y: Any, names: list[str]) -> dict | None:
    if y is None:
        return None
    yv = np.asarray(y)
    if yv.ndim != 1 or len(yv) != len(arr):
        return None
    if yv.dtype.kind not in "fc":
        labels = np.unique(yv)
        if len(labels) != 2:  # a class code of three or more classes has no order to correlate with
            return None
        yv = (yv == labels[1]).astype(float)
    yv = yv.astype(float)
    if not np.isfinite(yv).all() or yv.std() == 0:
        return None
    xs = arr - arr.mean(axis=0)
    sd = arr.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xs * (yv - yv.mean())[:, None]).mean(axis=0) / (sd * yv.std())
    r = np.where(sd > 0, r, 0.0)
    j = int(np.argmax(np.abs(r)))
    if abs(r[j]) < TARGET_FLOOR:
        return None
    return {"column": names[j], "r": float(r[j])}
