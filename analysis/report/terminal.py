"""``hptrack report`` in the terminal: the Report printed with rich.

At most 80 columns wide when not on a terminal (and then without colour
codes), one block per group of comparable searches: each search (trials by
state, failures, best configuration, importance, diagnostics), then the
strategy comparison and the axis it was made on. ``html`` shares the
number formats below.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hptrack.analysis.report.format import duration, num, status, tie_ratio, training_facts

if TYPE_CHECKING:
    from rich.console import Console

    from hptrack.analysis.multiobjective import Pareto
    from hptrack.analysis.report.model import Group, Report, SearchReport

__all__ = ["render_terminal"]


def render_terminal(rep: Report, console: Console | None = None) -> None:
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


def _say(console, markup, indent: int = 2, hang: int = 2) -> None:
    """One paragraph, wrapped to the console with continuation lines indented."""
    from rich.padding import Padding
    from rich.text import Text

    text = Text.from_markup(markup)
    console.print(Padding(text, (0, 0, 0, indent)) if not hang else _Hanging(text, indent, hang))


class _Hanging:
    """Rich renderable: first line at ``indent``, the rest at ``indent + hang``."""

    def __init__(self, text, indent, hang) -> None:
        self.text, self.indent, self.hang = text, indent, hang

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        width = max(20, options.max_width - self.indent - self.hang)
        lines = self.text.wrap(console, width)
        for i, line in enumerate(lines):
            yield Segment(" " * (self.indent + (self.hang if i else 0)))
            yield from line.render(console)
            yield Segment.line()


def _print_search(console, s: SearchReport) -> None:
    from rich.markup import escape

    console.print()
    _say(console, f"[bold]{escape(s.name)}[/bold]  strategy {s.strategy or '-'}, "
                  f"{s.direction} {s.metric}, {status(s)}, wall time {duration(s.wall_s)}", indent=0)
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
        test = f", test {num(s.test_score)}" if s.test_score is not None else ""
        _say(console, f"best: trial {b['trial_number']}, {s.metric} {num(b['value'])}{test}")
        params = ", ".join(f"{k}={num(v)}" for k, v in b["params"].items())
        _say(console, f"      {escape(params)}")
    if s.per_objective:
        for p in s.per_objective:
            _print_importance(console, f"importance, objective {p.objective} ({p.direction})",
                              p.importance, p.note, p.stability)
    else:
        _print_importance(console, "importance", s.importance, s.importance_note, s.importance_stability)
    _print_diagnosis(console, s)
    _print_training(console, s)


def _print_training(console, s) -> None:
    facts = training_facts(s)
    if facts:
        _say(console, "; ".join(facts))


PARETO_SHOWN = 8   # front members listed one per line


def _print_importance(console, title, imp, note, stability) -> None:
    from rich.markup import escape
    from rich.table import Table

    if imp is None:
        _say(console, f"{title}: {note}")
        return
    t = Table(title=None, box=None, pad_edge=False, show_header=True, header_style="bold")
    t.add_column("  param (fANOVA)")
    t.add_column("share", justify="right")
    t.add_column("var. fraction", justify="right")
    t.add_column("95% interval", justify="right")
    for row in imp.head(5).iter_rows(named=True):
        t.add_row(f"  {row['param']}", f"{row['share']:.0%}", num(row["importance"], 3),
                  f"{num(row['ci_low'], 3)} - {num(row['ci_high'], 3)}")
    _say(console, f"{title}:" + (f" {note}" if note else ""))
    console.print(t)
    _say(console, f"  {escape(stability or '')}")


def _print_pareto(console, s) -> None:
    """A multi-objective search has no single best trial: its Pareto front instead."""
    from rich.markup import escape

    p = s.pareto
    if p is None:
        _say(console, f"Pareto front: {escape(s.pareto_note)}")
        return
    objectives = ", ".join(f"{k} {d}" for k, d in enumerate(p.directions))
    ref = ", ".join(num(v) for v in p.reference_point)
    how = "given" if p.reference_given else "worst of each objective plus 10% of its range"
    _say(console, f"objectives: {objectives}")
    _say(console, f"Pareto front: {p.count} of {p.n_complete} complete trials; hypervolume "
                  f"{num(p.final_hypervolume)} (reference point {ref}, {how})")
    for row in pareto_rows(p, PARETO_SHOWN):
        _say(console, escape(row), indent=4)
    if p.count > PARETO_SHOWN:
        _say(console, f"... and {p.count - PARETO_SHOWN} more", indent=4)
    first = _first_reaching(p)
    if first is not None:
        _say(console, f"hypervolume reached 90% of its final value at trial {first}")


def pareto_rows(p: Pareto, limit: int) -> list[str]:
    """'trial 3: 0.12, 0.97 - alpha=0.01, ...' for the first ``limit`` front members
    (by objective 0, best first)."""
    front = p.front.sort(p.objectives[0], descending=p.directions[0] == "maximize").head(limit)
    params = [c for c in front.columns if c not in ("trial_number", "trial_id", *p.objectives)]
    return [f"trial {r['trial_number']}: {', '.join(num(r[c]) for c in p.objectives)}"
            + (" - " + ", ".join(f"{k}={num(r[k])}" for k in params) if params else "")
            for r in front.iter_rows(named=True)]


def _first_reaching(p, share: float = 0.9):
    """The trial number after which the hypervolume first reached ``share`` of its final value."""
    final = p.final_hypervolume
    if final <= 0:
        return None
    hit = p.hypervolume.filter(p.hypervolume["hypervolume"] >= share * final)
    return hit["trial_number"][0] if hit.height else None


def _print_diagnosis(console, s) -> None:
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
        facts.append(f"optimistic bias {num(d.optimistic_bias)}, corrected best {num(d.corrected_best)}")
    if d.val_test_gap is not None:
        facts.append(f"validation-test gap {num(d.val_test_gap)}")
    if d.p_best_stays_best is not None:
        facts.append(f"P(best stays best) {d.p_best_stays_best:.2f}")
    _say(console, "diagnostics: " + ("; ".join(facts) if facts else "none computed"))
    for w in d.warnings:
        _say(console, f"[yellow]warning:[/yellow] {escape(w)}")
    for what, why in list(d.not_computed.items())[:3]:
        if what != "all" and not str(why).startswith("no nested-CV run"):
            _say(console, f"not computed: {escape(what)}: {escape(str(why))}")


def _print_group(console, g: Group) -> None:
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
        t.add_column(col, justify="left" if j == "left" else "right")
    for r in c.summary.iter_rows(named=True):
        t.add_row(str(r["strategy"]), str(r["n_searches"]), num(r["final_best_mean"]),
                  num(r["best_at_horizon_mean"]), num(r["auc_mean"], 3), f"{r['mean_rank']:.2f}",
                  f"{r['budget_mean']:.4g}")
    console.print(t)
    _say(console, f"axis: {escape(c.why)}")
    # the verdict carries the numbers: mean ranks, Friedman p and n, or why no test ran
    if g.best_strategy is not None:
        _say(console, f"best strategy: [bold]{escape(g.best_strategy)}[/bold] - {escape(g.best_reason or '')}")
    else:
        _say(console, escape(g.best_reason or "no clear winner"))
