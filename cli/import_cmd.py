"""``hptrack import-ray PATH``: a Ray Tune experiment folder as a search."""

from __future__ import annotations

import click
from click import Context

from hptrack.cli import output


@click.command("import-ray", short_help="Import a Ray Tune experiment folder (results, PBT forks).")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default=None, help="Search name (default: ray-<folder name>).")
@click.option("--metric", default=None,
              help="Result key to record (default: the experiment's TuneConfig metric).")
@click.option("--mode", type=click.Choice(["min", "max"]), default=None,
              help="Whether lower or higher --metric is better (required: Ray's folder "
                   "does not say in plain files).")
@click.option("--format", "fmt", type=click.Choice(("table", "json"), case_sensitive=False),
              default="table", show_default=True, help="table for people; json for programs.")
@click.pass_context
def import_ray_cmd(ctx: Context, path: str, name: str, metric: str | None, mode: str | None, fmt: str) -> None:
    """Write the Ray Tune experiment folder PATH (<storage_path>/<name>, as
    Tuner wrote it) into the store: a trial per Ray trial with its results,
    and for PopulationBasedTraining each exploit from pbt_global.txt /
    pbt_policy_*.txt as a fork (see `hptrack.analysis.lineage`). Ray's timestamps
    are kept. Importing the same folder again adds only what is new, so it
    can follow a run that is still going. Ray need not be installed.

    \b
    Examples:
      hptrack import-ray ~/ray_results/pbt_mnist --metric acc --mode max
      hptrack --store team/.hptrack import-ray runs/asha --name asha-v2 --mode min
    """
    from hptrack.ray._import import import_results

    result = import_results(path, name, ctx.obj["store"], metric=metric, mode=mode)
    if fmt == "json":
        click.echo(output.dumps(vars(result)))
        return
    news = (f"wrote {result.written} of {result.trials} trials" if result.written
            else f"nothing new in {result.trials} trials")
    click.echo(f"{result.name} ({result.search_id}): {news}, {result.forks} PBT forks"
               + (f", {result.running} still running" if result.running else ""))
