"""Task files: JSONL items plus a small JSON config, validated line by line.

    multiple_choice item:  {"id", "context", "choices": [...], "gold": int}
    generation item:       {"id", "prompt", "answer", "target"?, "stop"?, "max_tokens"?, "extract"?}

A task `NAME.jsonl` may sit beside `NAME.json` (its config) and `NAME.fewshot.jsonl` (the pool few-shot examples are
drawn from; never the evaluated items). Config keys: type, name, description, num_fewshot,
fewshot_separator, and item defaults stop, max_tokens, extract. Without a config the type is
inferred from the first item.
Every problem is an `InputError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losslens.errors import InputError
from losslens.io import iter_jsonl

TASK_TYPES = ("multiple_choice", "generation")
EXTRACTORS = ("strip", "last_number", "first_line")


@dataclass(frozen=True)
class ChoiceItem:
    id: str
    context: str
    choices: tuple[str, ...]
    gold: int

    def demo(self) -> str:
        """The item as a solved few-shot example."""
        return self.context + self.choices[self.gold]


@dataclass(frozen=True)
class GenerationItem:
    id: str
    prompt: str
    answer: str
    target: str           # the reference continuation (a worked solution, or " " + answer)
    stop: tuple[str, ...]
    max_tokens: int
    extract: str

    def demo(self) -> str:
        return self.prompt + self.target


@dataclass
class Task:
    name: str
    type: str
    items: list
    fewshot_pool: list = field(default_factory=list)
    num_fewshot: int = 0
    fewshot_separator: str = "\n\n"
    description: str = ""
    source: str = ""

    @property
    def chance(self) -> float:
        """Random-guess accuracy from the format: mean 1/#choices, or 0 for generation."""
        if self.type == "generation":
            return 0.0
        return float(np.mean([1 / len(it.choices) for it in self.items]))

    def fewshot_prefix(self, item, seed: int = 0) -> str:
        """k solved examples drawn from the pool, the same for the same (seed, item id)."""
        k = min(self.num_fewshot, len(self.fewshot_pool))
        if k == 0:
            return ""
        rng = np.random.default_rng([seed, zlib.crc32(item.id.encode())])
        picks = rng.choice(len(self.fewshot_pool), size=k, replace=False)
        return "".join(self.fewshot_pool[i].demo() + self.fewshot_separator for i in picks)


def _field(obj: dict, key: str, kind, path, line, *, required=True, default=None):
    if key not in obj:
        if required:
            raise InputError(path, "missing field", field=key, line=line)
        return default
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(path, f"expected {names}, got {type(value).__name__}", field=key, line=line)
    return value


def _parse_item(obj, task_type: str, path: Path, line: int, defaults: dict):
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=line)
    item_id = str(obj.get("id", f"{path.stem}-{line}"))
    if task_type == "multiple_choice":
        context = _field(obj, "context", str, path, line)
        choices = _field(obj, "choices", list, path, line)
        if not choices:
            raise InputError(path, "no choices", field="choices", line=line)
        for i, c in enumerate(choices):
            if not isinstance(c, str) or not c:
                raise InputError(path, f"choice {i} must be a non-empty string", field="choices", line=line)
        gold = _field(obj, "gold", int, path, line)
        if not 0 <= gold < len(choices):
            raise InputError(path, f"gold index {gold} out of range for {len(choices)} choices", field="gold",
                             line=line)
        return ChoiceItem(item_id, context, tuple(choices), gold)
    prompt = _field(obj, "prompt", str, path, line)
    answer = _field(obj, "answer", (str, int, float), path, line)
    answer = answer if isinstance(answer, str) else str(answer)
    stop = _field(obj, "stop", list, path, line, required=False, default=defaults.get("stop", ["\n"]))
    if not all(isinstance(s, str) and s for s in stop):
        raise InputError(path, "stop sequences must be non-empty strings", field="stop", line=line)
    max_tokens = _field(obj, "max_tokens", int, path, line, required=False, default=defaults.get("max_tokens", 32))
    if max_tokens < 1:
        raise InputError(path, f"must be >= 1, got {max_tokens}", field="max_tokens", line=line)
    extract = _field(obj, "extract", str, path, line, required=False, default=defaults.get("extract", "strip"))
    if extract not in EXTRACTORS:
        raise InputError(path, f"unknown extractor {extract!r} (known: {', '.join(EXTRACTORS)})", field="extract",
                         line=line)
    target = _field(obj, "target", str, path, line, required=False, default=" " + answer)
    return GenerationItem(item_id, prompt, answer, target, tuple(stop), max_tokens, extract)


