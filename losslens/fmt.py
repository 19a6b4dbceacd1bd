"""Numbers as text, one rule for every table, summary and report: a missing number (None, NaN or inf)
prints as "-", never as "nan" or "None"."""

from __future__ import annotations

import math

MISSING = "-"


def is_missing(x) -> bool:
    """None, NaN or +-inf (numpy scalars included)."""
    if x is None:
        return True
    try:
        return not math.isfinite(x)
    except TypeError:  # not a number at all (a string, say): not "missing", format() decides
        return False


def num(x, spec: str = ".3g") -> str:
    """`format(x, spec)`, or "-" when `x` is missing."""
    return MISSING if is_missing(x) else format(x, spec)


def interval(ci, spec: str = ".3g") -> str:
    """"[lo, hi]", or "" when there is no interval (None, empty, or a missing end)."""
    if not ci or any(is_missing(v) for v in ci):
        return ""
    return f"[{format(ci[0], spec)}, {format(ci[1], spec)}]"


def plus_minus(value, stderr, spec: str = ".3g", err_spec: str | None = None, sep: str = "±") -> str:
    """"value±stderr", or just the value when the standard error is missing."""
    if is_missing(stderr):
        return num(value, spec)
    return f"{num(value, spec)}{sep}{format(stderr, err_spec or spec)}"
