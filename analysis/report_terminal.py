"""``hptrack report`` in the terminal: the Report printed with rich.

At most 80 columns wide when not on a terminal (and then without colour
codes), one block per group of comparable searches: each search (trials by
state, failures, best configuration, importance, diagnostics), then the
strategy comparison and the axis it was made on. ``report_html`` shares the
number formats below.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # report.py imports this module to print what it builds
    from .report import Group, Report, SearchReport

__all__ = ["render_terminal"]


def _num(v, digits=4):
    if v is None:
        return "None"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def _duration(s):
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f}s"
    return f"{s / 60:.1f}min" if s < 7200 else f"{s / 3600:.1f}h"


def render_terminal(rep: Report, console=None) -> None:
    """Print ``rep`` with rich: at most 80 columns wide when not on a terminal
    (and then without colour codes), one block per group of comparable searches."""
    from rich.console import Console

    if console is None:
        console = Console(width=None if sys.stdout.isatty() else 80, highlight=False)
    console.rule("hptrack report")
    console.print(f"store {rep.store}")
    console.print(f"snapshot: as of {rep.as_of.isoformat(timespec='microseconds')}, {rep.n_events} events")
    console.print(f"  sha256 {rep.events_sha256}", soft_wrap=True)
    console.print(f"rebuild:  hptrack report --as-of {rep.as_of.isoformat(timespec='microseconds')}",
                  soft_wrap=True)
    if not rep.searches:
        console.print("no searches in this snapshot")
        return
    by_name = {s.name: s for s in rep.searches}
    for g in rep.groups:
        console.print()
        console.rule(f"task {g.task or '(none recorded)'} - {g.direction} {g.metric} - "
                     f"{len(g.searches)} search(es)")
        for name in g.searches:
            _print_search(console, by_name[name])
        _print_group(console, g)


def _say(console, markup, indent=2, hang=2):
    """One paragraph, wrapped to the console with continuation lines indented."""
    from rich.padding import Padding
    from rich.text import Text

    text = Text.from_markup(markup)
    console.print(Padding(text, (0, 0, 0, indent)) if not hang else _Hanging(text, indent, hang))


class _Hanging:
    """Rich renderable: first line at ``indent``, the rest at ``indent + hang``."""

    def __init__(self, text, indent, hang):
        self.text, self.indent, self.hang = text, indent, hang

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        width = max(20, options.max_width - self.indent - self.hang)
        lines = self.text.wrap(console, width)
        for i, line in enumerate(lines):
            yield Segment(" " * (self.indent + (self.hang if i else 0)))
            yield from line.render(console)
            yield Segment.line()


def _status(s):
    if s.running:
        return f"running ({len(s.running)} trial(s) not finished)"
    return "finished" if s.finished_at is not None else "open (never marked finished; no trial running)"


def _print_search(console, s: SearchReport):
    from rich.markup import escape
    from rich.table import Table

    console.print()
    _say(console, f"[bold]{escape(s.name)}[/bold]  strategy {s.strategy or '-'}, "
                  f"{s.direction} {s.metric}, {_status(s)}, wall time {_duration(s.wall_s)}", indent=0)
    st = s.states
    _say(console, f"trials: {sum(st.values())} = {st['complete']} complete, {st['pruned']} pruned, "
                  f"{st['failed']} failed, {st['running']} running")
    for n, err in s.failed[:5]:
        _say(console, f"[red]failed[/red]  trial {n}: {escape(str(err or 'no error recorded'))}")
    if len(s.failed) > 5:
        _say(console, f"... and {len(s.failed) - 5} more failed trials")
    if s.pruned:
        steps = ", ".join(f"{n}@{'-' if st_ is None else st_}" for n, st_ in s.pruned[:8])
        more = f" (+{len(s.pruned) - 8})" if len(s.pruned) > 8 else ""
        _say(console, f"[yellow]pruned[/yellow]  trial@step: {steps}{more}")
    for n, t in s.running[:5]:
        since = t.isoformat(timespec="seconds") if t is not None else "?"
        _say(console, f"[cyan]running[/cyan] trial {n}: started {since}, no result yet")
    if s.pareto is not None or s.pareto_note:
        _print_pareto(console, s)
    elif s.best is None:
        console.print("  best: none (no complete trial with a value)")
    else:
        b = s.best
        test = f", test {_num(s.test_score)}" if s.test_score is not None else ""
        _say(console, f"best: trial {b['trial_number']}, {s.metric} {_num(b['value'])}{test}")
        params = ", ".join(f"{k}={_num(v)}" for k, v in b["params"].items())
        _say(console, f"      {escape(params)}")
    if s.importance is not None:
        t = Table(title=None, box=None, pad_edge=False, show_header=True, header_style="bold")
        t.add_column("  param (fANOVA)")
        t.add_column("share", justify="right")
        t.add_column("var. fraction", justify="right")
        t.add_column("95% interval", justify="right")
        for row in s.importance.head(5).iter_rows(named=True):
            t.add_row(f"  {row['param']}", f"{row['share']:.0%}", _num(row["importance"], 3),
                      f"{_num(row['ci_low'], 3)} - {_num(row['ci_high'], 3)}")
        _say(console, "importance:" + (f" {s.importance_note}" if s.importance_note else ""))
        console.print(t)
        _say(console, f"  {escape(s.importance_stability)}")
    else:
        _say(console, f"importance: {s.importance_note}")
    _print_diagnosis(console, s)
    _print_training(console, s)


def _print_training(console, s):
    facts = training_facts(s)
    if facts:
        _say(console, "; ".join(facts))


def training_facts(s) -> list[str]:
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
        facts.append(f"best trial {b['trial_number']}: {t.lr_key} {_num(b['lr_first'])} -> "
                     f"{_num(b['lr_last'])} over {b['steps']} steps{stop}")
    return facts


PARETO_SHOWN = 8   # front members listed one per line


def _print_pareto(console, s):
    """A multi-objective search has no single best trial: its Pareto front instead."""
    from rich.markup import escape

    p = s.pareto
    if p is None:
        _say(console, f"Pareto front: {escape(s.pareto_note)}")
        return
    objectives = ", ".join(f"{k} {d}" for k, d in enumerate(p.directions))
    ref = ", ".join(_num(v) for v in p.reference_point)
    how = "given" if p.reference_given else "worst of each objective plus 10% of its range"
    _say(console, f"objectives: {objectives}")
    _say(console, f"Pareto front: {p.count} of {p.n_complete} complete trials; hypervolume "
                  f"{_num(p.final_hypervolume)} (reference point {ref}, {how})")
    for row in pareto_rows(p, PARETO_SHOWN):
        _say(console, escape(row), indent=4)
    if p.count > PARETO_SHOWN:
        _say(console, f"... and {p.count - PARETO_SHOWN} more", indent=4)
    first = _first_reaching(p)
    if first is not None:
        _say(console, f"hypervolume reached 90% of its final value at trial {first}")


def pareto_rows(p, limit) -> list[str]:
    """'trial 3: 0.12, 0.97 - alpha=0.01, ...' for the first ``limit`` front members
    (by objective 0, best first)."""
    front = p.front.sort(p.objectives[0], descending=p.directions[0] == "maximize").head(limit)
    params = [c for c in front.columns if c not in ("trial_number", "trial_id", *p.objectives)]
    return [f"trial {r['trial_number']}: {', '.join(_num(r[c]) for c in p.objectives)}"
            + (" - " + ", ".join(f"{k}={_num(r[k])}" for k in params) if params else "")
            for r in front.iter_rows(named=True)]


def _first_reaching(p, share=0.9):
    """The trial number after which the hypervolume first reached ``share`` of its final value."""
    final = p.final_hypervolume
    if final <= 0:
        return None
    hit = p.hypervolume.filter(p.hypervolume["hypervolume"] >= share * final)
    return hit["trial_number"][0] if hit.height else None


def _print_diagnosis(console, s):
    from rich.markup import escape

    d = s.diagnosis
    if d is None:
        _say(console, f"diagnostics: {s.diagnosis_note}")
        return
    facts = []
    if d.n_tied is not None:
        facts.append(f"{d.n_tied} config(s) tied with the best over {d.n_folds} folds "
                     f"({tie_ratio(d)})")
    if d.optimistic_bias is not None:
        facts.append(f"optimistic bias {_num(d.optimistic_bias)}, corrected best {_num(d.corrected_best)}")
    if d.val_test_gap is not None:
        facts.append(f"validation-test gap {_num(d.val_test_gap)}")
    if d.p_best_stays_best is not None:
        facts.append(f"P(best stays best) {d.p_best_stays_best:.2f}")
    _say(console, "diagnostics: " + ("; ".join(facts) if facts else "none computed"))
    for w in d.warnings:
        _say(console, f"[yellow]warning:[/yellow] {escape(w)}")
    for what, why in list(d.not_computed.items())[:3]:
        if what != "all" and not str(why).startswith("no nested-CV run"):
            _say(console, f"not computed: {escape(what)}: {escape(str(why))}")


def tie_ratio(d) -> str:
    """The tie test's n_test/n_train and where it came from (recorded or assumed)."""
    return f"n_test/n_train {_num(d.test_train_ratio)}, {d.ratio_source}"


