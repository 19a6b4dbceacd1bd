"""One model interface for everything evaluation does: a Hugging Face causal LM and its tokenizer.

Our checkpoints are converted in memory to `LlamaForCausalLM` (the same weights `losslens export`
writes; logits equal ours within 1e-5), so losslens checkpoints and any local `AutoModelForCausalLM`
directory go through exactly the same scoring code.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import torch

from losslens.errors import InputError
from losslens.model.config import DTYPES


@dataclass
class ScoringModel:
    model: transformers.PreTrainedModel  # noqa: F821
    tokenizer: transformers.PreTrainedTokenizerBase  # noqa: F821
    name: str
    dtype: str = "fp32"
    batch_size: int = 32
    meta: dict = field(default_factory=dict)  # what we know: run, step, tokens, params, world_dir, ...

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise InputError(None, f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}", field="dtype")
        self.model.eval()
        self.device = next(self.model.parameters()).device
        self.max_length = _max_length(self.model)
        tok = self.tokenizer
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
        if eos is None:
            raise InputError(None, "tokenizer has neither an EOS nor a BOS token", field="tokenizer")
        self.eos_id = int(eos)
        self.prefix_id = int(tok.bos_token_id) if tok.bos_token_id is not None else self.eos_id  # empty contexts
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        # Scoring a context needs only its last position's logits; newer transformers can skip the rest.
        params = inspect.signature(self.model.forward).parameters
        self.last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

        self.stats = ScoringStats()
        self._token_cache = token_cache(self.tokenizer)

    @classmethod
    def from_hf(cls, model, tokenizer, **kwargs) -> ScoringModel:
        return cls(model=model, tokenizer=tokenizer, name=kwargs.pop("name", model.config.name_or_path or "model"),
                   **kwargs)

    def encode(self, text: str, *, special_tokens: bool = True) -> list[int]:
        """Token ids; with the tokenizer's own special tokens (a BOS for Llama-style ones), as lm-eval does.
        Memoised per tokenizer (see `token_cache`), so a series of checkpoints tokenises each text once."""
        key = (text, special_tokens)
        ids = self._token_cache.get(key)
        if ids is None:
            ids = self._token_cache[key] = self.tokenizer(text, add_special_tokens=special_tokens)["input_ids"]
        return ids

    def decoder_forward(self, input_ids, **kwargs):
        """The model without its LM head: `.last_hidden_state` is after the final norm, (B, T, d), so
        the head runs only at the positions whose next token is scored (`logits`)."""
        return self.model.get_decoder()(input_ids=input_ids, **kwargs)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on some hidden states, in fp32, with the model's own logit scaling/soft-capping."""
        logits = self.model.get_output_embeddings()(hidden).float()
        cfg = self.model.config
        if getattr(cfg, "logit_scale", None):  # Cohere
            logits = logits * cfg.logit_scale
        if getattr(cfg, "final_logit_softcapping", None):  # Gemma 2/3
            logits = torch.tanh(logits / cfg.final_logit_softcapping) * cfg.final_logit_softcapping
        return logits

    def autocast(self):
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def non_embedding_params(self) -> int:
        return non_embedding_params(self.model)


@dataclass
class ScoringStats:
    """Token positions the scorer ran: real ones, and padding added to fill a batch's rectangle."""

    positions: int = 0
    padding: int = 0
    prefix_positions: int = 0   # of `positions`: shared prefixes, each run once

    @property
    def padded_share(self) -> float:
        total = self.positions + self.padding
        return self.padding / total if total else 0.0

    def reset(self) -> None:
        self.positions = self.padding = self.prefix_positions = 0


