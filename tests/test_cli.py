"""The command line: every command has --help, and every `mmgt ...` command in the README parses."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mmgt.cli import build_parser, main

README = Path(__file__).parents[1] / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """Every leaf command as a tuple of words."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix


COMMANDS = sorted(_commands(build_parser()))


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for words in COMMANDS:
        assert words[0] in out


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w))
def test_every_command_has_help(words, capsys):
    with pytest.raises(SystemExit) as e:
        main([*words, "--help"])
    assert e.value.code == 0
    assert "usage: mmgt " + " ".join(words) in capsys.readouterr().out


def _readme_commands() -> list[list[str]]:
    """`mmgt ...` commands in the README's tables and shell blocks (bracketed optional parts removed)."""
    found, in_shell = [], False
    text = README.read_text().replace("\\\n", " ")  # shell line continuations join into one command
    for line in text.splitlines():
        if line.startswith("```"):
            in_shell = line.strip() in ("```bash", "```sh", "```console")
            continue
        candidates = [line.strip()] if in_shell and line.strip().startswith("mmgt ") else []
        if line.startswith("|"):
            candidates += re.findall(r"`(mmgt [^`]+)`", line)
        for cmd in candidates:
            cmd = re.sub(r"\[[^\]]*\]", "", cmd).split("#")[0].strip()
            argv = shlex.split(cmd)[1:]
            if argv and argv[0] not in ("--help", "--version"):
                found.append(argv)
    return found


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a))
def test_readme_commands_parse(argv):
    args = build_parser().parse_args(argv)
    assert hasattr(args, "func")


def test_readme_documents_commands():
    assert len(_readme_commands()) >= 5


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mmgt", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("mmgt ")
