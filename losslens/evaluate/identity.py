"""Checkpoint identity: a content hash of a model's weights, stored per checkpoint so that a copy of
one checkpoint filed as another step (a known problem with published checkpoint series) is caught.

The hash covers the weights as evaluated, not a file: sha256 over the state dict in sorted key order,
each entry as its name, dtype, shape and raw bytes. The same tensors give the same hash whatever the
file format (a losslens checkpoint, safetensors or a `.bin`), directory or hub revision they came from.
"""

from __future__ import annotations

import hashlib


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


def hub_commit(model) -> str | None:
    """The commit sha a hub revision resolved to, as transformers records it when loading from the
    hub or its cache (`config._commit_hash`); None for a local directory or where unknown."""
    sha = getattr(getattr(model, "config", None), "_commit_hash", None)
    return sha if isinstance(sha, str) and len(sha) == 40 else None
