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


def test_every_analysis_setting_is_documented():
    """docs/analysis.md's Settings section lists every key of every [analysis] table, and no more: each
    field of AnalysisConfig, EmergenceConfig, SameLossConfig and ScalingLawConfig under its own heading."""
    import dataclasses

    from losslens.analysis.settings import AnalysisConfig, config_classes

    doc = (REPO / "docs" / "analysis.md").read_text()
    settings = doc.split("## Settings (`[analysis]` tables)")[1].split("\n## ")[0]
    tables = {"analysis": AnalysisConfig} | {f"analysis.{k}": v for k, v in config_classes().items()}
    for table, cls in tables.items():
        section = settings.split(f"### `[{table}]`")[1].split("\n### ")[0]
        keys = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in config_classes()]
        for key in keys:
            assert f"`{key}`" in section, f"[{table}] {key} missing from docs/analysis.md"
        rows = re.findall(r"^\| (`[^|]+`) \|", section, flags=re.M)
        documented = {k for row in rows for k in re.findall(r"`([a-z_]+)`", row)}
        assert documented <= set(keys), f"[{table}]: documented but not in the code: {documented - set(keys)}"
