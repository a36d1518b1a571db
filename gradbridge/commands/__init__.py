"""One module per ``gradbridge`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""
