"""The `losslens` console script. Thin: parse the arguments, call one function, print.

Each command lives beside the code it drives, in a module with `register(subparsers)` that adds its
parser and sets `func(args) -> int | None`. User errors (`losslens.errors.UserError`) print one line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from losslens import __version__
from losslens.errors import UserError

# Modules with a `register(subparsers)` function, in the order `losslens --help` lists them.
COMMAND_MODULES = [
    "losslens.world.command",
    "losslens.train.command",
    "losslens.model.command",
    "losslens.analysis.command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="losslens",
        description="Emergent abilities of language models from the loss perspective.",
    )
    parser.add_argument("--version", action="version", version=f"losslens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside the module: a bug, show it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"losslens {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
