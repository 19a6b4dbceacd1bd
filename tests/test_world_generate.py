"""The world generator: layout, determinism, size, validation split, atomic and idempotent writes, Zipf."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from losslens.errors import InputError
from losslens.world import GENRES, WorldConfig, generate_world, load_manifest, verify_world
from losslens.world.kb import build_kb


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig(seed=11, size_mb=0.8, eval_items=50, fewshot_items=5)
    out = tmp_path_factory.mktemp("world") / "w"
    return out, generate_world(cfg, out, workers=1), cfg


def docs_of(path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n") and not text.endswith("\n\n")
    return text[:-1].split("\n\n")


def test_layout_and_manifest(world):
    out, manifest, cfg = world
    assert load_manifest(out) == manifest
    assert manifest["seed"] == 11 and manifest["config"] == cfg.to_dict()
    assert manifest["genres"] == list(GENRES)
    expected = {"train.txt", "val.txt"} | {f"val/{g}.txt" for g in GENRES}
    for t in manifest["tasks"]:
        expected |= {t["config"], t["items"], t["fewshot"]}
    assert set(manifest["files"]) == expected
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == expected | {"world.json"}
    verify_world(out)  # sizes and sha256 match
    assert {t["name"] for t in manifest["tasks"]} == {
        "qa", "completion", "reading", "coref", "exam", "arithmetic", "copying"}
    assert [t["genre"] for t in manifest["tasks"]] == list(GENRES)
    for split in ("train", "val"):
        assert all(manifest["documents"][split][g] > 0 for g in GENRES)
    assert sum(manifest["documents"]["train"].values()) == len(docs_of(out / "train.txt"))


def test_documents_are_clean_and_sized(world):
    out, manifest, cfg = world
    train = docs_of(out / "train.txt")
    assert all(d and d.strip() == d and "\n\n" not in d and d.isascii() for d in train)
    size = (out / "train.txt").stat().st_size
    assert abs(size - cfg.size_mb * 1e6) < 0.02 * cfg.size_mb * 1e6
    assert abs((out / "val.txt").stat().st_size - cfg.val_bytes()) < 0.05 * cfg.val_bytes()
    # Genre shares of the bytes follow the knobs.
    for g in GENRES:
        share = (out / "val" / f"{g}.txt").stat().st_size / (out / "val.txt").stat().st_size
        assert share == pytest.approx(cfg.shares()[g], abs=0.03), g


def test_val_is_held_out_and_split_per_genre(world):
    out, manifest, _ = world
    val = docs_of(out / "val.txt")
    assert not set(val) & set(docs_of(out / "train.txt"))
    per_genre = [d for g in GENRES for d in docs_of(out / "val" / f"{g}.txt")]
    assert sorted(per_genre) == sorted(val)
    for g in GENRES:
        assert len(docs_of(out / "val" / f"{g}.txt")) == manifest["documents"]["val"][g]


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    # 2.2 MB = 3 chunks, so the two-worker run really spreads chunks over processes.
    cfg = WorldConfig(seed=5, size_mb=2.2, eval_items=20, fewshot_items=2)
    a = generate_world(cfg, tmp_path / "a", workers=1)
    b = generate_world(cfg, tmp_path / "b", workers=2)
    assert a == b
    for rel in a["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = generate_world(WorldConfig(seed=6, size_mb=0.3, eval_items=20, fewshot_items=2), tmp_path / "c")
    assert other["files"]["train.txt"]["sha256"] != a["files"]["train.txt"]["sha256"]


def test_rerun_reuses_complete_world_and_refuses_another(world, tmp_path):
    out, manifest, cfg = world
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert generate_world(cfg, out) == manifest
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing rewritten
    with pytest.raises(InputError, match="different config"):
        generate_world(WorldConfig(seed=12, size_mb=0.8), out)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a world directory"):
        generate_world(cfg, tmp_path / "junk")
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_damaged_world_is_reported(world, tmp_path):
    out, manifest, cfg = world
    copy = tmp_path / "copy"
    copy.mkdir()
    for rel in list(manifest["files"]) + ["world.json"]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((out / rel).read_bytes())
    (copy / "eval" / "qa.jsonl").write_text("truncated")
    with pytest.raises(InputError, match="differs from world.json"):
        generate_world(cfg, copy)
    (copy / "world.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt manifest"):
        load_manifest(copy)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    from losslens.world import generate

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "_write_jsonl", boom)
    with pytest.raises(RuntimeError):
        generate_world(WorldConfig(seed=1, size_mb=0.1, eval_items=5, fewshot_items=1), tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def _log_log_slope(counts: np.ndarray) -> float:
    ranks = np.arange(1, len(counts) + 1)
    return float(np.polyfit(np.log(ranks), np.log(counts + 1e-9), 1)[0])


@pytest.mark.parametrize("exponent", [1.0, 0.0])
def test_entity_mentions_follow_zipf(tmp_path, exponent):
    """People's mention counts (documents naming them) fall off as rank^-exponent: a long tail."""
    only_facts = {g: {"share": 0.0} for g in GENRES if g != "facts"}
    cfg = WorldConfig.from_dict({"seed": 3, "size_mb": 0.6, "zipf_exponent": exponent, "eval_items": 5,
                                 "fewshot_items": 0, "genres": {**only_facts, "facts": {"people": 400}}})
    out = tmp_path / "w"
    generate_world(cfg, out)
    kb = build_kb(cfg.seed, cfg.genres.facts, exponent)
    rank = {kb.names[s]: r for r, s in enumerate(sorted(kb.person_subject))}  # popularity rank among people
    counts = np.zeros(len(rank))
    for doc in docs_of(out / "train.txt"):
        for name in set(re.findall(r"[A-Z][a-z]+ [A-Z][a-z]+", doc)) & rank.keys():
            counts[rank[name]] += 1
    head = counts[:40]
    if exponent == 1.0:
        assert -1.3 < _log_log_slope(head) < -0.6
        assert counts[0] > 30 * np.median(counts)             # the head dwarfs the typical entity ...
        share = np.sort(counts)[::-1] / counts.sum()
        assert share[:40].sum() > 0.5 and share[200:].sum() < 0.15  # top 10% > half; bottom half < 15%
    else:
        assert abs(_log_log_slope(head)) < 0.25
        assert counts.min() > 0


def test_manifest_is_plain_json(world):
    out, manifest, _ = world
    assert json.loads((out / "world.json").read_text()) == manifest
    for t in manifest["tasks"]:
        config = json.loads((out / t["config"]).read_text())
        assert config["name"] == t["name"] and config["type"] == t["type"] and config["chance"] == t["chance"]


def test_concurrent_generations_agree_and_leftovers_are_cleaned(tmp_path):
    import os
    from concurrent.futures import ThreadPoolExecutor

    abandoned = tmp_path / ".w.partial-999999999-abc"  # a killed run's temp dir (no such process)
    abandoned.mkdir()
    cfg = WorldConfig(seed=8, size_mb=0.2, eval_items=10, fewshot_items=2)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: generate_world(cfg, tmp_path / "w"), range(2))
    assert a == b == load_manifest(tmp_path / "w")
    assert os.listdir(tmp_path) == ["w"]
