"""TOML configs: dataclasses filled from dicts, validated once at the edge, by one mechanism.

Every config field is declared with `knob(default, lo, hi, gt=, lt=, choices=, doc=)`: its type is
the dataclass annotation, its default, its valid range (inclusive `lo`/`hi`, exclusive `gt`/`lt`,
applied to each item of a list) and its allowed values, all in one place. `check_knobs(obj)` checks
them generically (types, missing values, non-finite floats, ranges, choices, nested configs);
`from_dict(Cls, data, source=..., prefix=...)` builds a config from a TOML table (unknown and missing
keys, types) and then runs `validate_config`: the knob checks, then the class's own cross-field
`validate(source=, prefix=)` if it has one. Every problem is `InputError(source, msg,
field="section.key")`, so the CLI prints one line naming the file and the dotted field and exits 2.
`knobs(Cls)` lists every key (dotted, with type, default, constraint and doc) for the docs and their
test.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from losslens.errors import InputError

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def knob(default: Any = _MISSING, lo: float | None = None, hi: float | None = None, *, gt: float | None = None,
         lt: float | None = None, choices: tuple | None = None, doc: str | None = None, **kwargs) -> Any:
    """A dataclass field with its valid values. No default: a required key. A list or dict default
    is copied per instance. `lo`/`hi` are inclusive bounds, `gt`/`lt` exclusive ones."""
    meta = {"lo": lo, "hi": hi, "gt": gt, "lt": lt, "choices": None if choices is None else tuple(choices),
            "doc": doc, "knob": True}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kwargs)
    return dataclasses.field(default=default, metadata=meta, **kwargs)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text (byte {err.start}); TOML files must be UTF-8") from None
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
        if isinstance(value, tp):  # built in Python already (and validated by check_knobs)
            return value
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
        if not isinstance(value, (str, Path)):
            raise InputError(source, f"expected a path string, got {type(value).__name__}", field=field)
        return Path(value)
    raise TypeError(f"unsupported config type {tp!r} for {field}")


def _dot(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_dict(cls: type[T], data: dict[str, Any], *, source: str | Path | None = None, prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, then `validate_config` it. Unknown keys, missing required
    keys and wrong types raise InputError naming the file and the dotted field."""
    source = None if source is None else str(source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(data, dict):
        raise InputError(source, f"expected a table, got {type(data).__name__}", field=prefix or None)
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise InputError(source, f"unknown key (known: {known})", field=_dot(prefix, key))
    for name, f in fields.items():
        if name not in data and f.default is _MISSING and f.default_factory is _MISSING:
            doc = f.metadata.get("doc")
            raise InputError(source, f"missing required key{f' ({doc})' if doc else ''}", field=_dot(prefix, name))
    kwargs = {k: _coerce(v, hints[k], source=source, field=_dot(prefix, k)) for k, v in data.items()}
    try:
        obj = cls(**kwargs)  # a config that validates itself on construction raises without the file
    except InputError as err:
        if err.path is not None:
            raise
        raise InputError(source, err.message, field=_dot(prefix, err.field) if err.field else prefix or None) from None
    validate_config(obj, source=source, prefix=prefix)
    return obj


def validate_config(obj: Any, *, source: str | Path | None = None, prefix: str = "") -> None:
    """The knob checks of `obj` (nested configs included), then its own cross-field `validate()`."""
    source = None if source is None else str(source)
    if not isinstance(obj, Config):  # a Config's validate() runs the knob checks itself
        check_knobs(obj, source=source, prefix=prefix)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(source=source, prefix=prefix)


def check_knobs(obj: Any, *, source: str | None = None, prefix: str = "") -> None:
    """Check every field of dataclass `obj` against its annotation and its `knob` constraints."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        where = _dot(prefix, f.name)
        value = getattr(obj, f.name)
        _coerce(value, hints[f.name], source=source, field=where)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, item in items:
            at = where if i is None else f"{where}[{i}]"
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                validate_config(item, source=source, prefix=at)
            else:
                _check_value(item, f.metadata, source, at)


def _check_value(value: Any, meta, source: str | None, where: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(source, f"must be a finite number, got {value!r}", field=where)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise InputError(source, f"must be one of {', '.join(map(str, choices))}, got {value!r}", field=where)
    if isinstance(value, (int, float)) and not _in_range(value, meta):
        raise InputError(source, f"must be {constraint(meta)}, got {value!r}", field=where)


def _in_range(value: float, meta) -> bool:
    lo, hi, gt, lt = (meta.get(k) for k in ("lo", "hi", "gt", "lt"))
    return ((lo is None or value >= lo) and (hi is None or value <= hi)
            and (gt is None or value > gt) and (lt is None or value < lt))


def constraint(meta) -> str:
    """The range or the choices of a knob in words: "in [2, 5]", "positive", "one of fp32, bf16", ""."""
    if meta.get("choices") is not None:
        return f"one of {', '.join(map(str, meta['choices']))}"
    lo, hi, gt, lt = (meta.get(k) for k in ("lo", "hi", "gt", "lt"))
    low, high = (lo, "[") if lo is not None else (gt, "(")
    top, end = (hi, "]") if hi is not None else (lt, ")")
    if low is not None and top is not None:
        return f"in {high}{low}, {top}{end}"
    if low is not None:
        return "positive" if gt == 0 and lo is None else f"at least {lo}" if lo is not None else f"> {gt}"
    if top is not None:
        return f"at most {hi}" if hi is not None else f"< {lt}"
    return ""


class Config:
    """Base of config dataclasses: `validate()` runs the knob checks, then the class's `_rules(bad)`,
    where `bad(name, message)` makes the InputError for field `name` (relative to the config)."""

    def validate(self, *, source=None, prefix: str = "") -> None:
        source = None if source is None else str(source)
        check_knobs(self, source=source, prefix=prefix)
        self._rules(lambda name, msg: InputError(source, msg, field=_dot(prefix, name)))

    def _rules(self, bad) -> None:  # cross-field rules, overridden where knobs constrain each other
        pass


@dataclasses.dataclass(frozen=True)
class KnobInfo:
    """One config key, as `knobs(Cls)` lists it for the docs."""

    key: str              # dotted, e.g. "genres.exam.options"
    type: str
    default: Any          # dataclasses.MISSING when required
    constraint: str       # "in [2, 5]", "one of fp32, bf16", "" ...
    doc: str | None


def knobs(cls: type, prefix: str = "") -> list[KnobInfo]:
    """Every key of config class `cls`, nested config tables flattened to dotted keys."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        key = _dot(prefix, f.name)
        inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if dataclasses.is_dataclass(tp) and f.default_factory is not _MISSING:
            out += knobs(tp, key)
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else _MISSING)
        out.append(KnobInfo(key, _type_name(tp), default, constraint(f.metadata), f.metadata.get("doc")))
        for sub in inner:  # a list of tables ([[runs]]) or an optional table ([grid]): its keys too
            out += knobs(sub, key)
    return out


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
