"""Analysis settings as data: the `[analysis]` table of a ladder TOML or of `losslens analyze --config`.

    [analysis]                 seed, and shorthands for every analysis below
    seed = 0
    bootstrap = 1000           resamples of every analysis whose table does not set its own
    permutations = 99          the same-loss test's, unless [analysis.same_loss] sets it
    backtests = true
    [analysis.emergence]       any field of EmergenceConfig (alpha, delta, bic_margin, ...)
    [analysis.same_loss]       any field of SameLossConfig (folds, permutations, alpha, ...)
    [analysis.scaling_law]     any field of ScalingLawConfig (bootstrap, huber_delta, ci_level)

A key set in a sub-table wins over the shorthand, and the shorthand fills in the rest, so
`bootstrap = 200` with `[analysis.emergence] bootstrap = 7` runs 7 for eta and 200 for the rest.
Unknown keys and wrong types are an `InputError` naming the file and the dotted field (exit 2); so is a
value out of range (a probability outside (0, 1), a negative count). docs/analysis.md lists every key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from losslens.config import Config, constraint, from_dict, knob, load_toml
from losslens.errors import InputError

# Config fields that are probabilities (0 < x < 1) and counts that may be 0; every other int field
# must be >= 1 and every other number >= 0 (a few > 0). Checked by name, so a new field is covered.
PROBABILITIES = {"alpha", "level", "ci_level"}
MAY_BE_ZERO = {"bootstrap", "permutations"}
POSITIVE = {"huber_delta", "min_power", "max_power", "max_sigmoid_steepness", "critical_factor"}


def config_classes() -> dict[str, type]:
    """Sub-table name -> the config dataclass it fills (imported on use: scipy is not cheap)."""
    from losslens.analysis.emergence import EmergenceConfig
    from losslens.analysis.same_loss import SameLossConfig
    from losslens.analysis.scaling import ScalingLawConfig

    return {"emergence": EmergenceConfig, "same_loss": SameLossConfig, "scaling_law": ScalingLawConfig}


def field_range(name: str, value, tp) -> dict:
    """The rule above for one field, as `knob` metadata (lo / gt / lt)."""
    if name in PROBABILITIES:
        return {"gt": 0, "lt": 1}
    if name in POSITIVE or isinstance(value, (list, tuple)):
        return {"gt": 0}
    if tp is int and name not in MAY_BE_ZERO:
        return {"lo": 1}
    return {"lo": 0}


def check_ranges(cfg, *, source=None, prefix: str = "") -> None:
    """The range rules above, on every number of a config dataclass (`knob` wording of the errors)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{prefix}.{f.name}" if prefix else f.name
        meta = field_range(f.name, value, hints.get(f.name))
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if v >= meta.get("lo", -math.inf) and v > meta.get("gt", -math.inf) and v < meta.get("lt", math.inf):
                continue
            at = where if i is None else f"{where}[{i}]"
            raise InputError(source, f"must be {constraint(meta)}, got {v!r}", field=at)


@dataclass
class AnalysisConfig(Config):
    """`[analysis]`: the settings `analyze` (and the ladder's study) runs with."""

    seed: int = knob(0, lo=0, doc="seed of every resampling (task i uses seed + i)")
    bootstrap: int = knob(1000, lo=0, doc="resamples of every analysis whose table does not set its own")
    permutations: int = knob(99, lo=0, doc="same-loss permutations unless [analysis.same_loss] sets them")
    backtests: bool = knob(True, doc="run the backtest of every (task, metric)")
    emergence: dict = knob({}, doc="[analysis.emergence]: EmergenceConfig fields")
    same_loss: dict = knob({}, doc="[analysis.same_loss]: SameLossConfig fields")
    scaling_law: dict = knob({}, doc="[analysis.scaling_law]: ScalingLawConfig fields")
    source: str | None = field(default=None, init=False, compare=False, repr=False)  # the TOML file

    def validate(self, *, source=None, prefix="analysis"):
        self.source = None if source is None else str(source)
        super().validate(source=source, prefix=prefix)

    def _rules(self, bad):
        self.configs()  # every sub-table checked now, before any work

    def configs(self) -> dict:
        """{"emergence": EmergenceConfig, "same_loss": SameLossConfig, "scaling": ScalingLawConfig}: each
        sub-table over the shorthands."""
        shorthand = {"emergence": {"bootstrap": self.bootstrap},
                     "same_loss": {"bootstrap": self.bootstrap, "permutations": self.permutations},
                     "scaling_law": {"bootstrap": self.bootstrap}}
        out = {}
        for name, cls in config_classes().items():
            where = f"analysis.{name}"
            cfg = from_dict(cls, {**shorthand[name], **getattr(self, name)}, source=self.source, prefix=where)
            check_ranges(cfg, source=self.source, prefix=where)
            out["scaling" if name == "scaling_law" else name] = cfg
        return out

    def analyze_kwargs(self) -> dict:
        """Keyword arguments of `losslens.analysis.analyze` (and `run_study`)."""
        return {"seed": self.seed, "backtests": self.backtests, **self.configs()}


def load_analysis_config(path: str | Path) -> AnalysisConfig:
    """The `[analysis]` table of a TOML file (the only top-level table such a file may have)."""
    data = load_toml(path)
    for key in data:
        if key != "analysis":
            raise InputError(path, "unknown key (known: analysis)", field=key)
    return from_dict(AnalysisConfig, data.get("analysis", {}), source=path, prefix="analysis")
