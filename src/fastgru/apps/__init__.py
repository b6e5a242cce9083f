"""Applications, each a Python function and a `fastgru` subcommand (add_parser(subparsers) + a run function)."""
