"""The ``mmgt`` command line: thin argument parsing that calls one library function per command.

Each command group lives in its own module exposing ``register(subparsers)``; handlers are set with
``parser.set_defaults(func=...)`` and receive the parsed ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mmgt import __version__
from mmgt.errors import MmgtError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgt",
        description="MMGT co-speech gesture video generation: audio + one image -> talking, gesturing video.",
    )
    parser.add_argument("--version", action="version", version=f"mmgt {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mmgt.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="mmgt: %(levelname)s: %(message)s", level=logging.WARNING)  # user-facing warnings
    if not hasattr(args, "func"):
        # A group without a subcommand (e.g. `mmgt pose`) prints its own help.
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        result = args.func(args)
    except (MmgtError, FileNotFoundError) as e:
        print(f"mmgt: error: {e}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
