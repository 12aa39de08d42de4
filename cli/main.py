"""The ``hptrack`` command: thin click commands over the library.

Each command is one library call (hptrack.ls / show / query / verify /
compaction, ...) plus formatting from cli/output.py. Errors are one line
on stderr starting with ``Error:`` (exit 2 for usage, 1 otherwise); ``--debug``
adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import TYPE_CHECKING

import click
from click import Context

from hptrack.cli import output
from hptrack.cli.compare_cmd import compare_cmd
from hptrack.cli.demo_cmd import demo_cmd
from hptrack.cli.diagnose_cmd import diagnose_cmd
from hptrack.cli.export_cmd import export_cmd
from hptrack.cli.import_cmd import import_ray_cmd
from hptrack.cli.importance_cmd import importance_cmd
from hptrack.cli.options import AS_OF_OPT, FORMAT_OPT, emit, store_root
from hptrack.cli.pareto_cmd import pareto_cmd
from hptrack.cli.plan_cmd import plan_cmd
from hptrack.cli.refine_cmd import refine_cmd
from hptrack.cli.report_cmd import report_cmd
from hptrack.cli.watch_cmd import watch_cmd

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


# --- errors: one line, no traceback unless --debug -----------------------------
def _one_line(exc: BaseException) -> str:
    import duckdb

    from hptrack._read.sql import one_line
    from hptrack.errors import HptrackError

    if isinstance(exc, duckdb.Error):
        # Raised while opening the store's files, not by the user's SQL (query()
        # turns those into its own errors): most likely a damaged file.
        return f"{one_line(exc)} (if a store file is damaged, `hptrack verify` names it)"
    text = " ".join(str(exc).split())
    if isinstance(exc, (HptrackError, ValueError, TypeError, LookupError, OSError)):
        return text or type(exc).__name__
    # Anything else is unexpected: say what it was and how to see more.
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


class _Failed(click.ClickException):
    exit_code = 1


class HptrackGroup(click.Group):
    def invoke(self, ctx: Context) -> Any:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                try:
                    return super().invoke(ctx)
                finally:
                    # a library warning (e.g. a damaged file left out) as one plain line
                    for w in caught:
                        click.echo(f"Warning: {str(w.message).removeprefix('hptrack: ')}", err=True)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                traceback.print_exc(file=sys.stderr)
            raise _Failed(_one_line(e)) from e

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else (prog_name or "hptrack")
            click.echo(f"Error: {' '.join(e.format_message().split())} "
                       f"(see '{where} --help')", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`hptrack query ... | head`): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


# --- the group -------------------------------------------------------------------
@click.group(cls=HptrackGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.option("--store", metavar="PATH", envvar="HPTRACK_STORE", default=".hptrack",
              show_default="$HPTRACK_STORE or ./.hptrack",
              help="The store folder.")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.option("--strict", is_flag=True,
              help="Fail when a store file is damaged, instead of leaving it out with a warning.")
@click.version_option(package_name="hptrack", prog_name="hptrack")
@click.pass_context
def cli(ctx: Context, store: str | None, debug: bool, strict: bool) -> None:
    """hptrack: every hyperparameter search as an immutable event log, queryable with SQL.

    The store holds the views events, searches, trials, params, reports and
    scores; `hptrack query` runs read-only SQL over them.

    \b
    Examples:
      hptrack ls
      hptrack show rf-grid
      hptrack query "SELECT name, n_trials FROM searches" --format csv
      hptrack --store runs/.hptrack verify
    """
    ctx.obj = {"store": store, "debug": debug, "strict": strict}


def _print(table) -> None:
    output.print_table(table)


# --- ls ----------------------------------------------------------------------------
def _started(value) -> str:
    return output.cell(value, seconds=True)[5:16]  # MM-DD HH:MM: the year rarely helps here


def _trial_counts(row) -> str:
    """ "7" when every trial completed, else "7 (1 failed, 2 running)"."""
    others = [f"{row[k]} {label}" for k, label in (("n_failed", "failed"), ("n_pruned", "pruned"),
                                                   ("n_running", "running")) if row[k]]
    return f"{row['n_trials']} ({', '.join(others)})" if others else str(row["n_trials"])


@cli.command("ls", short_help="List the searches: strategy, objective, trials, best value.")
@FORMAT_OPT
@AS_OF_OPT
@click.pass_context
def ls_cmd(ctx: Context, fmt: str, as_of: str | None) -> None:
    """List the searches in the store: strategy, objective, trials by state, best value.

    The best value is the best complete trial in the search's direction.
    csv and json give one column per field (n_complete, n_failed, ...).

    \b
    Examples:
      hptrack ls
      hptrack ls --format json | jq '.[].best'
      hptrack ls --as-of 2026-11-27T09:00:00Z
    """
    from hptrack._read.overview import ls

    df = ls(store_root(ctx), as_of=as_of, strict=ctx.obj["strict"])
    if fmt != "table":
        return emit(df, fmt)
    if df.is_empty():
        click.echo(f"No searches in {store_root(ctx)} yet.")
        return
    rows = []
    for r in df.iter_rows(named=True):
        objective = f"{'min' if r['direction'] == 'minimize' else 'max'} {r['metric'] or 'value'}"
        rows.append([r["name"], r["strategy_label"] or "", objective, _trial_counts(r),
                     output.cell(r["best"], digits=5), _started(r["started_at"])])
    # Within 80 columns for usual names; only the trials cell folds when squeezed.
    _print(output.table(["search", "strategy", "objective", "trials", "best", "started UTC"], rows,
                        numeric={"best"},
                        # a name is an identifier people copy: never fold it; the trials
                        # cell is the one that wraps (between words) when the table is squeezed
                        no_wrap={"search", "strategy", "objective", "best", "started UTC"},
                        min_widths={"trials": 7}))


# --- show --------------------------------------------------------------------------
_SETTINGS_SKIP = {"n_trials", "n_complete", "n_failed", "n_pruned", "n_running", "best", "best_trial"}


@cli.command("show", short_help="A search's settings and its trials, best first.")
@click.argument("search")
@FORMAT_OPT
@AS_OF_OPT
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show only the first N trials (the N best).")
@click.pass_context
def show_cmd(ctx: Context, search: str, fmt: str, as_of: str | None, limit: int | None) -> None:
    """Show a search's settings and its trials with their params, best first.

    SEARCH is a search name or id (see `hptrack ls`). Complete trials come
    first, ordered by value in the search's direction, then running, pruned and
    failed ones. csv prints the trials only; json prints {"search": ..., "trials": [...]}.

    \b
    Examples:
      hptrack show rf-grid
      hptrack show rf-grid --limit 5
      hptrack show rf-grid --format csv > trials.csv
    """
    from hptrack._read.overview import show
    from hptrack._read.read import connect

    con = connect(store_root(ctx), as_of, strict=ctx.obj["strict"])  # one snapshot for both reads
    view = show(search, con=con)
    trials = view.trials if limit is None else view.trials.head(limit)
    if fmt == "csv":
        return emit(trials, "csv")
    training = _training(con, search)
    if fmt == "json":
        extra = {"training": training.trials.to_dicts()} if training is not None else {}
        click.echo(output.dumps({"search": view.settings, "trials": trials.to_dicts(), **extra}))
        return
    s = view.settings
    lines = [f"{k}: {output.cell(v, seconds=k.endswith('_at'))}"
             for k, v in s.items() if k not in _SETTINGS_SKIP and v is not None]
    lines.insert(2, f"trials: {_trial_counts(s)}")
    if s.get("best") is not None and not s.get("directions"):
        lines.insert(3, f"best: {output.cell(s['best'])} (trial #{s['best_trial']})")
    lines[3:3] = _objective_lines(s, view.trials)
    click.echo("\n".join(lines))
    if trials.is_empty():
        click.echo("\nNo trials yet.")
        return
    import polars as pl

    shown = (trials.drop("trial_id", "started_at", "finished_at")
             .with_columns(pl.col("duration_s").round(3))
             .rename({"trial_number": "#"}))
    click.echo()
    output.print_frame(shown, digits=5)
    if limit is not None and limit < view.trials.height:
        click.echo(f"({view.trials.height - limit} more trials; drop --limit to see all)")
    if training is not None:
        click.echo("\n" + "\n".join(_training_lines(training)))


_SHOWN_TRAINING = 20     # trials listed one by one in show's training lines


def _training(con, search: str):
    """EarlyStopping's stops and the reported learning rates, or None if there are none."""
    from hptrack._read.training import summary

    t = summary(search, con=con)
    return None if t.empty else t