_TOKEN_CACHES: dict[str, dict] = {}


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides a tokenizer's output: its full serialisation (fast tokenizers)
    or its vocabulary, plus its class and special tokens."""
    import hashlib

    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr((tokenizer.bos_token_id, tokenizer.eos_token_id, getattr(tokenizer, "add_bos_token", None),
                   getattr(tokenizer, "add_eos_token", None))).encode())
    return h.hexdigest()[:16]


def token_cache(tokenizer) -> dict:
    """The process-wide {(text, special_tokens): ids} memo of one tokenizer (by fingerprint): every
    checkpoint of a series shares it, so task items and corpora are tokenised once per process."""
    return _TOKEN_CACHES.setdefault(tokenizer_fingerprint(tokenizer), {})


def non_embedding_params(model) -> int:
    """N as the paper and losslens count it (Kaplan et al. 2020): every parameter except the token
    and position embeddings and the LM head. `num_parameters(exclude_embeddings=True)` drops the
    `nn.Embedding` modules only, so an untied output matrix (GPT-NeoX's `embed_out`) is taken off here.
    Pythia-70m: 18,915,328, as its model card says."""
    from torch import nn

    n = model.num_parameters(exclude_embeddings=True)
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, nn.Embedding) \
            and head.weight is not model.get_input_embeddings().weight:
        n -= head.weight.numel()
    return int(n)


def _max_length(model) -> int:
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def to_hf_model(model):
    """Our `LlamaLM` as an in-memory `transformers.LlamaForCausalLM` with the same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from losslens.model.hf import hf_config, hf_state_dict, unwrap

    model = unwrap(model)
    config = LlamaConfig(**{k: v for k, v in hf_config(model).items() if k not in ("architectures", "model_type")})
    hf = LlamaForCausalLM(config)
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise RuntimeError(f"weight mapping mismatch: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        hf.tie_weights()
    return hf.eval()


def quiet_hf_loading() -> None:
    """No "Loading weights" bars from transformers: the commands show their own progress (on a TTY)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def check_finite(model, where) -> None:
    """Refuse a model with NaN or inf weights: it would only fail later, as a non-finite loss."""
    bad = next((n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise InputError(where, "non-finite weights (NaN or inf)", field=bad)


def load_lm(path: str | Path, *, dtype: str = "fp32", device: str = "cpu", batch_size: int = 32) -> ScoringModel:
    """A losslens checkpoint (ckpt-*.pt or a run dir: its newest checkpoint) or a local HF model dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such checkpoint or model directory")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(None, f"{device} requested but this torch has no usable CUDA device", field="--device")
    if path.is_dir() and (path / "config.json").is_file():
        quiet_hf_loading()
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as err:  # transformers raises many kinds for a broken directory
            raise InputError(path, f"cannot load a Hugging Face causal LM: {str(err).splitlines()[0]}") from None
        meta = {"source": "hf", "path": str(path)}
        model.float()  # from_pretrained keeps a checkpoint's saved dtype (often fp16); we score in fp32
        check_finite(model, path)
        return ScoringModel(model=model.to(device), tokenizer=tokenizer, name=path.name, dtype=dtype,
                  batch_size=batch_size, meta=meta)

    from losslens.train import checkpoint as ckpt

    if path.is_dir() and not ckpt.list_checkpoints(path):
        raise InputError(path, "neither a Hugging Face model dir (config.json) nor a run dir with checkpoints")
    ours, meta = ckpt.load_model(path)
    path = Path(meta["path"])
    tokenizer = AutoTokenizer.from_pretrained(meta["tokenizer"], local_files_only=True)
    from losslens.model import param_counts
    from losslens.model.config import ModelConfig

    total, non_embedding = param_counts(ModelConfig(**meta["model_config"]))
    run_dir = path.parent.parent
    meta = {**meta, "source": "losslens", "path": str(path), "run_dir": str(run_dir), "params": non_embedding,
            "total_params": total, "world_dir": _world_of(run_dir)}
    # The run dir's name identifies the run (two runs of one config differ only there).
    return ScoringModel(model=to_hf_model(ours).to(device), tokenizer=tokenizer, name=run_dir.resolve().name,
              dtype=dtype, batch_size=batch_size, meta=meta)


def _world_of(run_dir: Path) -> str | None:
    """The world a run trained on, from its run record and data dir, if any."""
    import json

    try:
        record = json.loads((run_dir / "run.json").read_text())
        data = json.loads((Path(record["data_dir"]) / "data.json").read_text())
        return data.get("world_dir")
    except (OSError, KeyError, json.JSONDecodeError):
        return None