def read_items(path: Path, task_type: str | None, defaults: dict) -> tuple[str, list]:
    """Parse a JSONL file of items; returns (type, items). Errors name file:line and field."""
    items: list = []
    for n, obj in iter_jsonl(path):
        if task_type is None:  # infer from the first item
            task_type = "multiple_choice" if isinstance(obj, dict) and "choices" in obj else "generation"
        items.append(_parse_item(obj, task_type, path, n, defaults))
    if not items:
        raise InputError(path, "task file has no items")
    return task_type, items


def load_task(path: str | Path, *, name: str | None = None) -> Task:
    """Load NAME.jsonl with its optional NAME.json config and NAME.fewshot.jsonl pool."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "task file not found")
    stem = path.name.removesuffix(".jsonl")
    config_path, pool_path = path.with_name(stem + ".json"), path.with_name(stem + ".fewshot.jsonl")
    config: dict = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(config_path, f"bad JSON: {err.msg}", line=err.lineno) from None
    if not isinstance(config, dict):
        raise InputError(config_path, f"task config must be a JSON object, got {type(config).__name__}")
    for key, kind in (("type", str), ("name", str), ("description", str), ("fewshot_separator", str),
                      ("extract", str), ("stop", list), ("max_tokens", int), ("num_fewshot", int)):
        if key in config and (not isinstance(config[key], kind) or isinstance(config[key], bool)):
            raise InputError(config_path, f"expected {kind.__name__}, got {type(config[key]).__name__}", field=key)
    task_type = config.get("type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise InputError(config_path, f"unknown task type {task_type!r} (known: {', '.join(TASK_TYPES)})",
                         field="type")
    defaults = {k: config[k] for k in ("stop", "max_tokens", "extract") if k in config}
    task_type, items = read_items(path, task_type, defaults)
    pool = read_items(pool_path, task_type, defaults)[1] if pool_path.is_file() else []
    num_fewshot = config.get("num_fewshot", 0)
    if not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise InputError(config_path, f"must be a non-negative integer, got {num_fewshot!r}", field="num_fewshot")
    if num_fewshot > len(pool):
        raise InputError(config_path, f"{num_fewshot} few-shot examples asked, pool has {len(pool)}",
                         field="num_fewshot")
    return Task(name=name or config.get("name", stem), type=task_type, items=items, fewshot_pool=pool,
                num_fewshot=num_fewshot, fewshot_separator=config.get("fewshot_separator", "\n\n"),
                description=config.get("description", ""), source=str(path))


def world_tasks(world_dir: str | Path, names: list[str] | None = None) -> list[Task]:
    """The world's held-out tasks (all, or the named ones), in the order the world lists them."""
    from losslens.world import load_manifest

    world_dir = Path(world_dir)
    manifest = load_manifest(world_dir)
    available = [t["name"] for t in manifest["tasks"]]
    for n in names or []:
        if n not in available:
            raise InputError(world_dir, f"no world task {n!r} (available: {', '.join(available)})", field="tasks")
    return [load_task(world_dir / "eval" / f"{n}.jsonl", name=n) for n in (names or available)]


def resolve_tasks(specs: list[str], world_dir: str | Path | None) -> list[Task]:
    """`world:all`, `world:qa,exam` or paths to JSONL task files."""
    tasks: list[Task] = []
    for spec in specs:
        if spec.startswith("world:"):
            if world_dir is None:
                raise InputError(None, f"{spec}: no world known for this model; pass --world DIR", field="--tasks")
            names = None if spec == "world:all" else [n for n in spec[6:].split(",") if n]
            tasks += world_tasks(world_dir, names)
        else:
            tasks.append(load_task(spec))
    return tasks