def _training_lines(t) -> list[str]:
    import polars as pl

    lines = []
    stopped = t.trials.filter(pl.col("stopped_early"))
    if stopped.height:
        lines.append(f"early stopping: {stopped.height} of {t.trials.height} trials stopped early")
        for r in stopped.head(_SHOWN_TRAINING).iter_rows(named=True):
            saved = "" if r["epochs_saved"] is None else f", {r['epochs_saved']} steps saved"
            lines.append(f"  #{r['trial_number']} stopped at step {r['stop_step']}, best step "
                         f"{r['best_step']} ({output.cell(r['best_score'], digits=5)}){saved}")
        if stopped.height > _SHOWN_TRAINING:
            lines.append(f"  ... and {stopped.height - _SHOWN_TRAINING} more (hptrack.training.summary)")
    if t.lr_key is not None:
        has = t.trials.filter(pl.col("lr_first").is_not_null())
        pairs = [f"#{r['trial_number']} {output.cell(r['lr_first'], digits=4)} -> "
                 f"{output.cell(r['lr_last'], digits=4)}"
                 for r in has.head(_SHOWN_TRAINING).iter_rows(named=True)]
        more = f", ... ({has.height - _SHOWN_TRAINING} more)" if has.height > _SHOWN_TRAINING else ""
        lines.append(f"learning rate ({t.lr_key}) per trial, first -> last: {', '.join(pairs)}{more}")
    return lines


