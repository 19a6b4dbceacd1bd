"""`losslens <command> --help` stays fast: it imports neither torch nor matplotlib nor scipy (nor
transformers or pandas). An import check, not a timing test; docs/cli.md has the measured times."""

from __future__ import annotations

import subprocess
import sys

import pytest

from losslens.cli import COMMANDS

HEAVY = ("torch", "matplotlib", "scipy", "transformers", "pandas")
PROBE = """
import sys
from losslens.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("imported:", *[m for m in {heavy!r} if m in sys.modules])
"""


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_heavy_library(command):
    args = [command, "--help"] if command else ["--help"]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, timeout=120, check=True)
    assert "usage: losslens" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "imported:", f"losslens {command} --help"
