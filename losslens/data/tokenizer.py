"""Tokenizers: train a byte-level BPE with `tokenizers`, or load any Hugging Face tokenizer directory.

Our BPE splits every digit into its own token (so arithmetic sees digits, not arbitrary chunks of
numbers) and reserves one special token, `<|endoftext|>`, which ends every document. It is saved
with `PreTrainedTokenizerFast.save_pretrained`, so `AutoTokenizer.from_pretrained(dir)` loads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from losslens.errors import InputError
from losslens.io import make_temp_dir

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class LoadedTokenizer:
    """A fast tokenizer and the facts the data pipeline needs about it."""

    backend: tokenizers.Tokenizer  # noqa: F821 — the Rust tokenizer, for fast batch encoding
    path: Path
    eos_id: int
    vocab_size: int
    hash: str

    def encode_documents(self, docs: list[str]) -> list[list[int]]:
        """Token ids of each document followed by EOS."""
        encodings = self.backend.encode_batch(docs, add_special_tokens=False)
        return [e.ids + [self.eos_id] for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def tokenizer_hash(backend) -> str:
    """sha256 of the canonical JSON of the tokenizer: equal hashes mean identical tokenization."""
    canonical = json.dumps(json.loads(backend.to_str()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def portable_tokenizer_config(path: Path) -> None:
    """Name the class every transformers version the package allows can load: transformers 5 writes
    `TokenizersBackend`, which 4.x does not know; `PreTrainedTokenizerFast` is the same fast
    tokenizer in both (5.x maps it to its tokenizers backend)."""
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") in (None, "TokenizersBackend"):
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg.pop("backend", None)  # 5.x's name for the same choice; 4.x would pass it to __init__
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> LoadedTokenizer:
    """Train a byte-level BPE on an iterator of documents and save it as HF tokenizer files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    out_dir = Path(out_dir)
    # Save into a temp dir and rename, so a half-written tokenizer never sits at out_dir.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir.parent, prefix=f".{out_dir.name}.")
    try:
        fast.save_pretrained(tmp)
        portable_tokenizer_config(tmp / "tokenizer_config.json")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_tokenizer(out_dir)


def load_tokenizer(path: str | Path) -> LoadedTokenizer:
    """Load a tokenizer from a local Hugging Face tokenizer directory (ours or anyone's)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "tokenizer directory not found", field="tokenizer")
    try:
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # transformers raises many types for a bad directory
        raise InputError(path, f"cannot load a Hugging Face tokenizer: {err}".splitlines()[0],
                         field="tokenizer") from None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise InputError(path, "only fast (tokenizers-backed) tokenizers are supported", field="tokenizer")
    eos_id = hf.eos_token_id
    if eos_id is None:
        raise InputError(path, "tokenizer has no eos_token to separate documents", field="tokenizer")
    return LoadedTokenizer(backend=backend, path=path, eos_id=int(eos_id), vocab_size=len(hf),
                           hash=tokenizer_hash(backend))


def iter_documents(path: str | Path, *, chunk_bytes: int = 1 << 24) -> Iterator[str]:
    """Documents of a text file, separated by blank lines ("\\n\\n"), streamed in chunks."""
    rest = ""
    with open(path, encoding="utf-8") as f:
        while True:
            try:
                chunk = f.read(chunk_bytes)
            except UnicodeDecodeError as err:
                raise InputError(path, f"not UTF-8 text ({err.reason} at byte {err.start} of a chunk)") from None
            if not chunk:
                break
            parts = (rest + chunk).split("\n\n")
            rest = parts.pop()
            yield from (p.strip("\n") for p in parts if p.strip())
    if rest.strip():
        yield rest.strip("\n")
