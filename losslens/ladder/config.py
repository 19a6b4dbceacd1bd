"""The ladder config: a grid of runs (model x token budget x seed) that share one corpus, then
evaluation, execution and analysis settings. One TOML file, validated before any work.

    name = "my-ladder"
    [data]  ...                      shared by every run (prepared once into OUT/data)
    [train] ...                      base TrainConfig keys (not tokens, seed, threads)
    seeds = [0]
    [grid]  models = ["nano", "micro"], tokens = [1e6, 2e6]        cross product, and/or
    [[runs]] model = "tiny", tokens = [4e6], train = { lr = 2e-3 }  one model, its budgets, overrides
    [eval] [executor] [analysis] [analysis.emergence] [analysis.same_loss] [analysis.scaling_law]

A file is a ladder config when it has a `[grid]` table or `[[runs]]`; shipped ladder configs live in
`losslens/configs/ladders/` (run configs for `losslens train` live one level up). Every problem is an
`InputError(file, msg, field="runs[1].tokens[0]")`: one line, exit 2. docs/ladder.md lists every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path

from losslens.analysis.settings import AnalysisConfig  # [analysis], [analysis.emergence], ...
from losslens.config import Config, check_knobs, from_dict, knob, load_toml
from losslens.data.prepare import DataConfig
from losslens.errors import InputError
from losslens.evaluate.settings import EvalSettings
from losslens.train.config import RunConfig, TrainConfig

EXECUTORS = ("local", "ray")
PER_RUN_KEYS = {"tokens": "the budgets come from [grid] tokens or [[runs]] tokens",
                "seed": "seeds come from the top-level `seeds` list",
                "threads": "threads per worker come from [executor] threads"}
NOT_A_LADDER = ("not a ladder config: it needs a [grid] table or [[runs]] entries "
                "(a single run is trained with `losslens train`)")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class GridConfig:
    """`[grid]`: every model with every token budget."""

    models: list[str | dict]          # preset names, or inline ModelConfig tables (optional `name` key)
    tokens: list[int]


@dataclass
class RunSpec:
    """One `[[runs]]` entry: a model, its token budgets, and [train] overrides for its runs."""

    model: str | dict
    tokens: list[int] | int
    train: dict = field(default_factory=dict)


@dataclass
class EvalConfig(EvalSettings):
    """`[eval]`: what `losslens eval` measures at every checkpoint (`limit`, `heldout_tokens`,
    `batch_size`, `seed` as in an external spec)."""

    tasks: list[str] = field(default_factory=lambda: ["world:all"])

    def _rules(self, bad):
        if not self.tasks:
            raise bad("tasks", "empty list of tasks")
        for i, spec in enumerate(self.tasks):
            if not spec.startswith("world:"):
                if not Path(spec).is_file():
                    raise bad(f"tasks[{i}]", f"{spec}: no such task file")
                self.tasks[i] = str(Path(spec).resolve())  # workers may run in another directory


@dataclass
class ExecutorConfig(Config):
    """`[executor]`: where jobs run. Changing `threads` changes every run's config (exact resume
    needs the same thread count), so a started ladder keeps its threads."""

    kind: str = knob("local", choices=EXECUTORS)  # "local" (worker processes) or "ray"
    workers: int | None = knob(None, lo=1)  # jobs in flight; default: CPU cores (ray: cluster CPUs) / threads
    threads: int = knob(1, lo=1)      # torch threads per job
    address: str | None = None        # ray cluster address; None starts a local one
    num_gpus: float | None = knob(None, lo=0)  # GPUs per job (1, 2, ... or 1/n to share one); None: 1 if visible

    def _rules(self, bad):
        g = self.num_gpus
        if g is not None and not (g == 0 or (g >= 1 and g == int(g)) or (0 < g < 1 and 1 / g == round(1 / g))):
            raise bad("num_gpus", f"must be 0, a whole number of GPUs or 1/n of one, got {g}")


@dataclass(frozen=True)
class Cell:
    """One run of the ladder before it has an output directory."""

    name: str                         # e.g. "tiny-4M-s0": the run dir name and the run's name in the store
    model: dict                       # the [model] table of its RunConfig
    train: TrainConfig


@dataclass
class LadderConfig(Config):
    name: str = "ladder"
    out: str | None = None            # default output dir: ladders/<name> (the CLI's --out overrides)
    seeds: list[int] = knob([0], 0, 2**63 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    train: dict = field(default_factory=dict)
    grid: GridConfig | None = None
    runs: list[RunSpec] = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    source: str | None = field(default=None, init=False, compare=False, repr=False)  # the TOML file

    def validate(self, *, source=None, prefix=""):
        self.source = source
        check_knobs(self, source=source, prefix=prefix)
        if not _LABEL.match(self.name):
            raise InputError(source, f"use letters, digits, '.', '_', '+' or '-', got {self.name!r}", field="name")
        if self.grid is None and not self.runs:
            raise InputError(source, NOT_A_LADDER, field="grid")
        if not self.seeds:
            raise InputError(source, "empty list", field="seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(source, f"repeated seed in {self.seeds}", field="seeds")
        if self.data.world is None and self.data.world_dir is None:
            for i, spec in enumerate(self.eval.tasks):
                if spec.startswith("world:"):
                    raise InputError(source, f"{spec} needs a world corpus ([data.world] or data.world_dir)",
                                     field=f"eval.tasks[{i}]")
        self.cells()  # builds and checks every run now, before any work

    def cells(self) -> list[Cell]:
        """Every run of the ladder, in a deterministic order: grid entries, then [[runs]], each x seeds."""
        entries = []  # (model entry, its field, token budgets, its field, train overrides, their field)
        if self.grid is not None:
            for key in ("models", "tokens"):
                if not getattr(self.grid, key):
                    raise InputError(self.source, "empty list", field=f"grid.{key}")
            for i, model in enumerate(self.grid.models):
                entries.append((model, f"grid.models[{i}]", self.grid.tokens, "grid.tokens", {}, "train"))
        for i, spec in enumerate(self.runs):
            tokens = spec.tokens if isinstance(spec.tokens, list) else [spec.tokens]
            if not tokens:
                raise InputError(self.source, "empty list", field=f"runs[{i}].tokens")
            entries.append((spec.model, f"runs[{i}].model", tokens, f"runs[{i}].tokens", spec.train,
                            f"runs[{i}].train"))
        for table, where in [(self.train, "train")] + [(e[4], e[5]) for e in entries if e[4]]:
            for key, why in PER_RUN_KEYS.items():
                if key in table:
                    raise InputError(self.source, f"not allowed here: {why}", field=f"{where}.{key}")

        cells, names = [], {}
        for model, model_field, budgets, tokens_field, overrides, train_field in entries:
            model_table, label = self._model(model, model_field)
            for j, tokens in enumerate(budgets):
                for seed in self.seeds:
                    settings = {**self.train, **overrides, "tokens": tokens, "seed": seed,
                                "threads": self.executor.threads}
                    train = _train_config(settings, overrides, self.source, train_field, f"{tokens_field}[{j}]")
                    name = f"{label}-{tokens_label(tokens)}-s{seed}"
                    if name in names:
                        raise InputError(self.source, f"two runs would be named {name!r} (also {names[name]}); "
                                         "give one model a distinct `name`", field=model_field)
                    names[name] = model_field
                    RunConfig(train=train, name=name, data=self.data, model=model_table).validate(source=self.source)
                    cells.append(Cell(name, model_table, train))
        return cells

    def _model(self, model: str | dict, where: str) -> tuple[dict, str]:
        """The [model] table of a grid entry and the label that starts its run names."""
        from losslens.model import ModelConfig

        if isinstance(model, str):
            model = {"preset": model}
        table = dict(model)
        label = table.pop("name", None)
        shape = ModelConfig.from_dict({"vocab_size": 256, **table}, source=self.source, prefix=f"{where}.")
        if label is None:
            extra = set(table) - {"preset"}
            label = table["preset"] if "preset" in table and not extra else f"d{shape.d_model}-l{shape.n_layers}"
        if not isinstance(label, str) or not _LABEL.match(label):
            raise InputError(self.source, f"use letters, digits, '.', '_', '+' or '-', got {label!r}",
                             field=f"{where}.name")
        return table, label


def _train_config(settings: dict, overrides: dict, source, train_field: str, tokens_field: str) -> TrainConfig:
    """A run's TrainConfig. An error names the field where the bad value was written: the run's
    budget, its own [train] override, or the base [train] table."""
    try:
        return from_dict(TrainConfig, settings, source=source, prefix="train")
    except InputError as err:
        key = (err.field or "").removeprefix("train.")
        top = re.split(r"[.\[]", key)[0]
        where = tokens_field if top == "tokens" else f"{train_field}.{key}" if top in overrides else err.field
        raise InputError(source, err.message, field=where) from None


def tokens_label(n: int) -> str:
    """A short exact label for a token count: 4000000 -> "4M", 204800 -> "204.8k", 999 -> "999"."""
    for unit, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= unit:
            value = Decimal(n) / unit
            return f"{value.normalize():f}{suffix}"
    return str(n)


# ------------------------------------------------------------------- loading


def ladder_configs() -> list[str]:
    """Names of the ladder configs shipped in losslens/configs/ladders/."""
    folder = resources.files("losslens.configs") / "ladders"
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve_ladder_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    if str(name_or_path) in ladder_configs():
        return Path(str(resources.files("losslens.configs") / "ladders" / f"{name_or_path}.toml"))
    shipped = ", ".join(ladder_configs()) or "none"
    raise InputError(path, f"no such ladder config file or shipped ladder config (shipped: {shipped})")


def load_ladder_config(name_or_path: str | Path) -> LadderConfig:
    """A ladder config from a TOML file or a shipped name; relative paths in it are taken from the
    working directory, like paths on the command line."""
    path = resolve_ladder_path(name_or_path)
    data = load_toml(path)
    if "grid" not in data and "runs" not in data:  # say what it is before naming an unknown key in it
        raise InputError(path, NOT_A_LADDER, field="grid")
    return from_dict(LadderConfig, data, source=path)
