"""Every task's items are well-formed and correct: gold in range, answers extractable, and each genre's
gold answer really is right (arithmetic checks out, the copied list is the list, the exam's gold
letter holds the true fact, ...)."""

from __future__ import annotations

import json
import re

import pytest

from losslens.world import GENRES, WorldConfig, generate_world
from losslens.world import lexicon as lex
from losslens.world.genres.exam import LETTERS
from losslens.world.kb import ATTRIBUTES, build_kb

CFG = {"seed": 4, "size_mb": 0.4, "eval_items": 120, "fewshot_items": 10,
       "genres": {"exam": {"options": 5, "stated_share": 0.5, "stated_distractors": 2},
                  "reading": {"distractors_in_passage": 2, "options": 5},
                  "arithmetic": {"digits": 2, "steps": 3, "operations": "+-*"},
                  "copying": {"length": 7, "alphabet": "0123456789"},
                  "stories": {"options": 3, "events": 3}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig.from_dict(CFG)
    out = tmp_path_factory.mktemp("world") / "w"
    manifest = generate_world(cfg, out)
    tasks = {}
    for t in manifest["tasks"]:
        config = json.loads((out / t["config"]).read_text())
        items = [json.loads(line) for line in (out / t["items"]).open()]
        few = [json.loads(line) for line in (out / t["fewshot"]).open()]
        tasks[t["name"]] = (config, items, few)
    return cfg, manifest, tasks


def extract(item: dict, generated: str) -> str:
    """The evaluator's answer extraction, as the task files document it."""
    for stop in item["stop"]:
        generated = generated.split(stop)[0] if item["extract"] == "strip" else generated
    if item["extract"] == "last_number":
        numbers = re.findall(r"-?\d+", generated)
        return numbers[-1] if numbers else ""
    return generated.strip()


def test_every_genre_has_a_task(world):
    cfg, manifest, tasks = world
    assert [t["genre"] for t in manifest["tasks"]] == list(GENRES)
    for name, (config, items, few) in tasks.items():
        group = CFG["genres"]["stories"]["options"] if name == "completion" else 1
        assert len(items) == 120 and len(few) == 10 - 10 % group  # the pool is cut to whole groups
        assert config["num_fewshot"] >= 0 and config["fewshot_separator"] == "\n" and config["description"]
        ids = [i["id"] for i in items + few]
        assert len(set(ids)) == len(ids)


def test_multiple_choice_items_are_well_formed(world):
    cfg, manifest, tasks = world
    sizes = {"completion": 3, "reading": 5, "coref": 2, "exam": 5}
    for name, n in sizes.items():
        config, items, few = tasks[name]
        assert config["type"] == "multiple_choice" and config["metric"] == "acc"
        assert config["num_choices"] == n and config["chance"] == pytest.approx(1 / n)
        golds = []
        for item in items + few:
            assert set(item) == {"id", "context", "choices", "gold"}
            assert len(item["choices"]) == n == len(set(item["choices"]))
            assert isinstance(item["gold"], int) and 0 <= item["gold"] < n
            assert all(c.startswith(" ") and c.strip() for c in item["choices"])
            assert not item["context"].endswith((" ", "\n"))
            golds.append(item["gold"])
        # The gold position is not a giveaway.
        assert max(golds.count(k) for k in range(n)) < 0.6 * len(golds), name


def test_generation_items_are_well_formed_and_answers_extractable(world):
    cfg, manifest, tasks = world
    for name, extraction in (("qa", "strip"), ("arithmetic", "last_number"), ("copying", "strip")):
        config, items, few = tasks[name]
        assert config["type"] == "generation" and config["metric"] == "exact_match" and config["chance"] == 0
        assert config["extract"] == extraction
        for item in items + few:
            assert set(item) == {"id", "prompt", "target", "answer", "stop", "max_tokens", "extract"}
            assert item["extract"] == extraction and item["answer"]
            assert item["max_tokens"] >= len(item["target"]) // 3   # digits and letters are a token each
            assert extract(item, item["target"] + item["stop"][0] + " more text") == item["answer"]
            assert not item["prompt"].endswith(" ") and item["target"].startswith(" ")


def test_arithmetic_solutions_are_correct(world):
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for item in world[2]["arithmetic"][1]:
        steps = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", item["target"])
        assert len(steps) == 3
        x = int(re.search(r"has (\d+)", item["prompt"]).group(1))
        for a, op, b, y in steps:
            assert int(a) == x and ops[op](x, int(b)) == int(y) > 0
            assert b in item["prompt"]  # every operand is given in the question
            x = int(y)
        assert str(x) == item["answer"] and item["target"].endswith(f"The answer is {x}.")


def test_copying_answer_is_the_list(world):
    for item in world[2]["copying"][1]:
        listed = re.fullmatch(r"List: (.+)\. Again:", item["prompt"]).group(1)
        assert item["answer"] == listed and len(listed.split(" ")) == 7 and set(listed) <= set("0123456789 ")


def test_exam_gold_letter_holds_the_true_fact(world):
    cfg, _, tasks = world
    kb = build_kb(cfg.seed, cfg.genres.facts, cfg.zipf_exponent)
    subject = {name: s for s, name in enumerate(kb.names)}
    stated = 0
    for item in tasks["exam"][1]:
        lines = item["context"].split("\n")
        assert lines[-1] == "Answer:" and [ln[:3] for ln in lines[1:-1]] == [f"{x}. " for x in LETTERS]
        options = [ln[3:] for ln in lines[1:-1]]
        assert item["choices"] == [f" {x}" for x in LETTERS]
        stem = lines[0].removeprefix("Question: ")
        question = re.search(r"[^.?]*\?$", stem).group().strip()
        a, name = next((i, m.group(1)) for i, attr in enumerate(ATTRIBUTES)
                       if (m := re.fullmatch(re.escape(attr.question).replace(r"\{s\}", "(.+)"), question)))
        assert options[item["gold"]] == kb.value(subject[name], a)
        if stem != question:  # the stem states the fact, plus 2 facts whose values are wrong options
            stated += 1
            assert stem.count(". ") == 3 and sum(bool(re.search(rf"\b{o}\b", stem)) for o in options) == 3
    assert 0.3 < stated / len(tasks["exam"][1]) < 0.7  # stated_share = 0.5


def test_reading_gold_is_in_the_passage_with_distractors(world):
    for item in world[2]["reading"][1]:
        passage = item["context"].split("\n")[0]
        words = set(re.findall(r"\w+", passage))
        assert item["choices"][item["gold"]].strip() in words
        assert sum(c.strip() in words for c in item["choices"]) == 3  # gold + distractors_in_passage=2


def test_coref_gold_has_the_stated_property(world):
    prop = {obj: adj for pair in lex.PROPERTY_PAIRS for adj, objs in pair for obj in objs.split()}
    for item in world[2]["coref"][1]:
        adjective = re.search(r"(\w+)\. That is, the$", item["context"]).group(1)
        assert [prop[c.strip()] == adjective for c in item["choices"]].index(True) == item["gold"]


def test_completion_gold_continues_the_story_script(world):
    from losslens.world.genres.stories import SCRIPTS

    def script_of(sentence: str) -> set[int]:
        def pattern(t):
            return re.escape(t).replace(r"\{N\}", r"\w+").replace(r"\{P\}", "(He|She)") \
                .replace(r"\{p\}", "(he|she)").replace(r"\{his\}", "(his|her)")
        return {i for i, (sit, events, endings) in enumerate(SCRIPTS)
                for t in (*sit, *(e for ev in events for e in ev), *endings) if re.fullmatch(pattern(t), sentence)}

    for item in world[2]["completion"][1]:
        first = re.match(r".+?\.(?= |$)", item["context"]).group()
        story = script_of(first)
        assert len(story) == 1
        endings = [script_of(c.strip()) for c in item["choices"]]
        assert [e == story for e in endings].index(True) == item["gold"]
        assert sum(e == story for e in endings) == 1


def test_completion_is_counterbalanced_so_a_story_blind_model_scores_chance_exactly(world):
    """Items come in groups of `options` that show the same endings in the same order, each ending
    gold once: any story-blind choice (a preference over endings, over positions, or both) gets
    exactly one item per group right."""
    _, _, tasks = world
    _, items, few = tasks["completion"]
    k = CFG["genres"]["stories"]["options"]
    assert len(few) % k == 0  # so the eval set starts at a group boundary
    groups = [items[i:i + k] for i in range(0, len(items) - len(items) % k, k)]
    for g in groups:
        assert all(it["choices"] == g[0]["choices"] for it in g)
        assert sorted(it["gold"] for it in g) == list(range(k))
        assert len({it["context"] for it in g}) == k
