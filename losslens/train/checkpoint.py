"""Checkpoints: atomic, self-verifying files.

File layout: 8-byte magic `LLCKPT01`, the 32-byte sha256 of the payload, then the payload (a
`torch.save` of a dict). A truncated or corrupted file fails the hash and is reported, never loaded.
The payload is read with `torch.load(weights_only=True)`: a checkpoint that carries anything but
tensors and plain data (a pickled callable: code run on load) is refused with one line.

A run keeps, per milestone, `ckpt-<tokens>.pt` (model weights and metadata: what evaluation reads)
and, for the newest few, `state-<tokens>.pt` (optimizer state: what exact resume needs).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path

import torch

from losslens.errors import InputError
from losslens.io import write_bytes

MAGIC = b"LLCKPT01"
_NAME = re.compile(r"^(ckpt|state)-(\d{12})\.pt$")


class CorruptCheckpoint(InputError):
    pass


def ckpt_path(run_dir: Path, tokens: int, kind: str = "ckpt") -> Path:
    return Path(run_dir) / "checkpoints" / f"{kind}-{tokens:012d}.pt"


def save(path: str | Path, payload: dict) -> str:
    """Write `payload` atomically; returns its sha256."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).digest()
    write_bytes(path, MAGIC + digest + data)
    return digest.hex()


def load(path: str | Path) -> dict:
    """Read and verify a checkpoint file; `CorruptCheckpoint` names the file and what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorruptCheckpoint(path, f"cannot read checkpoint: {err.strerror}") from None
    if raw[:8] != MAGIC:
        raise CorruptCheckpoint(path, "not a losslens checkpoint (bad magic)")
    payload = raw[40:]
    if len(raw) < 40 or hashlib.sha256(payload).digest() != raw[8:40]:
        raise CorruptCheckpoint(path, "checkpoint is truncated or corrupted (sha256 mismatch)")
    try:  # weights_only: tensors, dicts, lists, numbers and strings only; a pickled callable is refused
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        name = re.search(r"GLOBAL (\S+)", str(err))
        what = f"pickled global {name.group(1)}" if name else "an object that is not plain data"
        raise CorruptCheckpoint(path, f"refused to load: it holds pickled code or objects, not only weights "
                                f"({what}); checkpoints are read with torch.load(weights_only=True)") from None


def sha256_of(path: str | Path) -> str:
    """The payload hash stored in a checkpoint's header (no full read)."""
    with open(path, "rb") as f:
        head = f.read(40)
    return head[8:40].hex()


def list_checkpoints(run_dir: str | Path, kind: str = "ckpt") -> list[tuple[int, Path]]:
    """(tokens, path) of the run's checkpoint files of one kind, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for p in folder.glob(f"{kind}-*.pt") if folder.is_dir() else []:
        m = _NAME.match(p.name)
        if m and m.group(1) == kind:
            found.append((int(m.group(2)), p))
    return sorted(found)


def check_weights(weights: dict, expected: dict, path: Path, where: str = "model") -> None:
    """Refuse weights that do not fit the model (missing, extra or wrongly shaped tensors) or that are
    not finite: one InputError naming the file and the tensor, instead of a size-mismatch traceback
    from `load_state_dict` or a NaN loss much later."""
    if not isinstance(weights, dict):
        raise InputError(path, f"expected a dict of tensors, got {type(weights).__name__}", field=where)
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {extra[0]}"
        more = len(missing) + len(extra) - 1
        raise InputError(path, f"does not match its model config: {what}" + (f" (and {more} more)" if more else ""),
                         field=where)
    for name, want in expected.items():
        got = weights[name]
        if not isinstance(got, torch.Tensor):
            raise InputError(path, f"not a tensor: {type(got).__name__}", field=f"{where}.{name}")
        if got.shape != want.shape:
            raise InputError(path, f"shape {list(got.shape)} does not match its model config, which needs "
                             f"{list(want.shape)}", field=f"{where}.{name}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise InputError(path, "non-finite weights (NaN or inf)", field=f"{where}.{name}")


def load_model(path: str | Path):
    """A trained `LlamaLM` from a checkpoint file (or a run dir: its newest checkpoint), in eval mode,
    and the checkpoint's metadata, with `path` (the file) and a `tokenizer` directory that exists."""
    from losslens.model import LlamaLM, ModelConfig

    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise InputError(path, "no checkpoints in this run dir", field="checkpoints")
        path = found[-1][1]
    ckpt = load(path)
    if "model" not in ckpt or "model_config" not in ckpt:
        raise InputError(path, "not a model checkpoint (no weights)", field="model")
    try:
        config = ModelConfig(**ckpt["model_config"])
    except (InputError, TypeError) as err:
        raise InputError(path, f"bad model config in the checkpoint: {err}", field="model_config") from None
    model = LlamaLM(config)
    check_weights(ckpt["model"], model.state_dict(), path)
    model.load_state_dict(ckpt["model"])
    model.eval()
    tokenizer = ckpt.get("tokenizer")
    if not tokenizer or not Path(tokenizer).is_dir():
        raise InputError(path, f"tokenizer directory {tokenizer!r} recorded in the checkpoint is missing",
                         field="tokenizer")
    return model, {**{k: v for k, v in ckpt.items() if k != "model"}, "path": str(path)}
