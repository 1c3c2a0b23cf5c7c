"""The ``mmgt`` command line: thin argument parsing that calls one library function per command.

Each command group lives in its own module exposing ``register(subparsers)``; handlers are set with
``parser.set_defaults(func=...)`` and receive the parsed ``argparse.Namespace``.

Errors reach the user as ONE line, ``mmgt: error: <problem>``: an :class:`~mmgt.errors.MmgtError` (config, media,
model folders, ...) or an ``OSError`` raised by a handler (exit status 1), or a command-line mistake caught by argparse
(after the usage line; exit status 2). ``--debug`` anywhere on the line (or ``MMGT_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mmgt import __version__
from mmgt.errors import DEBUG_ENV, MmgtError, debug_enabled

# Command-group modules under mmgt.cli, in the order they appear in `mmgt --help`.
COMMAND_MODULES = (
    "generate",
    "demo",
    "app",
    "synth",
    "data",
    "pose",
    "audio",
    "audio2pose",
    "pose2video",
    "train",
    "eval",
    "weights",
)


class Parser(argparse.ArgumentParser):
    """argparse with mmgt's error line: ``mmgt: error: <command>: <problem>`` after the usage (exit status 2).

    Subcommand parsers inherit the class (argparse creates them with the parent's type).
    """

    def error(self, message: str):
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix("mmgt").strip()
        self.exit(2, f"mmgt: error: {f'{command}: ' if command else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mmgt",
        description="MMGT co-speech gesture video generation: audio + one image -> talking, gesturing video.",
    )
    parser.add_argument("--version", action="version", version=f"mmgt {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback behind an error (accepted anywhere on the line; or set {DEBUG_ENV}=1)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mmgt.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # accepted after the command too: `mmgt train stage1 ... --debug`
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # library code reads it too (e.g. tracebacks of validation warnings)
    logging.basicConfig(format="mmgt: %(levelname)s: %(message)s", level=logging.WARNING)  # user-facing warnings
    if not hasattr(args, "func"):
        # A group without a subcommand (e.g. `mmgt pose`) prints its own help.
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        result = args.func(args)
    except (MmgtError, OSError) as e:
        if debug_enabled():
            raise
        print(f"mmgt: error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