def _print_group(console, g: Group):
    from rich.markup import escape
    from rich.table import Table

    if g.note:
        console.print()
        _say(console, g.note)
    c = g.comparison
    if c is None:
        return
    console.print()
    t = Table(title=f"strategy comparison (by {c.by}, common budget {c.horizon:.4g} {c.unit})", box=None,
              header_style="bold", title_justify="left")
    for col, j in (("strategy", "left"), ("searches", "right"), (f"best {g.metric}", "right"),
                   ("at budget", "right"), ("AUC", "right"), ("mean rank", "right"), ("spent", "right")):
        t.add_column(col, justify=j)
    for r in c.summary.iter_rows(named=True):
        t.add_row(str(r["strategy"]), str(r["n_searches"]), _num(r["final_best_mean"]),
                  _num(r["best_at_horizon_mean"]), _num(r["auc_mean"], 3), f"{r['mean_rank']:.2f}",
                  f"{r['budget_mean']:.4g}")
    console.print(t)
    _say(console, f"axis: {escape(c.why)}")
    # the verdict carries the numbers: mean ranks, Friedman p and n, or why no test ran
    if g.best_strategy is not None:
        _say(console, f"best strategy: [bold]{escape(g.best_strategy)}[/bold] - {escape(g.best_reason)}")
    else:
        _say(console, escape(g.best_reason or "no clear winner"))
