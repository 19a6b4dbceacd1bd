"""Proof that evaluation items are held out: no item's text (nor its question or passage) occurs in the
training text, while the facts closed-book QA asks about are stated in training prose."""

from __future__ import annotations

import json
import re

import pytest

from losslens.world import WorldConfig, generate_world
from losslens.world.genres.facts import state
from losslens.world.kb import ATTRIBUTES, build_kb


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig(seed=2, size_mb=1.0)  # default knobs: 300 items and 20 few-shot examples per task
    out = tmp_path_factory.mktemp("world") / "w"
    manifest = generate_world(cfg, out)
    tasks = {t["name"]: [json.loads(line) for f in ("items", "fewshot") for line in (out / t[f]).open()]
             for t in manifest["tasks"]}
    return cfg, (out / "train.txt").read_text(), (out / "val.txt").read_text(), tasks


def full_text(item: dict) -> str:
    if "context" in item:
        return item["context"] + item["choices"][item["gold"]]
    return item["prompt"] + item["target"]


def question_part(task: str, item: dict) -> str:
    """The part of an item that on its own must be new: the question, passage, story, list or sentence."""
    text = item.get("context") or item["prompt"]
    if task in ("qa", "exam"):
        return re.search(r"[^.?]*\?", text.split("\n")[0].removeprefix("Question: ")).group().strip()
    if task == "reading":
        return text.split("\n")[0] + "\n"            # "Article: <passage>\n"
    if task == "coref":
        return text.removesuffix(" That is, the")    # the pronoun sentence
    if task == "arithmetic":
        return text.removesuffix("\nSolution:")      # "Question: <problem>"
    if task == "copying":
        return text.removesuffix(" Again:")          # "List: <symbols>."
    return text                                      # completion: the story without its ending


def test_all_tasks_present(world):
    assert set(world[3]) == {"qa", "completion", "reading", "coref", "exam", "arithmetic", "copying"}


@pytest.mark.parametrize("task", ["qa", "completion", "reading", "coref", "exam", "arithmetic", "copying"])
def test_items_never_in_training_or_validation_text(world, task):
    _, train, val, tasks = world
    items = tasks[task]
    assert len(items) == 320
    for item in items:
        # (Booleans first, so that a failure prints the item id, not the whole corpus.)
        leaked = full_text(item) in train or full_text(item) in val
        assert not leaked, item["id"]
        part = question_part(task, item)
        leaked = part in train
        assert len(part) > 15 and not leaked, (item["id"], part)
    # Items are distinct, and the few-shot pool does not share questions with the eval items.
    assert len({question_part(task, i) for i in items}) == len(items)


def test_qa_facts_are_stated_in_training_prose(world):
    """Closed-book QA is fair: each asked fact appears in training as a prose sentence about the subject."""
    cfg, train, _, tasks = world
    kb = build_kb(cfg.seed, cfg.genres.facts, cfg.zipf_exponent)
    subject = {name: s for s, name in enumerate(kb.names)}
    for item in tasks["qa"]:
        q = item["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
        a, name = next((i, m.group(1)) for i, attr in enumerate(ATTRIBUTES)
                       if (m := re.fullmatch(re.escape(attr.question).replace(r"\{s\}", "(.+)"), q)))
        s = subject[name]
        assert kb.value(s, a) == item["answer"]
        assert any(state(kb, s, a, v) in train for v in range(3)), q
        asked = f"{q}\nAnswer:" in train
        assert not asked, q


def test_qa_format_is_learnable_from_other_facts(world):
    """Training shows the question format (on other facts), so the eval prompt format is familiar."""
    _, train, _, tasks = world
    assert train.count("\nAnswer: ") > 100
    for template in {a.question.split("{s}")[0] for a in ATTRIBUTES}:
        assert f"Question: {template}" in train
