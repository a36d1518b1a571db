"""``gradbridge compare``: every experiment on every backend, device and dtype; results and report.

The grid (:mod:`gradbridge.experiments.grid`) runs in :mod:`gradbridge.experiments.runner`;
this module parses the command line, shows progress, writes the report and plots, prints the
terminal table and turns ``--check`` into the exit status. ``gradbridge run CONFIG.toml``
reuses :func:`execute` with a grid read from a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from gradbridge.experiments.grid import Grid
    from gradbridge.experiments.record import Results
    from gradbridge.experiments.runner import Event


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "compare", help="run experiments on every backend, device and dtype and compare them",
        description="Run experiments (the built-in ones, or your own as path/file.py:function "
                    "or package.module:function) on each backend x device x dtype; compare "
                    "every output with the experiment's reference; write results.json, "
                    "results.csv, report.md, manifest.json and plots into --out.")
    grid = parser.add_argument_group("grid (defaults: every known backend, cpu, both dtypes, "
                                     "every built-in experiment)")
    grid.add_argument("--backends", metavar="LIST",
                      help="comma-separated backend names, e.g. numpy,jax,torch")
    grid.add_argument("--devices", metavar="LIST", help="comma-separated devices: cpu, cuda, "
                      "cuda:N (default cpu)")
    grid.add_argument("--dtypes", metavar="LIST", help="float32, float64 or both (default both)")
    grid.add_argument("--experiments", metavar="LIST",
                      help="comma-separated built-in names and your own experiments, e.g. "
                           "my_file.py:spring,pkg.module:fn (default: every built-in one)")
    grid.add_argument("--set", dest="settings", action="append", default=[],
                      metavar="NAME.KEY=VALUE",
                      help="a setting of an experiment, e.g. --set spring.steps=20 (repeatable;"
                           " lists as 1,2,3)")
    add_output_options(parser)
    parser.set_defaults(run=run)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Options that ``compare`` and ``run`` share: where results go and how to finish."""
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR",
                     help="output directory (default results/<timestamp>/)")
    out.add_argument("--resume", action="store_true",
                     help="finish the grid in --out (default: the newest unfinished results/ "
                          "directory) without redoing finished runs; runs that ended in an "
                          "error, or were made with other settings, are redone")
    out.add_argument("--check", action="store_true",
                     help="exit 1 also if a run differs from the reference beyond tolerance or a "
                          "named backend was skipped (a run in error always exits 1)")
    out.add_argument("--explain", action="store_true",
                     help="for every run that disagrees, rerun it eagerly beside the NumPy "
                          "float64 reference and name the statement where the difference is "
                          "born (printed, and in report.md)")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bars and no summary table (also no bars when stdout is "
                          "not a terminal)")


def run(args: argparse.Namespace) -> int:
    from gradbridge.experiments.grid import grid_from_options, parse_sets

    chosen = bool(args.settings) or any(
        v is not None for v in (args.backends, args.devices, args.dtypes, args.experiments))
    if args.resume and not chosen:  # --resume alone finishes the stored grid
        return execute(None, out=args.out, resume=True, check=args.check, quiet=args.quiet,
                       explain=args.explain)
    grid = grid_from_options(
        backends=_split(args.backends), devices=_split(args.devices), dtypes=_split(args.dtypes),
        experiments=_split(args.experiments), settings=parse_sets(args.settings), text=True)
    # with --resume, grid options must match the stored grid
    return execute(grid, out=args.out, resume=args.resume, check=args.check, quiet=args.quiet,
                   explain=args.explain)


def execute(grid: Grid | None, *, out: str | None, resume: bool, check: bool,
            quiet: bool, explain: bool = False) -> int:
    """Run (or finish) a grid into ``out``, write report and plots, print a summary.

    ``grid`` may be None only with ``resume``: then the grid stored in ``out`` is finished.
    ``explain`` names, for each run that disagrees, the statement where it starts to.
    Returns 1 when a run ended in an error, nothing ran, or ``check`` is set and a run
    disagreed or its named backend was skipped; else 0.
    """
    from gradbridge.experiments import report, runner, store

    directory = store.output_directory(out, resume=resume)
    grid = runner.prepare(directory, grid, resume=resume, argv=sys.argv)
    show_progress = not quiet and sys.stdout.isatty()
    try:
        results = (_run_with_progress(grid, directory, explain) if show_progress
                   else runner.run_grid(grid, directory, on_event=_note_redo, explain=explain))
    except KeyboardInterrupt:
        print(f"finished runs are saved in {directory}; complete the grid with: "
              f"gradbridge compare --resume --out {directory}", file=sys.stderr)
        raise
    if show_progress:
        from rich.console import Console

        with Console().status("writing the report and plots"):
            written = report.finish(results, directory)
    else:
        written = report.finish(results, directory)
    if not quiet:
        _print_summary(results, directory, written)
    failures = report.failures(results)
    if check and failures:
        print("check failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    if errors := report.errors(results):
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        print(f"failed: {errors[0].splitlines()[0]}{more}; see {directory / 'report.md'}",
              file=sys.stderr)
        return 1
    return 0


def _note_redo(event: Event) -> None:
    """Say on stderr which stored run file is redone, and why."""
    if event.kind == "redo":
        print(f"note: {event.status}", file=sys.stderr)


def _run_with_progress(grid: Grid, directory: Path, explain: bool) -> Results:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from gradbridge.experiments import grid as grids
    from gradbridge.experiments import runner

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("starting", total=len(grids.cells(grid)))

        def on_event(event: runner.Event) -> None:
            if event.kind == "redo":
                progress.console.print(f"note: {event.status}", style="yellow")
            elif event.kind == "start":
                progress.update(task, description=f"running {event.cell.label}")
            else:  # done or kept
                progress.update(task, advance=1,
                                description=f"{event.cell.label}: {event.status}")

        results = runner.run_grid(grid, directory, on_event=on_event, explain=explain)
        progress.update(task, description="done")
    return results


def summary_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """The terminal summary: one row per run."""
    from gradbridge.experiments import report

    header = ["experiment", "backend", "device", "dtype", "verdict", "max rel diff", "time"]
    rows = [[run.experiment, run.backend, run.device, run.dtype,
             report.status_text(run, width=60), report.sci((run.verdict or {}).get("worst_rel")),
             report.time_text(run)] for run in results.runs]
    return header, rows


def _print_summary(results: Results, directory: Path, written: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)  # files and pipes: wide
    table = Table(title="gradbridge compare: agreement with each experiment's reference")
    header, rows = summary_rows(results)
    for column in header:
        table.add_column(column, no_wrap=column in ("experiment", "time"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for run in results.runs:
        if run.explanation:
            console.print(f"[bold]{run.where}[/bold]: {run.explanation}", markup=True,
                          highlight=False)
    console.print(f"report: {directory / 'report.md'}")
    plots = [p.name for p in written if p.suffix == ".png"]
    if plots:
        console.print(f"plots: {', '.join(plots)} in {directory}")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]
