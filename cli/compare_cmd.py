"""``hptrack compare SEARCH...``: which strategy buys the best model for a budget?"""

from __future__ import annotations

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, OBJECTIVE_OPT, emit, store_root

_PARTS = ("summary", "searches", "curves", "bands", "ranks")


@click.command("compare", short_help="Compare strategies: best-so-far curves, ranks, tests.")
@click.argument("searches", nargs=-1, required=True)
@click.option("--by", type=click.Choice(["auto", "trials", "time", "resource", "compute"]), default="auto",
              show_default=True,
              help="The budget axis. auto: compute (full evaluations spent, pruned trials included) "
                   "when a search is multi-fidelity (halving, hyperband, pruning), else trials.")
@click.option("--target", type=float, default=None, help="A value to reach: report the cost to reach it.")
@click.option("--reference", type=float, default=None,
              help="The known optimum: report normalised regret.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True)
@click.option("--force", is_flag=True,
              help="Compare searches of different tasks or metrics anyway (the output says what "
                   "it mixed). Searches of one task are better told so: record task=... on each.")
@click.option("--show", "part", type=click.Choice(_PARTS), default="summary", show_default=True,
              help="Which table to print (json with summary prints everything).")
@OBJECTIVE_OPT
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def compare_cmd(ctx: Context, searches: tuple[str, ...], by: str, target: float | None, reference: float | None,
                alpha: float, force: bool, part: str | None, objective: int | None, fmt: str,
                as_of: str | None) -> None:
    """Compare SEARCHES (names or ids) of the same task and metric.

    The task is the `task` recorded with each search (task=...), else the data
    hptrack.sklearn fitted on, else its `dataset` attribute; searches of
    different tasks, metrics or directions are refused (--force compares
    different tasks or metrics anyway), and so is a nested-CV outer run. A
    strategy is the sampler with its pruner: tpe, tpe+median, tpe+hyperband.
    A best strategy is named only when its mean rank is strictly best and the
    Friedman test (and, for 3 or more, Nemenyi's against the runner-up) says
    the difference is significant at --alpha.

    Searches are grouped by their strategy; repeated seeds of a strategy give
    mean curves with 95% bootstrap bands, average ranks, a Friedman test and
    pairwise Wilcoxon signed-rank tests with Holm correction on the best value
    reached within the common budget. Only complete trials count as results;
    with --by compute (the default when a search is multi-fidelity) every
    trial, pruned ones included, is charged the compute it spent.

    \b
    Examples:
      hptrack compare grid-s0 grid-s1 random-s0 random-s1
      hptrack compare $(hptrack query "SELECT name FROM searches" --format csv | tail -n +2) --by time
      hptrack compare a b --target 0.95 --show searches --format csv
    """
    from hptrack._read.read import connect
    from hptrack.analysis.comparison import compare

    con = connect(store_root(ctx), as_of, strict=ctx.obj["strict"])
    r = compare(list(searches), by=by, target=target, reference=reference, alpha=alpha, con=con,
                force=force, objective=objective)
    frame = {"summary": r.summary, "searches": r.per_search, "curves": r.curves,
             "bands": r.bands, "ranks": r.ranks}[part]
    if fmt == "json" and part == "summary":
        click.echo(output.dumps(r.to_dict()))
        return
    if fmt != "table" or part != "summary":
        return emit(frame, fmt)
    click.echo(f"{r.why}\ncommon budget {output.cell(r.horizon, digits=5)} {r.unit}; "
               f"{r.direction} {r.metric}")
    output.print_frame(r.summary, digits=4)
    for line in _test_lines(r.tests):
        click.echo(line)
    click.echo(f"best strategy: {r.best} - {r.verdict}" if r.best else r.verdict)


def _test_lines(tests):
    if "skipped" in tests:
        return [f"No significance tests: {tests['skipped']}."]
    f = tests["friedman"]
    lines = [(f"Friedman over {tests['n_blocks']} paired runs: chi2 = {f['chi2']:.3g} (p = {f['p']:.3g}), "
              f"Iman-Davenport F = {f['iman_davenport_f']:.3g} (p = {f['p_f']:.3g})")]
    if "nemenyi" in tests:
        sig = [f"{p['a']} vs {p['b']}" for p in tests["nemenyi"]["pairs"] if p["significant"]]
        lines.append(f"Nemenyi critical difference {tests['nemenyi']['cd']:.3g}: "
                     f"{', '.join(sig) if sig else 'no pair differs'}")
    for w in tests["wilcoxon_holm"]:
        better = w["a"] if w["mean_diff"] > 0 else w["b"]
        verdict = f"{better} better" if w["significant"] else "no significant difference"
        lines.append(f"Wilcoxon {w['a']} vs {w['b']}: p (Holm) = {w['p_holm']:.3g}, {verdict}")
    return lines
