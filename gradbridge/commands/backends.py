"""``gradbridge backends``: which backends exist here, and which one a plain call would use."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("backends", help="list backends, versions, devices and the choice")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.config import resolve
    from gradbridge.core.registry import list_backends

    infos = list_backends()
    selection = resolve()
    if args.json:
        print(json.dumps({"backends": [i.as_dict() for i in infos],
                          "selected": selection.as_dict()}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gradbridge backends")
    for column in ("backend", "status", "version", "devices", "source"):
        table.add_column(column)
    for info in infos:
        status = "ready" if info.loadable else f"[red]unavailable[/]: {info.reason}"
        table.add_row(info.name, status, info.version or "-", ", ".join(info.devices) or "-",
                      info.source)
    console = Console()
    console.print(table)
    for field, part in selection.as_dict().items():
        console.print(f"{field}: [bold]{part['value']}[/] (from {part['source']})")
    return 0
