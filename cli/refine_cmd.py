"""``hptrack refine SEARCH``: a narrower space to search next, as code (hptrack.analysis.refine)."""

from __future__ import annotations

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, OBJECTIVE_OPT, emit, store_root


@click.command("refine", short_help="A narrower search space from a search's history, as code to paste.")
@click.argument("search")
@click.option("--top", type=click.FloatRange(0, 1, min_open=True), default=0.25, show_default=True,
              metavar="Q", help="The share of complete trials whose params set the refined ranges and categories.")
@click.option("--fix-below", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              metavar="F", help="Fix a param at the best trial's value when its fANOVA total effect (alone and "
                                "in interactions) is below F and its 95% interval reaches below F/5; never "
                                "on fewer than 30 complete trials (0: fix none).")
@click.option("--for", "target", type=click.Choice(["sklearn", "optuna", "both"]), default="both",
              show_default=True, help="Print a scikit-learn param_distributions dict, an Optuna suggest "
                                      "function, or both.")
@click.option("--seed", type=int, default=0, show_default=True, help="The importance fit's seed.")
@OBJECTIVE_OPT
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def refine_cmd(ctx: Context, search: str, top: float, fix_below: float, target: str, seed: int,
               objective: int | None, fmt: str, as_of: str | None) -> None:
    """A narrower search space for SEARCH (name or id), from its complete trials.

    Numeric ranges cover the best --top share of the trials, padded a little
    and reaching the nearest worse trial beyond them, on the log scale where the
    recorded space is log; integers stay integers. Categories that never appear
    among those top trials are dropped, and params that barely matter
    (--fix-below) are fixed at the best trial's value. Every entry of the code
    comes under a comment saying why. csv prints one row per param; json
    everything, the code included.

    \b
    Examples:
      hptrack refine svc-coarse
      hptrack refine svc-coarse --top 0.2 --for sklearn > refined_space.py
      hptrack refine mlp-digits --objective 0 --format json
    """
    from hptrack.analysis.refinement import refine

    r = refine(search, store_root(ctx), top=top, fix_below=fix_below, objective=objective, seed=seed,
               as_of=as_of)
    if fmt == "json":
        click.echo(output.dumps(r.to_dict()))
        return
    if fmt == "csv":
        return emit(r.frame(), fmt)
    parts = ([r.sklearn_code()] if target in ("sklearn", "both") else []) \
        + ([r.optuna_code()] if target in ("optuna", "both") else [])
    click.echo("\n\n".join(parts))
    click.echo(f"# importance: {r.stability}")
