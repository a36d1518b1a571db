"""``gradbridge run CONFIG.toml``: the ``compare`` grid, read from a validated TOML file."""

from __future__ import annotations

import argparse
from typing import Any

from gradbridge.commands.compare import add_output_options, execute


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "run", help="run a comparison described by a TOML config file",
        description="Run the compare grid described by CONFIG.toml (see examples/*.toml): "
                    "backends, devices, dtypes and experiments (built-in names, or "
                    "path/file.py:function relative to the file), a table of settings per "
                    "experiment ([name]) and an optional [tolerance]. Unknown keys and wrong "
                    "types are errors. --out given here replaces the file's out; --check and "
                    "--quiet turn on what the file may leave off.")
    parser.add_argument("config", metavar="CONFIG.toml", help="the experiment config file")
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.experiments.grid import load_config

    config = load_config(args.config)
    return execute(config.grid, out=args.out or config.out, resume=args.resume,
                   check=args.check or config.check, quiet=args.quiet or config.quiet,
                   explain=args.explain)
