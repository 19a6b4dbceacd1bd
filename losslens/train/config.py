"""The run config: `[data]`, `[model]` and `[train]` tables of one TOML file, validated before any work.

Named configs ship inside the package (`losslens/configs/NAME.toml`); `losslens train NAME` or a
path both work. `load_run_config` raises `InputError(file, msg, field="train.tokens")` for unknown keys,
wrong types and impossible values, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from losslens.config import Config, from_dict, knob, load_toml
from losslens.data.prepare import DataConfig
from losslens.errors import InputError
from losslens.model.config import DTYPES

PRECISIONS = ("auto", *DTYPES)  # auto: bf16 autocast on CUDA (where supported), fp32 on CPU


@dataclass
class TrainConfig(Config):
    """The `[train]` table: optimisation and checkpointing of one run."""

    tokens: int = knob(lo=1)               # token budget: the cosine schedule reaches its minimum exactly here
    batch_size: int = knob(32, lo=1)       # global batch, in sequences (split across data-parallel ranks)
    micro_batch_size: int | None = knob(None, lo=1)  # per forward pass; gradients accumulate up to batch_size
    seq_len: int = knob(128, lo=1)
    lr: float = knob(3e-3, gt=0)
    min_lr_ratio: float = knob(0.1, 0, 1)  # final lr = lr * min_lr_ratio
    warmup_fraction: float = knob(0.05, lo=0, lt=1)  # linear warmup over this share of the steps
    weight_decay: float = knob(0.1, lo=0)  # on matrices and embeddings, not on norm gains
    beta1: float = knob(0.9, lo=0, lt=1)
    beta2: float = knob(0.95, lo=0, lt=1)
    grad_clip: float = knob(1.0, lo=0)     # max global grad norm; 0 turns clipping off
    precision: str = knob("auto", choices=PRECISIONS)  # "auto" (bf16 on CUDA, fp32 on CPU), "fp32" or "bf16"
    compile: bool | None = None            # torch.compile the model; None: on CUDA yes, on CPU no
    tf32: bool = True                      # CUDA: fp32 matmuls on TF32 tensor cores (no effect on CPU)
    fsdp: bool = False                     # under torchrun: shard weights and optimizer state (FSDP2), not DDP
    log_every: int = knob(10, lo=1)        # steps between host syncs; every step is still logged
    peak_flops: float = knob(0.0, lo=0)    # per-device peak FLOP/s for MFU; 0: the table for known GPUs
    tensorboard: bool = False              # also write <run dir>/tensorboard (if tensorboard is installed)
    wandb: bool = False                    # also log to Weights & Biases (if wandb is installed)
    seed: int = knob(0, 0, 2**63 - 1)      # init and data order
    threads: int = knob(0, lo=0)           # torch threads per process; 0 leaves torch's default
    checkpoints: list[int] | None = None   # token milestones; default: `num_checkpoints` geometric ones
    num_checkpoints: int = knob(8, lo=1)
    first_checkpoint: int | None = None    # first geometric milestone; default tokens / 2**(num_checkpoints-1)
    eval_tokens: int = knob(65536, lo=1)   # held-out tokens scored at every checkpoint
    keep_states: int = knob(2, lo=1)       # optimizer states kept for resume (older ones are pruned)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def total_steps(self) -> int:
        return math.ceil(self.tokens / self.tokens_per_step)

    def milestone_steps(self) -> list[int]:
        """Steps (1-based counts of optimizer steps) after which a checkpoint is written; ends at total."""
        total = self.total_steps
        if self.checkpoints is not None:
            marks = list(self.checkpoints)
        else:
            first = self.first_checkpoint or self.tokens / 2 ** (self.num_checkpoints - 1)
            ratio = (self.tokens / first) ** (1 / max(self.num_checkpoints - 1, 1))
            marks = [first * ratio**i for i in range(self.num_checkpoints)]
        steps = {min(total, max(1, math.ceil(t / self.tokens_per_step))) for t in marks}
        return sorted(steps | {total})

    def _rules(self, bad):
        """Cross-field rules; types, ranges and choices are the knobs' (losslens.config)."""
        if self.tokens < self.tokens_per_step:
            raise bad("tokens", f"budget {self.tokens} is smaller than one batch "
                                f"({self.batch_size} x {self.seq_len} = {self.tokens_per_step} tokens)")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise bad("micro_batch_size", f"must divide batch_size {self.batch_size}, got {self.micro_batch_size}")
        if self.checkpoints is not None:
            if not self.checkpoints:
                raise bad("checkpoints", "empty list")
            for i, t in enumerate(self.checkpoints):
                if not 0 < t <= self.tokens:
                    raise bad(f"checkpoints[{i}]", f"milestone {t} is outside (0, tokens={self.tokens}]")
        if self.first_checkpoint is not None and not 0 < self.first_checkpoint <= self.tokens:
            raise bad("first_checkpoint", f"must be in (0, tokens={self.tokens}]")