_MEMBERS_SHOWN = 20


def _objective_lines(settings, trials) -> list[str]:
    """What ``show`` says of a multi-objective search: its objectives and Pareto front
    (no single "best" trial: the front is the set of best trade-offs)."""
    directions = settings.get("directions")
    if not directions:
        return []
    from hptrack.analysis.multiobjective import front_of

    p = front_of(trials, directions, search=settings["name"])
    numbers = sorted(p.front["trial_number"].to_list())
    shown = ", ".join(f"#{n}" for n in numbers[:_MEMBERS_SHOWN])
    more = f" and {len(numbers) - _MEMBERS_SHOWN} more" if len(numbers) > _MEMBERS_SHOWN else ""
    ref = ", ".join(output.cell(v, digits=5) for v in p.reference_point)
    return [f"objectives: {', '.join(f'{k} {d}' for k, d in enumerate(directions))} "
            f"(columns {', '.join(p.objectives)})",
            f"Pareto front: {p.count} trials ({shown}{more}) of {p.n_complete} complete",
            f"hypervolume: {output.cell(p.final_hypervolume, digits=5)} (reference point {ref}: "
            "the worst of each objective plus 10% of its range)"]


# --- query -------------------------------------------------------------------------
@cli.command("query", short_help="Run one read-only SELECT over the store's views.")
@click.argument("sql")
@FORMAT_OPT
@AS_OF_OPT
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              metavar="SECONDS", help="Stop the query after this many seconds.")
@click.option("--memory-limit", metavar="SIZE", default=None,
              show_default="a quarter of this machine's RAM",
              help="Fail the query rather than use more memory than this (e.g. 500MB, 4GB).")
@click.pass_context
def query_cmd(ctx: Context, sql: str, fmt: str, as_of: str | None, timeout: float | None,
              memory_limit: str | None) -> None:
    """Run one read-only SELECT over the store's views.

    Views: events, searches, trials, params, reports, scores (columns are
    documented in schemas/). Only a single SELECT runs (DESCRIBE, SHOW and
    SUMMARIZE too); writes (also inside WITH or subqueries), settings,
    extensions and files outside the store are refused. SQL "-" reads the
    statement from stdin. Ctrl-C stops a running query (exit 130).

    \b
    Examples:
      hptrack query "SELECT name, n_trials FROM searches"
      hptrack query "SELECT state, count(*) FROM trials GROUP BY state" --format csv
      hptrack query "SELECT * FROM trials WHERE state = 'complete'" --as-of 2026-11-27T09:00Z
      hptrack query - --format json --timeout 600 < best.sql
    """
    from hptrack._read.sql import query

    if sql == "-":
        sql = sys.stdin.read()
    try:
        df = query(sql, store_root(ctx), as_of=as_of, strict=ctx.obj["strict"], timeout=timeout,
                   memory_limit=memory_limit)
    except KeyboardInterrupt:
        click.echo("Error: query interrupted (Ctrl-C)", err=True)
        ctx.exit(130)
    emit(df, fmt)


