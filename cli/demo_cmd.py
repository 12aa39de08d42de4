"""``hptrack demo``: the whole product on real data in about two minutes."""

from __future__ import annotations

import click
from click import Context


@click.command("demo", short_help="Tune a random forest on breast_cancer with 4 strategies; report.")
@click.option("--quick", is_flag=True, help="A smaller run (about 20 s), for CI.")
@click.option("--html", "html", type=click.Path(dir_okay=False), default="report.html", show_default=True,
              help="Where to write the HTML report.")
@click.option("--store", "store", type=click.Path(file_okay=False), default=None,
              help="Store folder for the demo's searches (default: the group's --store, else ./.hptrack).")
@click.pass_context
def demo_cmd(ctx: Context, quick: bool, html: str, store: str | None) -> None:
    """Grid, random, Optuna TPE and successive-halving search of a random
    forest on scikit-learn's breast_cancer (F1, held-out test split), at an
    equal budget, recorded live into the store (--store, default ./.hptrack);
    then print the report and write it as HTML."""
    from hptrack.cli.demo import check_installed, run

    try:
        check_installed()
    except ImportError as err:
        raise click.ClickException(str(err)) from err
    store = store or ctx.obj["store"]
    run(store=store, quick=quick, html=html, echo=click.echo)
    click.echo(f"\nwrote {html}\ntry: hptrack ls; hptrack report; "
               "hptrack export SEARCH --format csv")
