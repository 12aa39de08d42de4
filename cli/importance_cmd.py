"""``hptrack importance SEARCH``: which hyperparameters matter (hptrack.analysis.importance)."""

from __future__ import annotations

import click
from click import Context

from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, MAX_TRIALS_OPT, OBJECTIVE_OPT, emit, store_root

# hptrack.analysis.sensitivity.METHODS, without importing the analysis to parse the command line
_METHODS = click.Choice(["fanova", "ped_anova", "permutation", "impurity"], case_sensitive=False)


@click.command("importance")
@click.argument("search")
@click.option("--method", type=_METHODS, default="fanova", show_default=True,
              help="fanova: share of the objective's variance over the whole space that each "
                   "param explains alone; ped_anova: how differently the top 10% of trials chose "
                   "each param (Optuna 5's default); permutation: drop in held-out R^2 when a param is "
                   "shuffled; impurity: a random forest's mean decrease in impurity.")
@click.option("--interactions", "pairs", is_flag=True,
              help="Show the pairwise interaction fractions (fanova second order) instead.")
@click.option("--top-quantile", type=click.FloatRange(0, 1, min_open=True), default=None,
              metavar="Q", help="Analyse only the best Q of the trials, e.g. 0.2.")
@click.option("--budget", metavar="STEP", default=None,
              help="Analyse every trial's reported value at STEP (or 'common': the last step "
                   "all trials reached), pruned trials included.")
@click.option("--seed", type=int, default=0, show_default=True)
@OBJECTIVE_OPT
@MAX_TRIALS_OPT
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def importance_cmd(ctx: Context, search: str, method: str, pairs: bool, top_quantile: float | None,
                   budget: str | int | None, seed: int, objective: int | None, max_trials: int,
                   fmt: str, as_of: str | None) -> None:
    """Importance of each hyperparameter of SEARCH (name or id).

    'importance' is the method's own number (for fanova, the raw first-order
    variance fraction: these sum to at most 1, the rest is interactions);
    'share' is the same normalised to sum to 1, as Optuna prints it;
    'ci_low'/'ci_high' a 95% bootstrap interval over refits on resampled
    trials. Below the table (on stderr for csv/json) a line says whether the
    top param stays top over those refits, or "ranking unstable". Failed,
    pruned and running trials are left out.

    \b
    Examples:
      hptrack importance rf-random
      hptrack importance rf-random --method permutation --format csv
      hptrack importance rf-random --interactions
      hptrack importance mlp-digits --objective 1
    """
    from hptrack.analysis.sensitivity import interactions, stability

    if budget is not None and budget != "common":
        try:
            budget = int(budget)
        except ValueError:
            raise click.BadParameter("a step number or 'common'", param_hint="--budget") from None
    kw = {"store": store_root(ctx), "seed": seed, "top_quantile": top_quantile, "budget": budget, "as_of": as_of,
          "max_trials": max_trials or None, "objective": objective}
    if pairs:
        if method != "fanova":
            raise click.BadParameter("interactions come from fanova only", param_hint="--method")
        emit(interactions(search, **kw), fmt)
        return
    st = stability(search, method=method.lower(), **kw)
    emit(st.importance, fmt)
    # a table is for people: the statement goes with it; csv / json stay parseable on stdout
    click.echo(st.note, err=fmt != "table")
