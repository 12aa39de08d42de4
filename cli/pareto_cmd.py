"""``hptrack pareto SEARCH``: the Pareto front of a multi-objective search (hptrack.analysis.pareto)."""

from __future__ import annotations

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, emit, store_root


def _point(ctx: Context, param, text):
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give one number per objective, comma-separated, "
                                 "e.g. 100,0.5") from None


@click.command("pareto", short_help="The Pareto front of a multi-objective search, and its hypervolume.")
@click.argument("search")
@click.option("--reference-point", callback=_point, default=None, metavar="V0,V1,...",
              help="The hypervolume's reference point, one value per objective in its own units "
                   "[default: each objective's worst value plus 10% of its range].")
@click.option("--show", "part", type=click.Choice(["front", "hypervolume"]), default="front",
              show_default=True, help="The front's members, or the hypervolume after each complete trial.")
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def pareto_cmd(ctx: Context, search: str, reference_point: list[float] | None, part: str | None, fmt: str,
               as_of: str | None) -> None:
    """The Pareto front of SEARCH (name or id): the complete trials no other
    trial beats in every objective (Optuna's study.best_trials), with their
    objectives (value_0, value_1, ...) and params; or the hypervolume they
    dominate after each complete trial.

    \b
    Examples:
      hptrack pareto mlp-digits
      hptrack pareto mlp-digits --show hypervolume --reference-point 1e6,0 --format csv
    """
    from hptrack._read.read import connect
    from hptrack.analysis.multiobjective import pareto

    con = connect(store_root(ctx), as_of, strict=ctx.obj["strict"])
    p = pareto(search, con=con, reference_point=reference_point)
    if fmt == "json" and part == "front":
        click.echo(output.dumps(p.to_dict()))
        return
    frame = p.front if part == "front" else p.hypervolume
    if fmt != "table":
        return emit(frame, fmt)
    objectives = ", ".join(f"{c} {d}" for c, d in zip(p.objectives, p.directions))
    click.echo(f"{p.count} of {p.n_complete} complete trials on the Pareto front ({objectives}); "
               f"hypervolume {output.cell(p.final_hypervolume, digits=5)} with reference point "
               f"{', '.join(output.cell(v, digits=5) for v in p.reference_point)}")
    output.print_frame(frame.drop("trial_id") if part == "front" else frame, digits=5)
