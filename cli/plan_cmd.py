"""``hptrack plan``: the fits and time of a search before it runs (hptrack.analysis.plan_space)."""

from __future__ import annotations

import json
from typing import Any

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.options import FORMAT_OPT, store_root


def _json(ctx: Context, param, text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}): quote it for the shell and use double quotes "
                                 """inside, e.g. '{"C": [0.1, 1, 10]}'""") from None


@click.command("plan", short_help="How many fits a search runs and how long it takes, from recorded ones.")
@click.option("--like", metavar="SEARCH", default=None,
              help="A recorded search whose estimator, space, data size, cv and n_jobs are the defaults.")
@click.option("--estimator", metavar="PATH", default=None,
              help="The estimator's import path, e.g. sklearn.svm.SVC.")
@click.option("--grid", callback=_json, default=None, metavar="JSON",
              help='A grid: {"param": [values], ...} or a list of such objects.')
@click.option("--distributions", callback=_json, default=None, metavar="JSON",
              help='A random search\'s space: lists or {"distribution": "loguniform", "args": [0.01, 100]}.')
@click.option("--n-iter", type=click.IntRange(min=1), default=None,
              help="Candidates of a random search [default with --distributions: 10].")
@click.option("--cv", type=click.IntRange(min=2), default=None, help="Folds [default: 5].")
@click.option("--n-jobs", type=int, default=None, help="Workers, as scikit-learn's n_jobs (-1: every core).")
@click.option("--n-samples", type=click.IntRange(min=2), default=None, help="Rows of X.")
@click.option("--n-features", type=click.IntRange(min=1), default=None, help="Columns of X.")
@click.option("--refit/--no-refit", default=None, help="Whether the best candidate is refit [default: yes].")
@click.option("--random-state", type=int, default=None, help="The random search's seed.")
@FORMAT_OPT
@click.pass_context
def plan_cmd(ctx: Context, like: str | None, estimator: str | None, grid: Any, distributions: Any, n_iter: int | None,
             cv: int | None, n_jobs: int | None, n_samples: int | None, n_features: int | None,
             refit: bool | None, random_state: int | None, fmt: str) -> None:
    """How many fits a grid or random search runs (candidates x folds, + 1 refit)
    and how long it takes, estimated from the folds hptrack.sklearn recorded of the
    same estimator on data with as many features. With no such history the time
    is unknown and the output says so.

    \b
    Examples:
      hptrack plan --estimator sklearn.svm.SVC --grid '{"C": [0.1, 1, 10], "gamma": [0.01, 0.1]}' \\
                   --cv 5 --n-jobs 2 --n-samples 569 --n-features 30
      hptrack plan --like svc-grid --n-samples 5000 --n-jobs 4
      hptrack plan --like svc-grid --n-iter 50 \\
                   --distributions '{"C": {"distribution": "loguniform", "args": [0.01, 100]}}'
    """
    from hptrack.analysis.planning import plan_space

    if grid is not None and distributions is not None:
        raise click.UsageError("give --grid or --distributions, not both")
    if distributions is not None and n_iter is None:
        n_iter = 10
    if like is None and estimator is None:
        raise click.UsageError("give --estimator PATH (e.g. sklearn.svm.SVC) or --like SEARCH")
    if like is None and grid is None and distributions is None:
        raise click.UsageError("give the space: --grid JSON or --distributions JSON (or --like SEARCH)")
    p = plan_space(estimator, grid if grid is not None else distributions, like=like, n_samples=n_samples,
                   n_features=n_features, cv=cv, n_iter=n_iter, n_jobs=n_jobs, refit=refit,
                   random_state=random_state, store=store_root(ctx) if like else ctx.obj["store"])
    if fmt == "json":
        click.echo(output.dumps(p.to_dict()))
        return
    if fmt == "csv":
        fields = ["n_candidates", "n_folds", "n_fits", "workers", "seconds", "seconds_low", "seconds_high",
                  "history_folds"]
        click.echo(",".join(fields))
        click.echo(",".join("" if getattr(p, f) is None else str(getattr(p, f)) for f in fields))
        return
    click.echo(p.text)
    if p.basis:
        click.echo(f"model: {p.basis}")
    for note in p.notes:
        click.echo(f"note: {note}")
