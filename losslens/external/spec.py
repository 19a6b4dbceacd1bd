"""The spec of `losslens external`: which Hugging Face causal LMs to evaluate, on what, into which store.

A TOML file (format in docs/file-formats.md, "External model spec"): settings at the top level, then
`[[series]]` tables (one training run: a hub id with revisions, or local dirs, one checkpoint each)
and `[[models]]` tables (one checkpoint each). `load_spec` checks everything it can without loading
a model (unknown keys, types, missing files and dirs, revision formats, tokens seen, duplicate
checkpoints) and expands the spec into `Entry`s, one per checkpoint. Every problem is one
`InputError` naming the spec file and the dotted field. Relative paths are relative to the spec file.

Tokens seen at a checkpoint: `tokens` if given, else `tokens_per_step` x step, else the count in a
revision name such as OLMo's `step1000-tokens4B`. The step: `step` if given, else the number after
`step` in the revision (Pythia's `step143000`) or in the directory name (`neox-step100`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from losslens.config import from_dict, knob, load_toml
from losslens.errors import InputError
from losslens.evaluate.settings import EvalSettings
from losslens.model.config import DTYPES

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
REVISION = re.compile(r"[\w.-]+(/[\w.-]+)*")  # a branch, tag or commit: no spaces, no leading "/"
STEP = re.compile(r"step[-_]?(\d+)")
TOKENS = re.compile(r"tokens(\d+(?:\.\d+)?)([KMBT]?)")
SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass(frozen=True)
class Entry:
    """One checkpoint to evaluate: a local directory (`path`) or a hub id at a revision."""

    run: str             # run name in the store; a series' checkpoints share it
    step: int
    tokens: int          # training tokens seen (D)
    where: str           # the spec field it came from, for error messages
    path: Path | None = None
    hub: str | None = None
    revision: str | None = None
    params: int | None = None   # N override; default: counted from the loaded model
    family: str | None = None

    @property
    def source(self) -> str:
        """The local directory, or `hub_id@revision`: what the store records as the checkpoint's path."""
        return str(self.path) if self.path is not None else f"{self.hub}@{self.revision or 'main'}"


@dataclass
class Spec:
    path: Path
    name: str
    db: Path
    corpus: list[Path]           # the first one's loss is each checkpoint's loss
    tasks: list[str]             # task file paths (resolved) and world:... specs
    world: Path | None
    harness: list[str]
    harness_include: Path | None
    limit: int | None
    heldout_tokens: int
    batch_size: int
    dtype: str
    device: str
    seed: int
    entries: list[Entry]
    log_samples: bool = False    # store every item's record too (docs/store.md)


# -- the TOML tables, as written ------------------------------------------------------------------


@dataclass
class SeriesTable:
    name: str | None = None
    hub: str | None = None
    revisions: list[str] | None = None
    paths: list[str] | None = None
    steps: list[int] | None = knob(None, lo=0)
    tokens_per_step: int | None = knob(None, gt=0)
    params: int | None = knob(None, gt=0)
    family: str | None = None


@dataclass
class ModelTable:
    path: str | None = None
    hub: str | None = None
    revision: str | None = None
    series: str | None = None
    step: int | None = knob(None, lo=0)
    tokens: int | None = None
    tokens_per_step: int | None = knob(None, gt=0)
    params: int | None = knob(None, gt=0)
    family: str | None = None


@dataclass
class SpecTable(EvalSettings):
    """The top level of a spec; `limit`, `heldout_tokens`, `batch_size` and `seed` as in a ladder's [eval]."""

    corpus: str | list[str] | None = None
    name: str | None = None
    db: str = "results.db"
    tasks: list[str] = field(default_factory=list)
    world: str | None = None
    harness: list[str] = field(default_factory=list)
    harness_include: str | None = None
    dtype: str = knob("fp32", choices=DTYPES)
    device: str = "cpu"
    log_samples: bool = False
    series: list[SeriesTable] = field(default_factory=list)
    models: list[ModelTable] = field(default_factory=list)