# --- verify / compact ------------------------------------------------------------
@cli.command("verify", short_help="Check every file of the store; exit 1 if data is unreadable or lost.")
@click.option("--format", "fmt", type=click.Choice(("table", "json"), case_sensitive=False),
              default="table", show_default=True, help="table for people; json for programs.")
@click.option("--quarantine", is_flag=True,
              help="Move each file with an error to <store>/quarantine/ (nothing is deleted).")
@click.pass_context
def verify_cmd(ctx: Context, fmt: str, quarantine: bool) -> None:
    """Check the store: every segment and log readable, no seq gap, no duplicate
    event, and report leftover temporary files. Exit code 1 if it is not ok.

    \b
    Examples:
      hptrack verify
      hptrack verify --format json | jq '.problems'
      hptrack verify --quarantine     # move damaged files aside, keep them
    """
    from hptrack._maintain.verification import verify

    root = store_root(ctx)
    report = verify(root, quarantine=quarantine)
    if fmt == "json":
        click.echo(output.dumps(report.to_dict()))
    else:
        summary = (f"{report.n_segments} segments, {report.n_logs} logs, {report.n_events} events, "
                   f"{report.n_searches} searches")
        if report.problems:
            # Each message names its file, so the table needs no path column.
            rows = [[p.severity, p.kind, p.message] for p in report.problems]
            _print(output.table(["severity", "kind", "message"], rows, no_wrap={"severity", "kind"}))
        n_err = sum(p.severity == "error" for p in report.problems)
        n_warn = len(report.problems) - n_err
        click.echo(f"{'OK' if report.ok else 'NOT OK'}: {root}: {summary}; "
                   f"{n_err} error(s), {n_warn} warning(s)")
        for src, dst in report.quarantined:
            click.echo(f"moved {os.path.relpath(src, root)} to {os.path.relpath(dst, root)}")
    if not report.ok:
        errors = [p for p in report.problems if p.severity == "error"] or report.problems
        click.echo(f"Error: verify found {len(errors)} problem(s) in {root}", err=True)
        ctx.exit(1)


@cli.command("compact", short_help="Merge small segments and seal logs of finished writers.")
@click.option("--format", "fmt", type=click.Choice(("table", "json"), case_sensitive=False),
              default="table", show_default=True, help="table for people; json for programs.")
@click.option("--grace", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Delete the files earlier compactions replaced once this long has passed "
                   "(readers that listed them keep working meanwhile)  [default: 900]")
@click.pass_context
def compact_cmd(ctx: Context, fmt: str, grace: float) -> None:
    """Merge small segments (and seal logs left by writers that are gone) into
    large ones, without losing or duplicating an event, then store each
    search's fold (trials and params) so queries need not fold the events.
    Safe to interrupt and to run while searches are writing, while others read,
    and next to another compaction (on this machine or another). Merged files
    are left in place, unused, for the grace period, then deleted by a later run.

    \b
    Examples:
      hptrack compact
      hptrack --store runs/.hptrack compact --format json
    """
    from hptrack._maintain.compaction import compact

    result = compact(store_root(ctx), **({} if grace is None else {"grace": grace}))
    if fmt == "json":
        click.echo(output.dumps(result.to_dict()))
        return
    extra = ""
    if result.merged_files:
        extra += f"; merged {result.merged_files} files of {result.merged_searches} searches"
    if result.deleted_files:
        extra += f"; deleted {result.deleted_files} files replaced earlier"
    if result.awaiting_deletion:
        extra += (f"; {result.awaiting_deletion} replaced files await deletion "
                  f"(by a compaction {result.grace_s:g}s after they were replaced)")
    if result.projected_searches:
        extra += f"; stored the fold of {result.projected_searches} searches"
    if getattr(result, "removed_temp_files", 0):
        extra += f"; removed {result.removed_temp_files} leftover temporary files"
    if getattr(result, "skipped", None):
        extra += (f"; left {len(result.skipped)} damaged file(s) in place "
                  "(see `hptrack verify`)")
    click.echo(f"compacted {result.files_before} files into {result.files_after} "
               f"({result.events} events in segments; sealed {result.sealed_logs} logs; "
               f"removed {result.removed_duplicates} duplicate events{extra})")

for command in (diagnose_cmd, compare_cmd, importance_cmd, report_cmd, demo_cmd, export_cmd,
                import_ray_cmd, pareto_cmd, plan_cmd, refine_cmd, watch_cmd):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="hptrack")

