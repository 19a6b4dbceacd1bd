"""Checkpoint identity: a content hash of a model's weights, stored per checkpoint so that a copy of
one checkpoint filed as another step (a known problem with published checkpoint series) is caught.

The hash covers the weights as evaluated, not a file: sha256 over the state dict in sorted key order,
each entry as its name, dtype, shape and raw bytes. The same tensors give the same hash whatever the
file format (a losslens checkpoint, safetensors or a `.bin`), directory or hub revision they came from.
"""

from __future__ import annotations

import hashlib
import re


def weights_sha256(model) -> str:
    """Hex sha256 of the model's state dict (tied weights appear under each of their names)."""
    import torch

    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def hub_commit(model, hub: str | None = None, revision: str | None = None) -> str | None:
    """The commit sha a hub revision resolved to: transformers' `config._commit_hash` where it records
    one (transformers < 5), else the snapshot the Hugging Face cache holds for `hub@revision` (where
    `from_pretrained` has just read it from, online or offline). None for a local directory or where
    unknown."""
    sha = getattr(getattr(model, "config", None), "_commit_hash", None)
    if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha):
        return sha
    if hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(hub, "config.json", revision=revision or "main")
    found = re.search(r"snapshots[/\\]([0-9a-f]{40})[/\\]", str(path)) if isinstance(path, str) else None
    return found.group(1) if found else None
