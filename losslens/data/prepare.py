"""From a corpus (the embedded world, an existing world directory, or the user's text) to a tokenizer
and token shards, prepared once in a data directory that many runs can share.

    <data dir>/
      world/             the generated world (only for `[data.world]`)
      tokenizer/         HF tokenizer files (ours, trained here, unless `tokenizer` names one)
      train.tokens       training shard
      val.tokens         held-out validation shard (fixed windows give every checkpoint's loss)
      val-<genre>.tokens per-genre held-out shards (world corpora only)
      data.json          what was prepared from what (written last: its presence means "complete")

Preparation takes an exclusive file lock, so parallel runs sharing a data dir prepare it once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losslens.config import knob, to_dict
from losslens.data.shards import Shard, open_shard, token_dtype, write_shard
from losslens.data.tokenizer import LoadedTokenizer, iter_documents, load_tokenizer, train_bpe
from losslens.errors import InputError
from losslens.io import file_lock, write_json


@dataclass
class DataConfig:
    """The `[data]` table. Exactly one corpus: `world` (knobs, generated here), `world_dir`, or `text`."""

    world: dict | None = None             # knobs of the embedded synthetic world (see docs/world.md)
    world_dir: str | None = None          # a world made by `losslens world --out DIR`
    text: list[str] | None = None         # your own training text files; documents separated by blank lines
    val_text: list[str] | None = None     # held-out text; default: every `val_every`-th document of `text`
    val_every: int = knob(100, lo=2)
    tokenizer: str | None = None          # a local Hugging Face tokenizer dir; default: train a BPE here
    vocab_size: int = knob(4096, gt=256, hi=1 << 20)
    tokenizer_train_mb: float = knob(32.0, gt=0)  # BPE is trained on (at most) this much training text
    dir: str | None = None                # where prepared data lives; default <run dir>/data

    def validate(self, *, source=None, prefix="data"):
        """Cross-field rules and paths; types and ranges are the knobs' (checked first by from_dict)."""
        chosen = [k for k in ("world", "world_dir", "text") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise InputError(source, f"give one corpus, not {' and '.join(chosen)}", field=f"{prefix}.{chosen[1]}")
        if not chosen:
            self.world = {}  # the embedded default world
        if self.world is not None:
            from losslens.world import WorldConfig
            WorldConfig.from_dict(self.world, source=source, prefix=f"{prefix}.world")  # checked before any work
        paths = [("world_dir", self.world_dir)] if self.world_dir else []
        paths += [(f"text[{i}]", p) for i, p in enumerate(self.text or [])]
        paths += [(f"val_text[{i}]", p) for i, p in enumerate(self.val_text or [])]
        if self.tokenizer:
            paths.append(("tokenizer", self.tokenizer))
        for name, p in paths:
            if not Path(p).exists():
                raise InputError(source, f"{p}: no such file or directory", field=f"{prefix}.{name}")
        # Record absolute paths: checkpoints and run records must work from any working directory.
        absolute = lambda p: str(Path(p).resolve())  # noqa: E731
        self.world_dir = absolute(self.world_dir) if self.world_dir else None
        self.text = [absolute(p) for p in self.text] if self.text else self.text
        self.val_text = [absolute(p) for p in self.val_text] if self.val_text else self.val_text
        self.tokenizer = absolute(self.tokenizer) if self.tokenizer else None
        self.dir = absolute(self.dir) if self.dir else None
        if self.world_dir and not (Path(self.world_dir) / "train.txt").is_file():
            raise InputError(source, f"{self.world_dir} holds no world (no train.txt)", field=f"{prefix}.world_dir")
        if self.text == []:
            raise InputError(source, "empty list of text files", field=f"{prefix}.text")

    def fingerprint(self) -> str:
        """Identifies the prepared data: runs with equal fingerprints can share a data dir."""
        d = to_dict(self)
        d.pop("dir")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PreparedData:
    dir: Path
    tokenizer: LoadedTokenizer
    train: Shard
    val: Shard
    val_by_genre: dict[str, Shard] = field(default_factory=dict)
    world_dir: Path | None = None


def _text_sources(cfg: DataConfig, data_dir: Path) -> tuple[list[Path], list[Path] | None, dict, Path | None]:
    """(train files, val files or None for a split, per-genre val files, world dir)."""
    if cfg.text is not None:
        return [Path(p) for p in cfg.text], [Path(p) for p in cfg.val_text] if cfg.val_text else None, {}, None
    if cfg.world_dir is not None:
        world_dir = Path(cfg.world_dir)
    else:
        from losslens.world import WorldConfig, generate_world
        world_dir = data_dir / "world"
        generate_world(WorldConfig.from_dict(cfg.world or {}), world_dir)
    by_genre = {p.stem: [p] for p in sorted((world_dir / "val").glob("*.txt"))}
    return [world_dir / "train.txt"], [world_dir / "val.txt"], by_genre, world_dir


def _docs(files: list[Path]):
    return itertools.chain.from_iterable(iter_documents(f) for f in files)


def _write(path: Path, tok: LoadedTokenizer, docs, source: str, batch: int = 4096) -> Shard:
    """Tokenize documents in batches (each ends in EOS) and write them as one shard."""
    dtype = token_dtype(tok.vocab_size)
    chunks, n_docs, n_bytes = [], 0, 0
    it = iter(docs)
    while chunk := list(itertools.islice(it, batch)):
        n_docs += len(chunk)
        n_bytes += sum(len(d.encode()) for d in chunk)
        ids = tok.encode_documents(chunk)
        chunks.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype))
    return write_shard(path, chunks, n_documents=n_docs, vocab_size=tok.vocab_size,
                       tokenizer_hash=tok.hash, n_bytes=n_bytes, source=source)


