"""User-facing errors.

A `UserError` is bad input (a config, a table, a task file, a checkpoint). The CLI prints it as one
line, exits with code 2 and shows no traceback. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user; `str(err)` is the one line the CLI prints."""

    exit_code = 2


class LadderFailed(UserError):
    """Some ladder jobs failed (each with its own one-line reason) or a worker died; the rest is kept."""


class InputError(UserError):
    """Bad input in a named file, optionally at a line and a field: "FILE[:LINE]: FIELD: message"."""

    def __init__(self, path: str | Path | None, message: str, *, field: str | None = None,
                 line: int | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")

    def __reduce__(self):  # picklable, so an error raised in a worker process reaches the driver intact
        return _rebuild_input_error, (self.path, self.message, self.field, self.line)


def _rebuild_input_error(path, message, field, line) -> InputError:
    return InputError(path, message, field=field, line=line)