# -- validation -----------------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; return it with every checkpoint expanded into an `Entry`."""
    path = Path(path)
    raw = from_dict(SpecTable, load_toml(path), source=path)
    base = path.parent
    err = _Errors(path)
    if raw.corpus is None:
        raise err("missing field: the held-out text (a .txt or .jsonl file) to measure loss on", "corpus")
    corpora = [raw.corpus] if isinstance(raw.corpus, str) else raw.corpus
    if not corpora:
        raise err("needs at least one file", "corpus")
    corpus = [err.file(base / c, "corpus" if isinstance(raw.corpus, str) else f"corpus[{i}]")
              for i, c in enumerate(corpora)]
    stems = [c.stem for c in corpus]
    if len(set(stems)) < len(stems):
        raise err(f"two corpora share a name ({', '.join(stems)}); the store keys them by file stem", "corpus")
    world = err.dir(base / raw.world, "world") if raw.world else None
    tasks = []
    for i, t in enumerate(raw.tasks):
        if t.startswith("world:"):
            if world is None:
                raise err(f"{t!r} needs world = \"DIR\" (a world made by `losslens world`)", f"tasks[{i}]")
            tasks.append(t)
        else:
            tasks.append(str(err.file(base / t, f"tasks[{i}]")))
    for i, t in enumerate(raw.harness):
        if not t.strip():
            raise err("empty lm-eval task name", f"harness[{i}]")
    include = err.dir(base / raw.harness_include, "harness_include") if raw.harness_include else None
    if include is not None and not raw.harness:
        raise err("given without any harness tasks", "harness_include")
    entries = [e for i, s in enumerate(raw.series) for e in _series(s, f"series[{i}]", base, err)]
    entries += [_model(m, f"models[{i}]", base, err) for i, m in enumerate(raw.models)]
    if not entries:
        raise err("no models: add [[series]] or [[models]] tables", "models")
    seen: dict[tuple[str, int], str] = {}
    for e in entries:
        if (e.run, e.step) in seen:
            raise err(f"run {e.run!r} has step {e.step} twice (also at {seen[e.run, e.step]})", e.where)
        seen[e.run, e.step] = e.where
    for key in ("params", "family"):  # properties of a run, not of a checkpoint
        first: dict[str, tuple] = {}
        for e in entries:
            value = getattr(e, key)
            if value is not None and first.setdefault(e.run, (value, e.where))[0] != value:
                raise err(f"run {e.run!r} has {key} {value!r} here but {first[e.run][0]!r} at {first[e.run][1]}",
                          e.where)
    return Spec(path=path, name=raw.name or path.stem, db=base / raw.db, corpus=corpus, tasks=tasks, world=world,
                harness=list(raw.harness), harness_include=include, limit=raw.limit,
                heldout_tokens=raw.heldout_tokens, batch_size=raw.batch_size, dtype=raw.dtype, device=raw.device,
                seed=raw.seed, entries=entries, log_samples=raw.log_samples)


