"""`EvalSettings`: the evaluation settings that a ladder's `[eval]` table and an external spec share,
declared once so both check them the same way (losslens.config knobs)."""

from __future__ import annotations

from dataclasses import dataclass

from losslens.config import Config, knob


@dataclass
class EvalSettings(Config):
    limit: int | None = knob(None, lo=1, doc="first N items of each task (None: all)")
    heldout_tokens: int = knob(65536, lo=2, doc="tokens scored on the first held-out corpus (a quarter on others)")
    batch_size: int = knob(32, lo=1, doc="items per forward pass")
    seed: int = knob(0, lo=0, doc="few-shot draw")
