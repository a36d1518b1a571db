"""``gradbridge backends``: which backends exist here, and which one a plain call would use.

A diagnostic runs whatever the settings say. A bad backend, device or dtype setting (an
unknown name, a backend that cannot load here, a device it lacks) or a broken config file is
shown with its source beside everything else, in the table and under ``problems`` in
``--json``; the command then also prints one ``error:`` line naming it and exits 2, so that
scripts notice a setting that every other command would refuse."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = "Exit status: 0, or 2 when a setting is bad (the report is printed all the same)."


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("backends", help="list backends, versions, devices and the choice",
                            epilog=EPILOG)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.config import diagnose
    from gradbridge.core.registry import list_backends

    infos = list_backends()
    selected, problems = diagnose(infos)
    if args.json:
        print(json.dumps({"backends": [i.as_dict() for i in infos], "selected": selected,
                          "problems": problems}, indent=2))
    else:
        _print_report(infos, selected)
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    return 0


def _print_report(infos: list[Any], selected: dict[str, dict[str, str]]) -> None:
    """The backends as a table, then each setting with its source (and what is wrong with it)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="gradbridge backends")
    for column in ("backend", "status", "version", "devices", "source"):
        table.add_column(column)
    for info in infos:
        status = "ready" if info.loadable else f"[red]unavailable[/]: {escape(info.reason or '')}"
        table.add_row(info.name, status, info.version or "-", ", ".join(info.devices) or "-",
                      info.source)
    console = Console()
    console.print(table)
    for info in infos:
        for note in info.notes:  # e.g. how JAX's float64 is enabled: policies a user must know
            console.print(f"{info.name}: {escape(note)}")
    for field, part in selected.items():
        problem = f" [red]invalid[/]: {escape(part['error'])}" if "error" in part else ""
        console.print(f"{field}: [bold]{escape(part['value'])}[/] "
                      f"(from {escape(part['source'])}){problem}")
