"""The `fastgru` command: one subcommand per task (forecast, detect, classify, generate, compare, viz, demo).

How a subcommand is added (the registry)
----------------------------------------
A task module provides two functions and is listed in ``SUBCOMMANDS`` below, nothing else:

    def add_parser(subparsers) -> argparse.ArgumentParser:
        p = subparsers.add_parser("mytask", help="one line for `fastgru --help`")
        p.add_argument(...)                       # the task's own options
        p.set_defaults(func=run_from_args)
        return p

    def run_from_args(args: argparse.Namespace) -> dict | None:
        ...                                       # run, print tables, say where the outputs are

For every subcommand that does not define them itself the CLI adds the common options:

    --out FOLDER       where outputs go; default ./fastgru-out/<subcommand> (``args.out``)
    --force            replace files an earlier run left in --out (``args.force``); without it a task
                       must refuse to overwrite (see fastgru.apps.common.check_outputs)
    --progress / --no-progress   progress bars; default: on when stderr is a terminal (``args.progress``)

and, for every subcommand with a ``--data`` option, the reading options of users' text tables (the run
is wrapped in fastgru.apps.data.reading_options.reading_options, so the task's reader obeys them):

    --sep CHAR         the separator of a CSV file (',', ';', 'tab', '|'); default: detected
    --decimal {.,,}    the decimal mark; default: detected (',' for European files like 1,5 or 1.234,5)

A module that cannot be imported (a task still being written, a missing optional dependency) is left
out of the command with a note under `fastgru --help`, so one broken task never breaks the others.
Errors about the user's input (ValueError, FileNotFoundError, FileExistsError) print one clear line
and exit with status 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from fastgru.apps.common import default_out
from fastgru.apps.data.reading_options import reading_options

# The registry: import paths of modules providing add_parser(subparsers) and run_from_args(args).
SUBCOMMANDS: tuple[str, ...] = (
    "fastgru.apps.demo",
    "fastgru.apps.forecast",
    "fastgru.apps.detect",
    "fastgru.apps.classify",
    "fastgru.apps.generate",
    "fastgru.apps.compare",
    "fastgru.apps.viz",
    "fastgru.apps.translate",
    "fastgru.apps.listen",
    "fastgru.apps.classify_text",
    "fastgru.apps.bench",
)

# Optional dependencies by the module name an ImportError reports, and the extra that installs them.
EXTRA_FOR_MODULE = {"pandas": "apps", "matplotlib": "apps", "PIL": "apps", "sklearn": "apps", "sacrebleu": "apps",
                    "librosa": "speech", "soundfile": "speech", "pyarrow": "parquet"}


class MissingExtraError(RuntimeError):
    """A subcommand needs optional dependencies that are not installed."""


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               MissingExtraError)


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions  # argparse keeps no public view of this


def _add_common_options(parser: argparse.ArgumentParser, name: str) -> None:
    if not _has_option(parser, "--out"):
        parser.add_argument("--out", default=str(default_out(name)),
                            help=f"output folder (default: {default_out(name)})")
    if not _has_option(parser, "--force"):
        parser.add_argument("--force", action="store_true",
                            help="replace files that an earlier run left in --out")
    if not _has_option(parser, "--progress"):
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="progress bars (default: on when writing to a terminal)")
    if _has_option(parser, "--data") and not _has_option(parser, "--sep"):
        parser.add_argument("--sep", help="separator of a CSV file: ',', ';', 'tab' or '|' (default: detected "
                                          "from the file; a file that fits none is refused with the row)")
        parser.add_argument("--decimal", choices=(".", ","),
                            help="decimal mark of a CSV file (default: detected; ',' for files like 1,5)")


def build_parser(modules: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The argparse parser with every importable registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="fastgru",
        description="Exact, fast GRUs on PyTorch, and what they are for: forecasting, anomaly detection, "
        "sequence classification, text generation, GRU-vs-LSTM comparisons, pictures of the gates.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    skipped = []
    for path in modules:
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            extra = EXTRA_FOR_MODULE.get((exc.name or "").split(".")[0])
            if extra is None:
                skipped.append(f"{path.rsplit('.', 1)[-1]} ({exc})")
            else:
                _add_needs_extra(sub, path.rsplit(".", 1)[-1].replace("_", "-"), extra, exc)
            continue
        if not hasattr(module, "add_parser"):
            continue
        before = set(sub.choices)
        p = module.add_parser(sub)
        names = set(sub.choices) - before
        name = next(iter(names)) if names else path.rsplit(".", 1)[-1]
        if p is None:
            p = sub.choices.get(name)
        if p is not None:
            _add_common_options(p, name)
    if skipped:
        parser.epilog = "not available here: " + "; ".join(skipped)
    return parser


def _add_needs_extra(sub: Any, name: str, extra: str, exc: ImportError) -> None:
    """A stand-in subcommand that says which extra to install (its module needs a missing package)."""
    install = f"pip install 'fastgru[{extra}]'"
    p = sub.add_parser(name, help=f"(not installed: {install})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def needs_extra(args: argparse.Namespace) -> None:
        raise MissingExtraError(f"this command needs fastgru's optional '{extra}' dependencies ({exc}): {install}")

    needs_extra.needs_extra = True  # main() lets its task's options through, to print this message
    p.set_defaults(func=needs_extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fastgru` console script."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(getattr(args, "func", None), "needs_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None) or not hasattr(args, "func"):
        parser.print_help()
        return 0 if args.command is None else 2
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
        if not args.progress:
            log_to_stderr()
    try:
        with reading_options(getattr(args, "sep", None), getattr(args, "decimal", None)):
            args.func(args)
    except USER_ERRORS as exc:
        print(f"fastgru {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args, sys.argv[1:] if argv is None else list(argv)), file=sys.stderr)
        return 130
    return 0


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (not the stream it was created with), so a
    caller that swaps stderr (a test capturing it, a notebook) never gets a write to a closed stream."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_to_stderr() -> None:
    """Without a terminal there are no progress bars: show fastgru's periodic log lines instead, so that a
    run whose output goes to a file or a pipe still says what it is doing."""
    logger = logging.getLogger("fastgru")
    if not any(getattr(h, "fastgru_cli", False) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("fastgru: %(message)s"))
        handler.fastgru_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def interrupted_message(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """What to tell a user who pressed Ctrl-C: how to continue where the task can, else what is left."""
    lines = [f"fastgru {args.command}: interrupted"]
    if hasattr(args, "resume"):
        again = [a for a in argv if a not in ("--resume", "--force")] + ["--resume"]
        lines.append(f"  continue from the last checkpoint with: fastgru {shlex.join(again)}")
    elif getattr(args, "out", None):
        lines.append(f"  this task cannot resume; files it had finished are in {args.out}, and running it again "
                     "there needs --force (or another --out)")
    return "\n".join(lines)


def run(argv: Sequence[str]) -> Any:
    """Run a subcommand in this process and return what its run function returned (for Python callers)."""
    args = build_parser().parse_args(list(argv))
    if getattr(args, "progress", False) is None:
        args.progress = False
    with reading_options(getattr(args, "sep", None), getattr(args, "decimal", None)):
        return args.func(args)


if __name__ == "__main__":  # python -m fastgru
    sys.exit(main())
