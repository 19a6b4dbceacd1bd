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
import typing
from dataclasses import dataclass, field
from pathlib import Path

from losslens.config import from_dict, load_toml
from losslens.errors import InputError

# Config fields that are probabilities (0 < x < 1) and counts that may be 0; every other int field
# must be >= 1 and every other number >= 0 (a few > 0). Checked by name, so a new field is covered.
PROBABILITIES = {"alpha", "level", "ci_level"}
MAY_BE_ZERO = {"bootstrap", "permutations"}
POSITIVE = {"huber_delta", "min_power", "max_power", "max_sigmoid_steepness"}


def config_classes() -> dict[str, type]:
    """Sub-table name -> the config dataclass it fills (imported on use: scipy is not cheap)."""
    from losslens.analysis.emergence import EmergenceConfig
    from losslens.analysis.same_loss import SameLossConfig
    from losslens.analysis.scaling import ScalingLawConfig

    return {"emergence": EmergenceConfig, "same_loss": SameLossConfig, "scaling_law": ScalingLawConfig}


def check_ranges(cfg, *, source=None, prefix: str = "") -> None:
    """The range rules above, on every field of a config dataclass."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{prefix}.{f.name}" if prefix else f.name
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if f.name in PROBABILITIES:
                ok, rule = 0 < v < 1, "between 0 and 1 (exclusive)"
            elif f.name in POSITIVE or isinstance(value, (list, tuple)):
                ok, rule = v > 0, "> 0"
            elif hints.get(f.name) is int and f.name not in MAY_BE_ZERO:
                ok, rule = v >= 1, ">= 1"
            else:
                ok, rule = v >= 0, ">= 0"
            if not ok:
                raise InputError(source, f"must be {rule}, got {value!r}", field=where)


@dataclass
class AnalysisConfig:
    """`[analysis]`: the settings `analyze` (and the ladder's study) runs with."""

    seed: int = 0                 # seed of every resampling (task i uses seed + i)
    bootstrap: int = 1000         # shorthand: resamples of every analysis whose table does not set its own
    permutations: int = 99        # shorthand: same-loss permutations unless [analysis.same_loss] sets them
    backtests: bool = True        # run the backtest of every (task, metric)
    emergence: dict = field(default_factory=dict)    # [analysis.emergence]: EmergenceConfig fields
    same_loss: dict = field(default_factory=dict)    # [analysis.same_loss]: SameLossConfig fields
    scaling_law: dict = field(default_factory=dict)  # [analysis.scaling_law]: ScalingLawConfig fields
    source: str | None = field(default=None, init=False, compare=False, repr=False)  # the TOML file

    def validate(self, *, source=None, prefix="analysis"):
        self.source = source
        for key in ("bootstrap", "permutations"):
            if getattr(self, key) < 0:
                raise InputError(source, f"must be >= 0, got {getattr(self, key)}", field=f"{prefix}.{key}")
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