@dataclass
class RunConfig:
    """One training run: corpus and tokenizer, model shape, optimisation."""

    train: TrainConfig
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=lambda: {"preset": "tiny"})  # ModelConfig fields or a preset

    def validate(self, *, source=None, prefix=""):
        from losslens.model import ModelConfig
        # vocab_size comes from the tokenizer later; a placeholder lets the shape be checked now.
        cfg = ModelConfig.from_dict({"vocab_size": 256, "max_seq_len": self.train.seq_len, **self.model},
                                    source=source)
        if cfg.max_seq_len < self.train.seq_len:
            raise InputError(source, f"max_seq_len {cfg.max_seq_len} < train.seq_len {self.train.seq_len}",
                             field="model.max_seq_len")


def named_configs() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("losslens.configs").iterdir()
                  if p.name.endswith(".toml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a config shipped with losslens ("default", "small", ...)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    if name_or_path in named_configs():
        return Path(str(resources.files("losslens.configs") / f"{name_or_path}.toml"))
    raise InputError(path, f"no such config file or shipped config (shipped: {', '.join(named_configs())})")


def load_run_config(name_or_path: str) -> tuple[RunConfig, Path]:
    path = resolve_config_path(name_or_path)
    data = load_toml(path)
    if "train" not in data:
        raise InputError(path, "missing [train] table", field="train")
    # Relative paths inside a config are taken from the working directory, like paths on the command line.
    cfg = from_dict(RunConfig, data, source=path)
    return cfg, path


# [train] keys added after run dirs of earlier versions were written. Those versions trained with
# fp32, no torch.compile and these keys' defaults, so their run.json lacks them.
ADDED_TRAIN_KEYS = ("tf32", "fsdp", "log_every", "peak_flops", "tensorboard", "wandb")


def is_legacy_record(recorded: dict) -> bool:
    """A run.json config written before `ADDED_TRAIN_KEYS` existed."""
    return "train" in recorded and "tf32" not in recorded["train"]


def matches_record(recorded: dict, current: dict) -> bool:
    """Is `current` (`to_dict` of a RunConfig) the run recorded in a run dir? A record of an earlier
    version matches a config that asks for what that version did: the added keys at their defaults,
    and precision "auto" / compile unset where the record says fp32 / no compile (the trainer then
    resumes it as recorded, `resumed_as_recorded`)."""
    if not is_legacy_record(recorded) or "train" not in current:
        return recorded == current
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    old, now = dict(recorded["train"]), current["train"]
    old.update({k: defaults[k] for k in ADDED_TRAIN_KEYS if k in now})
    if old.get("precision") == "fp32" and now.get("precision") == "auto":
        old["precision"] = "auto"
    if old.get("compile") is False and now.get("compile") is None:
        old["compile"] = None
    return {**recorded, "train": old} == current


def resumed_as_recorded(tc: TrainConfig, recorded: dict) -> TrainConfig:
    """The [train] settings a run continues with: an earlier version's run keeps its fp32, no compile."""
    if not is_legacy_record(recorded):
        return tc
    return dataclasses.replace(tc, precision=recorded["train"].get("precision", "fp32"),
                               compile=bool(recorded["train"].get("compile", False)))
