"""``hptrack diagnose SEARCH``: is the winner overfit to its validation data?"""

from __future__ import annotations

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, emit, store_root

_SHOWN = ("search", "metric", "direction", "n_trials", "n_configs", "n_folds", "best_trial_number",
          "best_params", "best_value", "best_cv", "best_cv_se", "n_tied", "test_train_ratio",
          "ratio_source", "optimistic_bias",
          "corrected_best",
          "corrected_ci", "tibshirani_bias", "p_best_stays_best", "top_k_kendall_tau",
          "test_score", "val_test_gap", "nested")


@click.command("diagnose", short_help="Is the best configuration overfit to its validation data?")
@click.argument("search")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level of the tie test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstraps.")
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def diagnose_cmd(ctx: Context, search: str, alpha: float, seed: int, fmt: str, as_of: str | None) -> None:
    """Hyperparameter-overfitting diagnostics of SEARCH (a name or id).

    From the fold scores (split='fold', written by hptrack.sklearn.track):
    how many configurations are statistically tied with the best (corrected
    resampled t-test, whose n_test/n_train is taken from the recorded fold
    sizes when there are any, else assumed 1/(J-1) as for k-fold CV: both shown
    as test_train_ratio and ratio_source), how optimistic the best CV score is (BBC-CV and
    Tibshirani-Tibshirani) and how often the winner stays best over bootstrap
    resamples of the folds; the validation-test gap when the best trial has a
    test score; the nested-CV estimate when a nested run exists. What cannot be
    computed is listed with the reason.

    \b
    Examples:
      hptrack diagnose rf-grid
      hptrack diagnose rf-grid --format json | jq .warnings
    """
    from hptrack._read.read import connect
    from hptrack.analysis.overfitting import diagnose

    con = connect(store_root(ctx), as_of, strict=ctx.obj["strict"])
    d = diagnose(search, alpha=alpha, seed=seed, con=con)
    if fmt == "json":
        click.echo(output.dumps(d.to_dict()))
        return
    data = d.to_dict()
    if fmt == "csv":
        import polars as pl

        rows = [(k, output.dumps(data[k]) if isinstance(data[k], (dict, list)) else
                 (None if data[k] is None else str(data[k]))) for k in _SHOWN + ("warnings",)]
        return emit(pl.DataFrame(rows, schema=["field", "value"], orient="row"), "csv")
    lines = [f"{k}: {_show(data[k])}" for k in _SHOWN if data[k] is not None]
    click.echo("\n".join(lines))
    if d.not_computed:
        click.echo("\nNot computed:")
        for k, why in d.not_computed.items():
            click.echo(f"  {k}: {why}")
    click.echo("\nWarnings:" if d.warnings else "\nNo warnings.")
    for w in d.warnings:
        click.echo(f"  - {w}")


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(output.cell(v, digits=5) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={'None' if v is None else output.cell(v, digits=5)}" for k, v in value.items())
    return output.cell(value, digits=5)
