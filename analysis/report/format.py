"""Number, duration and status formats shared by the terminal and HTML reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "None"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def duration(s: Any) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f}s"
    return f"{s / 60:.1f}min" if s < 7200 else f"{s / 3600:.1f}h"


def status(s: Any) -> str:
    if s.running:
        return f"running ({len(s.running)} trial(s) not finished)"
    return "finished" if s.finished_at is not None else "open (never marked finished; no trial running)"


def training_facts(s: Any) -> list[str]:
    """How many trials EarlyStopping stopped and where; the best trial's learning rate."""
    t = s.training
    if t is None:
        return []
    facts = []
    stopped = t.trials.filter(t.trials["stopped_early"])
    if stopped.height:
        saved = stopped["epochs_saved"].drop_nulls()
        facts.append(f"early stopping: {stopped.height} of {t.trials.height} trials stopped early "
                     f"(median stop step {stopped['stop_step'].median():g}, median best step "
                     f"{stopped['best_step'].median():g}"
                     + (f", {saved.sum()} steps saved)" if saved.len() else ")"))
    best = t.trials.filter(t.trials["trial_number"] == s.best["trial_number"]) if s.best else None
    if t.lr_key is not None and best is not None and best.height and best["lr_first"][0] is not None:
        b = best.row(0, named=True)
        stop = f", stopped at step {b['stop_step']}" if b["stopped_early"] else ""
        facts.append(f"best trial {b['trial_number']}: {t.lr_key} {num(b['lr_first'])} -> "
                     f"{num(b['lr_last'])} over {b['steps']} steps{stop}")
    return facts


def tie_ratio(d: Any) -> str:
    """The tie test's n_test/n_train and where it came from (recorded or assumed)."""
    return f"n_test/n_train {num(d.test_train_ratio)}, {d.ratio_source}"
