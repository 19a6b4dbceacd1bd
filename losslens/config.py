"""TOML configs: dataclasses filled from dicts, validated once at the edge.

`from_dict(Cls, data, source=..., prefix=...)` checks unknown keys and types against the dataclass
fields and raises `InputError(source, msg, field="section.key")`; each config class adds its own
value checks in `validate()`. Errors name the file and the dotted field, so the CLI prints one line.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from losslens.errors import InputError

T = TypeVar("T")


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, f"not valid TOML: {err}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, *, source: str | None, field: str) -> Any:
    """Return `value` checked (and gently coerced: int -> float, list -> tuple) against type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, source=source, field=field)
            except InputError as err:
                errors.append(err)
        raise InputError(source, f"expected {' or '.join(_type_name(o) for o in options if o is not type(None))}, "
                                 f"got {type(value).__name__} {value!r}", field=field)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(source, f"expected a list, got {type(value).__name__} {value!r}", field=field)
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, source=source, field=f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(source, f"expected a table, got {type(value).__name__}", field=field)
        return dict(value)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(source, f"expected a table, got {type(value).__name__} {value!r}", field=field)
        return from_dict(tp, value, source=source, prefix=field)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(source, f"expected a number, got {type(value).__name__} {value!r}", field=field)
        return float(value)
    if tp is int:
        # TOML writes 1e6 as a float; accept whole floats for token counts and the like.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(source, f"expected an integer, got {type(value).__name__} {value!r}", field=field)
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise InputError(source, f"expected {tp.__name__}, got {type(value).__name__} {value!r}", field=field)
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise InputError(source, f"expected a path string, got {type(value).__name__}", field=field)
        return Path(value)
    raise TypeError(f"unsupported config type {tp!r} for {field}")


def from_dict(cls: type[T], data: dict[str, Any], *, source: str | Path | None = None, prefix: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise InputError naming the field."""
    source = None if source is None else str(source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    if not isinstance(data, dict):
        raise InputError(source, f"expected a table, got {type(data).__name__}", field=prefix or None)
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise InputError(source, f"unknown key (known: {known})", field=dotted(key))
    kwargs = {k: _coerce(v, hints[k], source=source, field=dotted(k)) for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(source=source, prefix=prefix)
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass as plain JSON/TOML-able data (Paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
