"""What every genre is: a source of *units* (one story, one word problem, one list to copy, ...),
rendered into training documents when the unit's key is not held out, and into evaluation items when
it is. A genre supplies `units`, `render_doc` and `render_item` (or overrides `items`, to render held-out
units in groups); this base class does the split.

Documents never contain a blank line (the corpus separates documents by one), and they are ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import numpy as np

from losslens.world.config import WorldConfig
from losslens.world.kb import KnowledgeBase
from losslens.world.sampling import Split


class Doc(NamedTuple):
    text: str
    facts: tuple = ()  # (subject, attribute) pairs the document states (facts genre only)


class Unit(NamedTuple):
    key: str   # identity for the train/eval split (the text an eval item must never share with training)
    data: Any  # whatever the genre needs to render it


@dataclass(frozen=True)
class TaskInfo:
    name: str
    type: str           # "multiple_choice" or "generation"
    metric: str         # "acc" or "exact_match"
    description: str
    extract: str | None = None  # generation: how to pull the answer out ("strip", "last_number")


def fact_key(subject: int, attr: int) -> str:
    return f"fact|{subject}|{attr}"


@dataclass
class WorldContext:
    """What genres share within one process: the config, the knowledge base and the key split."""

    cfg: WorldConfig
    kb: KnowledgeBase
    split: Split
    mentions: np.ndarray | None = None  # [subject, attribute] times training prose states the fact

    @cached_property
    def fact_heldout(self) -> np.ndarray:
        """[subject, attribute] True where the question is reserved for evaluation (QA and exam)."""
        split = Split(self.cfg.seed, self.cfg.genres.facts.qa_heldout)
        mask = np.zeros(self.kb.values.shape, dtype=bool)
        for s, a in np.argwhere(self.kb.values >= 0).tolist():
            mask[s, a] = split.heldout(fact_key(s, a))
        return mask


class Genre:
    name: ClassVar[str]
    task: ClassVar[TaskInfo]
    guess_bytes: ClassVar[int] = 300   # first estimate of a document's size (refined while generating)

    def __init__(self, world: WorldContext):
        self.world = world
        self.kb = world.kb
        self.cfg = getattr(world.cfg.genres, self.name)

    # --- to implement ----------------------------------------------------------------------------
    def units(self, rng: np.random.Generator, n: int, evaluating: bool = False) -> list[Unit]:
        """`n` random units (keys may repeat, and may be held out or not). With `evaluating`, genres
        that draw some choice Zipf-style (scripts, objects) draw it uniformly instead, so that eval
        items cover the long tail evenly and accuracy grows gradually as rarer knowledge is learned."""
        raise NotImplementedError

    def units_per_doc(self) -> int:
        """Largest number of units in one training document (each document draws 1..this many)."""
        return 1

    def render_doc(self, units: list[Unit], rng: np.random.Generator) -> Doc:
        raise NotImplementedError

    def render_item(self, unit: Unit, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def num_choices(self) -> int:
        """Options per multiple-choice item (chance = 1 / this); unused for generation."""
        return 0

    def item_group(self) -> int:
        """Eval items come in balanced groups of this many consecutive items (1: no groups); the
        few-shot pool is cut to whole groups so that the eval set starts at a group boundary."""
        return 1

    # --- shared machinery ------------------------------------------------------------------------
    def documents(self, rng: np.random.Generator, n: int) -> list[Doc]:
        """`n` training documents built only from units whose key is not held out."""
        sizes = rng.integers(1, self.units_per_doc() + 1, size=n)
        units = self._take(rng, int(sizes.sum()), heldout=False)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [self.render_doc(units[bounds[i]:bounds[i + 1]], rng) for i in range(n)]

    def items(self, rng: np.random.Generator, n: int) -> list[dict]:
        """Up to `n` evaluation items from distinct held-out units (fewer if the key space is too small)."""
        return [self.render_item(u, rng) for u in self._take(rng, n, heldout=True, distinct=True)]

    def _take(self, rng, n: int, *, heldout: bool, distinct: bool = False, max_rounds: int = 60) -> list[Unit]:
        out: list[Unit] = []
        seen: set[str] = set()
        want_share = self.world.cfg.heldout if heldout else 1 - self.world.cfg.heldout
        for _ in range(max_rounds):
            need = n - len(out)
            if need <= 0:
                break
            # Draw a little more than the expected need; a second round covers an unlucky first one.
            for u in self.units(rng, int(need / want_share * 1.05) + 4, evaluating=heldout):
                if self.world.split.heldout(u.key) != heldout or (distinct and u.key in seen):
                    continue
                seen.add(u.key)
                out.append(u)
                if len(out) == n:
                    break
        return out

    def chance(self) -> float:
        return 1.0 / self.num_choices() if self.task.type == "multiple_choice" else 0.0

    def task_config(self) -> dict:
        t = self.task
        out = {"name": t.name, "type": t.type, "genre": self.name, "metric": t.metric,
               "chance": self.chance(), "num_fewshot": self.cfg.fewshot, "fewshot_separator": "\n",
               "description": t.description}
        if t.type == "multiple_choice":
            out["num_choices"] = self.num_choices()
        else:
            out["extract"] = t.extract
        return out


def multiple_choice(context: str, gold: str, wrong: list[str], rng: np.random.Generator) -> dict:
    """An item with the gold option placed uniformly at random among the others."""
    choices = list(wrong)
    gold_index = int(rng.integers(len(choices) + 1))
    choices.insert(gold_index, gold)
    return {"context": context, "choices": choices, "gold": gold_index}


def generation(prompt: str, target: str, answer: str, *, stop: list[str], max_tokens: int, extract: str) -> dict:
    """`target` is the reference continuation (for few-shot exemplars and continuous metrics);
    `answer` is what the extracted generation must equal exactly."""
    return {"prompt": prompt, "target": target, "answer": answer, "stop": stop, "max_tokens": max_tokens,
            "extract": extract}


def distinct_others(rng, domain_size: int, exclude: set[int], k: int) -> list[int]:
    """`k` distinct indices in range(domain_size), none in `exclude` (domain must be large enough)."""
    out: list[int] = []
    while len(out) < k:
        i = int(rng.integers(domain_size))
        if i not in exclude:
            exclude.add(i)
            out.append(i)
    return out