def prepare_data(cfg: DataConfig, data_dir: str | Path) -> PreparedData:
    """Generate/tokenize what is missing in `data_dir`, or reuse it when already complete."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(data_dir / ".lock"):
        manifest_path = data_dir / "data.json"
        fingerprint = cfg.fingerprint()
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if manifest["fingerprint"] != fingerprint:
                raise InputError(data_dir, "data dir was prepared from a different [data] config; "
                                           "use another data.dir", field="data.dir")
            return _open(data_dir, manifest)
        train_files, val_files, val_by_genre, world_dir = _text_sources(cfg, data_dir)

        if cfg.tokenizer:
            tok = load_tokenizer(cfg.tokenizer)
        else:
            budget = int(cfg.tokenizer_train_mb * 2**20)
            sample = _take_bytes(_docs(train_files), budget)
            tok = train_bpe(sample, cfg.vocab_size, data_dir / "tokenizer")

        if val_files is None:  # hold out every val_every-th document of the user's text
            train_docs = (d for i, d in enumerate(_docs(train_files)) if i % cfg.val_every != cfg.val_every - 1)
            val_docs = (d for i, d in enumerate(_docs(train_files)) if i % cfg.val_every == cfg.val_every - 1)
        else:
            train_docs, val_docs = _docs(train_files), _docs(val_files)
        train = _write(data_dir / "train.tokens", tok, train_docs, "train")
        val = _write(data_dir / "val.tokens", tok, val_docs, "val")
        genres = {g: _write(data_dir / f"val-{g}.tokens", tok, _docs(files), f"val:{g}")
                  for g, files in val_by_genre.items()}
        if train.n_tokens == 0 or val.n_tokens == 0:
            raise InputError(train_files[0], "corpus has no training or no held-out documents", field="data.text")
        manifest = {"fingerprint": fingerprint, "config": to_dict(cfg), "tokenizer": str(tok.path),
                    "tokenizer_hash": tok.hash, "world_dir": str(world_dir) if world_dir else None,
                    "train": train.header, "val": val.header, "val_genres": sorted(genres)}
        write_json(manifest_path, manifest)
        return _open(data_dir, manifest)


def _take_bytes(docs, budget: int):
    used = 0
    for d in docs:
        if used >= budget:
            return
        used += len(d.encode())
        yield d


def _open(data_dir: Path, manifest: dict) -> PreparedData:
    tok = load_tokenizer(manifest["tokenizer"])
    if tok.hash != manifest["tokenizer_hash"]:
        raise InputError(manifest["tokenizer"], "tokenizer changed since the data was prepared", field="tokenizer")
    return PreparedData(
        dir=data_dir, tokenizer=tok,
        train=open_shard(data_dir / "train.tokens", tokenizer_hash=tok.hash),
        val=open_shard(data_dir / "val.tokens", tokenizer_hash=tok.hash),
        val_by_genre={g: open_shard(data_dir / f"val-{g}.tokens", tokenizer_hash=tok.hash)
                      for g in manifest["val_genres"]},
        world_dir=Path(manifest["world_dir"]) if manifest["world_dir"] else None,
    )
