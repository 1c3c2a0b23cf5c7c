"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``mmgt NAME ...``) and return its own subparsers object."""
    group = subparsers.add_parser(name, help=help, description=help)
    group.set_defaults(_group_parser=group)
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND")
