"""What every analysis result offers in a notebook and as data, from a few hooks per class.

A result class (a dataclass declared with `repr=False`, so this `__repr__` is kept) supplies:

    to_dict()      its JSON (already every result's)            summary()  its readable text
    rows()         one dict per (task, metric) (a scaling law: one per parameter): `to_frame()`'s rows
    _repr_items()  the few fields a short repr shows, as a dict (default: none)
    _html_frame()  the frame Jupyter shows (default: all of `to_frame()`)
    plot(...)      a matplotlib figure, where the result has something to draw

and gets `to_frame()` (a DataFrame), `to_json(path=None)`, a short `__repr__` and `_repr_html_()`
(Jupyter shows the frame under a one-line header). A new result (emergence, calibration) plugs in by
subclassing `Result` and writing `rows()`.
"""

from __future__ import annotations

import json
from html import escape

import pandas as pd

from losslens.fmt import num
from losslens.io import jsonable, write_text


def _short(value) -> str:
    if isinstance(value, float):
        return num(value, ".4g")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return repr(value)


class Result:
    """Mixin: `to_frame`, `to_json`, a short repr and an HTML view from `rows()` and `to_dict()`."""

    def rows(self) -> list[dict]:
        raise NotImplementedError(f"{type(self).__name__} has no rows()")

    def _repr_items(self) -> dict:
        return {}

    def to_frame(self) -> pd.DataFrame:
        """One row per (task, metric): verdict, eta and its interval, test results, error rates where present."""
        return pd.DataFrame(self.rows())

    def to_json(self, path=None, *, indent: int = 2) -> str:
        """The JSON of `to_dict()` (NaN as null); written atomically to `path` when given."""
        text = json.dumps(jsonable(self.to_dict()), indent=indent)
        if path is not None:
            write_text(path, text + "\n")
        return text

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={_short(v)}" for k, v in self._repr_items().items())
        return f"{type(self).__name__}({items})"

    def _html_frame(self) -> pd.DataFrame:
        """What the HTML view shows: the whole frame, unless a class keeps it to its main columns."""
        return self.to_frame()

    def _repr_html_(self) -> str:
        frame = self._html_frame()
        table = frame.to_html(index=False, na_rep="-", float_format=lambda x: num(x, ".4g"), border=0)
        return f"<div><p><b>{escape(repr(self))}</b></p>{table}</div>"
