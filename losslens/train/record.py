"""The run record, `run.json`: what a run is and what it measured, for people and for the store.

Written atomically after every checkpoint, so it always describes checkpoints that exist on disk.
Keys are documented in docs/file-formats.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from losslens.errors import InputError
from losslens.io import write_json

FORMAT = "losslens-run/1"


@dataclass
class RunRecord:
    name: str
    config: dict
    model_config: dict
    params: int
    non_embedding_params: int
    flops_per_token: float
    tokenizer: str
    tokenizer_hash: str
    data_dir: str
    tokens_per_step: int
    total_steps: int
    world_size: int
    losslens_version: str
    device: str | None = None         # where it last trained: "cpu" or the GPU's name
    precision: str | None = None      # what train.precision resolved to there: "fp32" | "bf16"
    peak_flops: float | None = None   # per-device peak FLOP/s that MFU is measured against (None: unknown)
    status: str = "running"           # running | complete | failed
    error: str | None = None
    checkpoints: list[dict] = field(default_factory=list)
    format: str = FORMAT
    created: float = field(default_factory=time.time)

    def checkpoint_at(self, step: int) -> dict | None:
        return next((c for c in self.checkpoints if c["step"] == step), None)

    def truncate_after(self, step: int) -> None:
        self.checkpoints = [c for c in self.checkpoints if c["step"] <= step]

    def add_checkpoint(self, **entry) -> dict:
        entry["flops"] = 6.0 * self.non_embedding_params * entry["tokens"]  # the paper's C = 6ND
        entry["time"] = time.time()
        self.truncate_after(entry["step"] - 1)
        self.checkpoints.append(entry)
        return entry

    def save(self, run_dir: str | Path) -> None:
        write_json(Path(run_dir) / "run.json", asdict(self))


def load_record(run_dir: str | Path) -> RunRecord | None:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise InputError(path, f"unknown run record format {data.get('format')!r}", field="format")
        return RunRecord(**data)
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(path, f"unreadable run record: {err}") from None
