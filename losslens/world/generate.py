"""Generate a world directory: training and validation text, evaluation tasks and the manifest.

    out_dir/
      world.json                   manifest: config, sizes and sha256 of every file, documents per genre, tasks
      train.txt                    training documents separated by one blank line
      val.txt, val/<genre>.txt     held-out documents of the same mixture (never in train.txt)
      eval/<task>.jsonl            evaluation items (held-out keys only)
      eval/<task>.fewshot.jsonl    few-shot pool (held out too, disjoint from the items)
      eval/<task>.json             task config: type, metric, chance, default few-shot count, ...

Text is made in chunks of ~1 MB; chunk i of a stream is seeded by (seed, stream, i) alone, so the bytes
do not depend on the number of worker processes. Validation text comes first, so training chunks can
drop any document that happens to equal a validation one. Evaluation items come last, because the
closed-book tasks only ask facts that the finished training text states. Everything is written into
a temporary sibling directory that is renamed to `out_dir` at the end: `out_dir` is complete or absent.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import json
import math
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslens import __version__
from losslens.errors import InputError
from losslens.io import fsync_dir, make_temp_dir
from losslens.world.config import WorldConfig
from losslens.world.genres import GENRE_CLASSES, GENRES, Genre, WorldContext
from losslens.world.kb import ATTRIBUTES, build_kb
from losslens.world.sampling import EVAL, TRAIN, VAL, Split, rng_for

FORMAT = "losslens-world/1"
CHUNK_BYTES = 1_000_000
SEP = "\n\n"


@dataclass
class World(WorldContext):
    genres: dict[str, Genre] | None = None


def build_world(cfg: WorldConfig) -> World:
    kb = build_kb(cfg.seed, cfg.genres.facts, cfg.zipf_exponent)
    world = World(cfg=cfg, kb=kb, split=Split(cfg.seed, cfg.heldout))
    world.genres = {name: cls(world) for name, cls in GENRE_CLASSES.items()}
    return world


@dataclass
class Chunk:
    docs: list[str]
    genres: np.ndarray     # genre index of each document
    mentions: np.ndarray   # [subject, attribute] facts stated by this chunk's documents


def make_chunk(world: World, stream: int, index: int, n_bytes: float, exclude: frozenset = frozenset()) -> Chunk:
    """About `n_bytes` of documents, each genre filling its share, shuffled together."""
    rng = rng_for(world.cfg.seed, stream, index)
    docs: list[str] = []
    labels: list[int] = []
    mentions = np.zeros(world.kb.values.shape, dtype=np.int32)
    for gi, (name, share) in enumerate(world.cfg.shares().items()):
        target, made, count = n_bytes * share, 0, 0
        genre = world.genres[name]
        estimate = genre.guess_bytes
        while made < target:
            # A small first batch measures the document size; then batches aim just below the target
            # (at 90% of what is left: sizes vary, so aiming at 100% would overshoot half the time).
            n = max(1, int(0.9 * (target - made) / estimate))
            n = min(n, 64) if count == 0 else n
            for d in genre.documents(rng, n):
                if d.text in exclude:
                    continue
                docs.append(d.text)
                labels.append(gi)
                made += len(d.text) + len(SEP)
                count += 1
                for s, a in d.facts:
                    mentions[s, a] += 1
            estimate = made / count if count else estimate * 2
    order = rng.permutation(len(docs))
    return Chunk([docs[i] for i in order], np.asarray(labels, dtype=np.int8)[order], mentions)


# --- worker processes ------------------------------------------------------------------------------
_WORKER: tuple[World, frozenset] | None = None


def _init_worker(cfg_dict: dict, exclude: frozenset) -> None:
    global _WORKER
    _WORKER = (build_world(WorldConfig.from_dict(cfg_dict)), exclude)


def _train_chunk(job: tuple[int, float]) -> Chunk:
    world, exclude = _WORKER
    return make_chunk(world, TRAIN, job[0], job[1], exclude)


def _chunks(world: World, stream: int, total_bytes: int, exclude: frozenset, workers: int):
    """Chunks of a stream in order, made here or by `workers` processes (same bytes either way)."""
    n = max(1, math.ceil(total_bytes / CHUNK_BYTES))
    jobs = [(i, total_bytes / n) for i in range(n)]
    if workers <= 1 or stream != TRAIN:
        for i, size in jobs:
            yield make_chunk(world, stream, i, size, exclude)
        return
    # fork: workers only run numpy and string code, and unlike spawn/forkserver it does not re-import
    # the caller's __main__ (a user script without a main guard would otherwise start processes again).
    ctx = multiprocessing.get_context("fork")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(world.cfg.to_dict(), exclude)) as pool:
        yield from pool.map(_train_chunk, jobs)


# --- writing ---------------------------------------------------------------------------------------
class _Text:
    """A text file of documents joined by blank lines, hashed as it is written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.f, self.sha, self.bytes, self.docs = path, open(path, "wb"), hashlib.sha256(), 0, 0

    def write(self, doc: str) -> None:
        data = ((SEP if self.docs else "") + doc).encode()
        self.f.write(data)
        self.sha.update(data)
        self.bytes += len(data)
        self.docs += 1

    def close(self) -> dict:
        if self.docs:
            self.f.write(b"\n")
            self.sha.update(b"\n")
            self.bytes += 1
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return {"bytes": self.bytes, "sha256": self.sha.hexdigest()}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows))