class _Errors:
    """Makes `InputError`s that name the spec file, and checks the files and dirs it names."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str, where: str) -> InputError:
        return InputError(self.path, message, field=where)

    def file(self, p: Path, where: str) -> Path:
        if not p.is_file():
            raise self(f"no such file: {p}", where)
        return p

    def dir(self, p: Path, where: str) -> Path:
        if not p.is_dir():
            raise self(f"no such directory: {p}", where)
        return p

    def model_dir(self, p: Path, where: str) -> Path:
        self.dir(p, where)
        if not (p / "config.json").is_file():
            raise self(f"{p} is not a Hugging Face model directory (no config.json)", where)
        return p

    def hub_id(self, hub: str, where: str) -> str:
        if not HUB_ID.fullmatch(hub):
            raise self(f"not a hub id (expected ORG/NAME): {hub!r}", where)
        return hub

    def revision(self, rev: str, where: str) -> str:
        if not REVISION.fullmatch(rev):
            raise self(f"not a revision name (a branch, tag or commit, e.g. step1000): {rev!r}", where)
        return rev


def _step_in(name: str) -> int | None:
    matches = STEP.findall(name)
    return int(matches[-1]) if matches else None


def _tokens_in(revision: str | None) -> int | None:
    match = TOKENS.search(revision or "")
    return round(float(match[1]) * SCALE[match[2]]) if match else None


def _tokens(err: _Errors, where: str, *, tokens: int | None, tokens_per_step: int | None, step: int,
            revision: str | None) -> int:
    if tokens is None and tokens_per_step is not None:
        tokens = tokens_per_step * step
    if tokens is None:
        tokens = _tokens_in(revision)
    if tokens is None:
        given = "tokens_per_step" if where.endswith("tokens_per_step") else "tokens, or tokens_per_step"
        raise err(f"tokens seen unknown: give {given} (tokens seen = tokens_per_step x step)", where)
    if tokens < 1:
        raise err(f"tokens seen must be > 0 (the analysis needs D > 0), got {tokens}", where)
    return tokens


def _series(s: SeriesTable, where: str, base: Path, err: _Errors) -> list[Entry]:
    if not s.name:
        raise err("missing field: the run name all its checkpoints share", f"{where}.name")
    if (s.hub is None) == (s.paths is None):
        raise err("give either hub (with revisions) or paths (local model directories)", where)
    if s.hub is not None:
        err.hub_id(s.hub, f"{where}.hub")
        if not s.revisions:
            raise err("missing field: the hub revisions to evaluate, e.g. [\"step1000\", \"step2000\"]",
                      f"{where}.revisions")
        names = [err.revision(r, f"{where}.revisions[{i}]") for i, r in enumerate(s.revisions)]
        key = "revisions"
    else:
        if s.revisions is not None:
            raise err("revisions go with hub; local checkpoints are listed in paths", f"{where}.revisions")
        if not s.paths:
            raise err("needs at least one model directory", f"{where}.paths")
        names = [err.model_dir(base / p, f"{where}.paths[{i}]") for i, p in enumerate(s.paths)]
        key = "paths"
    if s.steps is not None and len(s.steps) != len(names):
        raise err(f"{len(s.steps)} steps for {len(names)} {key}", f"{where}.steps")
    entries = []
    for i, name in enumerate(names):
        at = f"{where}.{key}[{i}]"
        step = s.steps[i] if s.steps is not None else _step_in(name if s.hub else name.name)
        if step is None:
            raise err(f"no step in {str(name)!r} (expected a name like step1000; or give steps = [...])", at)
        revision = name if s.hub else None
        tokens = _tokens(err, f"{where}.tokens_per_step", tokens=None, tokens_per_step=s.tokens_per_step, step=step,
                         revision=revision)
        entries.append(Entry(run=s.name, step=step, tokens=tokens, where=at, path=None if s.hub else name,
                             hub=s.hub, revision=revision, params=s.params, family=s.family))
    return entries


def _model(m: ModelTable, where: str, base: Path, err: _Errors) -> Entry:
    if m.series is not None and not m.series.strip():
        raise err("empty run name", f"{where}.series")
    if (m.hub is None) == (m.path is None):
        raise err("give either path (a local model directory) or hub (a hub id)", where)
    if m.hub is not None:
        err.hub_id(m.hub, f"{where}.hub")
        revision = err.revision(m.revision, f"{where}.revision") if m.revision is not None else None
        path, named = None, revision or ""
    else:
        if m.revision is not None:
            raise err("revision goes with hub; a local directory is one checkpoint", f"{where}.revision")
        path, revision = err.model_dir(base / m.path, f"{where}.path"), None
        named = path.name
    step = m.step if m.step is not None else _step_in(named)
    if step is None:
        if m.tokens_per_step is not None:
            raise err("tokens_per_step needs a step: give step, or a name with one (like step1000)", f"{where}.step")
        step = 0
    tokens = _tokens(err, f"{where}.tokens", tokens=m.tokens, tokens_per_step=m.tokens_per_step, step=step,
                     revision=revision)
    run = m.series or (path.name if path is not None else m.hub)
    return Entry(run=run, step=step, tokens=tokens, where=where, path=path, hub=m.hub, revision=revision,
                 params=m.params, family=m.family)
