"""The ``gradbridge`` command line: parse, call the library, print. No math lives here.

Each subcommand is a module in :mod:`gradbridge.commands` exposing ``add_parser`` and ``run``.
A user mistake prints one ``error: ...`` line to stderr and exits 2; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gradbridge.core.backend import GradbridgeError

COMMANDS = ("backends", "train", "bayes", "compare", "run", "launch")


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one ``error:`` line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subparser per module in gradbridge.commands."""
    parser = _Parser(prog="gradbridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"gradbridge.commands.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from gradbridge import __version__

    return f"gradbridge {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m gradbridge``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (GradbridgeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # what no up-front estimate foresaw
        print(f"error: out of memory{f' ({exc})' if str(exc) else ''}; choose smaller sizes "
              "(--n, --epochs, --batch-size, a smaller --data file)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
