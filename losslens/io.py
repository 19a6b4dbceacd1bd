"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the same directory, flush and fsync it, then `os.replace` it over the
target (atomic on POSIX) and fsync the directory so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it replaces `path`, on an error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line of a JSONL file; bad JSON or bad UTF-8 is an
    `InputError` naming the file and the line."""
    from losslens.errors import InputError

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(path, f"bad JSON: {err.msg} (column {err.colno})", line=n) from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text: {err.reason}") from None
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror}") from None


class LockHeld(Exception):
    """`file_lock(..., wait=False)` found the lock taken by another process."""


@contextlib.contextmanager
def file_lock(path: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the `with` block.

    `wait=False` raises `LockHeld` at once instead of waiting. The kernel drops the lock when the
    holder exits, even killed, so a stale lock file never blocks anyone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        yield


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def jsonable(obj):
    """Plain JSON types: NaN/inf become null, numpy scalars and arrays become Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array (no numpy import)
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not isinstance(obj, bool):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(path: str | Path, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def make_temp_dir(parent: str | Path, prefix: str, suffix: str = "") -> Path:
    """A new temporary directory in `parent`, to be renamed into place when complete. `mkdtemp` makes
    it 0700; it gets the usual permissions (0777 less the umask), like any directory the user makes."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=suffix))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp
