"""The `losslens` console script. Thin: parse the arguments, call one function, print.

Each command lives beside the code it drives, in a module with `register(subparsers)` that adds its
parser and sets `func(args) -> int | None`. User errors (`losslens.errors.UserError`) print one line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from losslens import __version__
from losslens.errors import UserError

# Which module registers each command. Only the module of the command being run is imported, so
# `losslens world` never pays for importing torch; `losslens --help` imports them all.
COMMANDS = {
    "demo": "losslens.ladder.demo",
    "world": "losslens.world.command",
    "train": "losslens.train.command",
    "export": "losslens.train.command",
    "model-info": "losslens.model.command",
    "eval": "losslens.evaluate.command",
    "analyze": "losslens.analysis.command",
    "calibrate": "losslens.analysis.calibrate_command",
    "results": "losslens.store_command",
    "import-lm-eval": "losslens.evaluate.harness_command",
    "ladder": "losslens.ladder.command",
    "report": "losslens.report.command",
    "external": "losslens.external.command",
}


USER_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="losslens",
        description="Emergent abilities of language models from the loss perspective.",
    )
    parser.add_argument("--version", action="version", version=f"losslens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside the module: a bug, show it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"losslens {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        # An output the user pointed at that cannot be written (read-only, no permission, disk full) is
        # their input to fix, not our bug: one line naming the path. Atomic writes left nothing half-done.
        if err.errno not in USER_ERRNOS or not err.filename:
            raise
        print(f"losslens {args.command}: error: {err.filename}: cannot write: {err.strerror}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