def _file_record(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _build(cfg: WorldConfig, tmp: Path, workers: int) -> dict:
    world = build_world(cfg)
    files: dict[str, dict] = {}
    counts = {"train": {g: 0 for g in GENRES}, "val": {g: 0 for g in GENRES}}

    # Validation text, whole and per genre.
    val_docs: set[str] = set()
    whole = _Text(tmp / "val.txt")
    per_genre = {g: _Text(tmp / "val" / f"{g}.txt") for g, s in cfg.shares().items() if s > 0}
    for chunk in _chunks(world, VAL, cfg.val_bytes(), frozenset(), 1):
        for doc, gi in zip(chunk.docs, chunk.genres.tolist()):
            whole.write(doc)
            per_genre[GENRES[gi]].write(doc)
            counts["val"][GENRES[gi]] += 1
            val_docs.add(doc)
    files["val.txt"] = whole.close()
    for g, text in per_genre.items():
        files[f"val/{g}.txt"] = text.close()

    # Training text; the facts it states decide which closed-book questions are fair to ask.
    mentions = np.zeros(world.kb.values.shape, dtype=np.int64)
    train = _Text(tmp / "train.txt")
    for chunk in _chunks(world, TRAIN, int(cfg.size_mb * 1e6), frozenset(val_docs), workers):
        for doc in chunk.docs:
            train.write(doc)
        for gi, n in zip(*np.unique(chunk.genres, return_counts=True)):
            counts["train"][GENRES[gi]] += int(n)
        mentions += chunk.mentions
    files["train.txt"] = train.close()
    world.mentions = mentions

    tasks, skipped = [], {}
    for gi, (name, share) in enumerate(cfg.shares().items()):
        genre = world.genres[name]
        task = genre.task.name
        if share == 0:
            skipped[task] = f"genres.{name}.share is 0"
            continue
        items = genre.items(rng_for(cfg.seed, EVAL, gi), cfg.eval_items + cfg.fewshot_items)
        if not items:
            skipped[task] = "no held-out item could be made (see docs/world.md)"
            continue
        # When the item space is short, the eval set keeps at least 4/5 of what exists.
        n_few = cfg.fewshot_items if len(items) >= cfg.eval_items + cfg.fewshot_items else \
            min(cfg.fewshot_items, len(items) // 5)
        n_few -= n_few % genre.item_group()
        few, evals = items[:n_few], items[n_few:n_few + cfg.eval_items]
        paths = {"config": f"eval/{task}.json", "items": f"eval/{task}.jsonl", "fewshot": f"eval/{task}.fewshot.jsonl"}
        (tmp / "eval").mkdir(exist_ok=True)
        _write_jsonl(tmp / paths["items"], [{"id": f"{task}-{i:05d}", **it} for i, it in enumerate(evals)])
        _write_jsonl(tmp / paths["fewshot"], [{"id": f"{task}-fewshot-{i:03d}", **it} for i, it in enumerate(few)])
        (tmp / paths["config"]).write_text(json.dumps(genre.task_config(), indent=2) + "\n")
        for p in paths.values():
            files[p] = _file_record(tmp / p)
        tasks.append({"name": task, "genre": name, "type": genre.task.type, "chance": genre.chance(),
                      **paths, "n_items": len(evals), "n_fewshot": len(few)})

    eligible = world.fact_heldout & (world.kb.values >= 0) & (mentions >= cfg.genres.facts.min_mentions)
    manifest = {
        "format": FORMAT,
        "losslens_version": __version__,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "genres": list(GENRES),
        "shares": cfg.shares(),
        "documents": counts,
        "knowledge": {
            "people": cfg.genres.facts.people, "cities": cfg.genres.facts.cities,
            "countries": cfg.genres.facts.countries, "attributes": [a.name for a in ATTRIBUTES],
            "facts_stated_in_train": int((mentions > 0).sum()),
            "facts_eligible_for_eval": int(eligible.sum()),
        },
        "files": dict(sorted(files.items())),
        "tasks": tasks,
        "skipped_tasks": skipped,
    }
    (tmp / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- public API ------------------------------------------------------------------------------------
def load_manifest(out_dir: str | Path) -> dict:
    """The manifest of a world directory (InputError when missing or corrupt)."""
    path = Path(out_dir) / "world.json"
    if not path.is_file():
        raise InputError(path, "not a world directory (no world.json); make one with `losslens world`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"corrupt manifest: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(path, f"not a {FORMAT} manifest", field="format")
    for key in ("seed", "config", "files", "tasks", "documents"):
        if key not in manifest:
            raise InputError(path, "missing from the manifest", field=key)
    return manifest


def verify_world(out_dir: str | Path, manifest: dict | None = None) -> dict:
    """Check every file's size and sha256 against the manifest; InputError names the first mismatch."""
    out_dir = Path(out_dir)
    manifest = manifest or load_manifest(out_dir)
    for rel, rec in manifest["files"].items():
        path = out_dir / rel
        if not path.is_file():
            raise InputError(path, "missing file of the world", field="files")
        if path.stat().st_size != rec["bytes"] or _file_record(path)["sha256"] != rec["sha256"]:
            raise InputError(path, "file differs from world.json (modified or truncated)", field="files")
    return manifest


def generate_world(cfg: WorldConfig, out_dir: str | Path, *, workers: int | None = None) -> dict:
    """Write the world of `cfg` into `out_dir` atomically and return its manifest.

    If `out_dir` already holds the same world (same config, files intact), return its manifest
    without regenerating. A different or non-world `out_dir` is an InputError; nothing is touched.
    `workers` (default: all cores for worlds of 8 MB and more) changes speed, never the bytes.
    """
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory", field="out")
    if out.is_dir() and any(out.iterdir()):
        return _existing(cfg, out)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if cfg.size_mb >= 8 else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out)
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.partial-{os.getpid()}-")
    try:
        manifest = _build(cfg, tmp, workers)
        for d in (tmp, tmp / "val", tmp / "eval"):
            if d.is_dir():
                fsync_dir(d)
        try:
            os.replace(tmp, out)  # onto a missing or empty directory: atomic
        except OSError:
            if not (out / "world.json").is_file():
                raise
            return _existing(cfg, out)  # another process finished the same world first
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _existing(cfg: WorldConfig, out: Path) -> dict:
    manifest = load_manifest(out)
    if manifest["config"] != cfg.to_dict():
        raise InputError(out, "holds a world with a different config; delete it or choose another --out",
                         field="out")
    return verify_world(out, manifest)


def _remove_abandoned(out: Path) -> None:
    """Delete temp dirs that killed generations of `out` left behind (their process is gone)."""
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        pid = partial.name.split(".partial-", 1)[1].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass
