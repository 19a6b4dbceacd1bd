"""docs/cli.md stays true to the code: every flag of every command is documented, and no more."""

from __future__ import annotations

import argparse
import re

from conftest import REPO
from losslens.cli import COMMANDS, build_parser


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_and_flag_is_documented():
    doc = (REPO / "docs" / "cli.md").read_text()
    commands = _subparsers(build_parser())
    assert set(commands) == set(COMMANDS)
    for name, sub in commands.items():
        assert f"`losslens {name}" in doc, name
        section = doc.split(f"## `losslens {name}")[1].split("\n## ")[0]
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in section, f"{name} {flag} missing from docs/cli.md"
        documented = set(re.findall(r"`(--[a-z-]+)", section)) | set(re.findall(r"/ `(--[a-z-]+)", section))
        real = {f for a in sub._actions for f in a.option_strings}
        assert documented <= real, f"{name}: documented but not in the code: {documented - real}"
