"""The one config validator (losslens.config): knobs declare type, range, choices and default; every
config class uses it; every key is documented."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from conftest import REPO, run_cli, write_run_config

from losslens.config import Config, from_dict, knob, knobs
from losslens.data.prepare import DataConfig
from losslens.errors import InputError
from losslens.external.spec import SpecTable
from losslens.ladder.config import LadderConfig
from losslens.model.config import ModelConfig
from losslens.train.config import TrainConfig
from losslens.world.config import WorldConfig


@dataclass
class Toy(Config):
    n: int = knob(doc="a required count", lo=1)
    rate: float = knob(0.5, gt=0, lt=1)
    kind: str = knob("a", choices=("a", "b"))
    sizes: list[int] = knob([1], lo=1, hi=9)

    def _rules(self, bad):
        if self.n > 5 and self.kind == "b":
            raise bad("kind", "b needs n <= 5")


@pytest.mark.parametrize("table, field, words", [
    ({}, "toy.n", "missing required key (a required count)"),
    ({"n": "3"}, "toy.n", "expected an integer, got str '3'"),
    ({"n": 0}, "toy.n", "must be at least 1, got 0"),
    ({"n": 2, "rate": 1.0}, "toy.rate", "must be in (0, 1), got 1.0"),
    ({"n": 2, "rate": float("inf")}, "toy.rate", "must be a finite number"),
    ({"n": 2, "kind": "c"}, "toy.kind", "must be one of a, b, got 'c'"),
    ({"n": 2, "sizes": [3, 10]}, "toy.sizes[1]", "must be in [1, 9], got 10"),
    ({"n": 6, "kind": "b"}, "toy.kind", "b needs n <= 5"),
    ({"n": 2, "extra": 1}, "toy.extra", "unknown key"),
])
def test_knob_errors_name_file_and_field(table, field, words):
    with pytest.raises(InputError) as err:
        from_dict(Toy, table, source="t.toml", prefix="toy")
    assert str(err.value) == f"t.toml: {field}: {err.value.message}" and words in err.value.message


def test_python_construction_is_checked_by_validate_and_lists_are_copied():
    assert Toy(n=2).sizes is not Toy(n=2).sizes
    with pytest.raises(InputError, match="rate: must be in"):
        Toy(n=2, rate=2.0).validate()
    with pytest.raises(InputError, match="d_model: expected an integer"):
        ModelConfig(d_model="wide")
    with pytest.raises(InputError, match="n_layers: must be positive"):
        ModelConfig(n_layers=0)


def test_knobs_lists_every_key_with_its_constraint():
    rows = {k.key: k for k in knobs(TrainConfig)}
    assert rows["precision"].constraint == "one of auto, fp32, bf16" and rows["lr"].constraint == "positive"
    assert rows["warmup_fraction"].constraint == "in [0, 1)"
    world = {k.key: k for k in knobs(WorldConfig)}
    assert world["genres.exam.options"].constraint == "in [2, 5]" and world["genres.exam.options"].default == 4


def _documented(doc: str) -> set[str]:
    """Dotted keys named in the first column of the doc's tables: `key`, `[table] key`, `a.b`."""
    keys = set()
    for cell in re.findall(r"^\| ([^|]+?) \|", (REPO / "docs" / doc).read_text(), flags=re.M):
        table = ""
        for name in re.findall(r"`([^`]+)`", cell):
            match = re.fullmatch(r"\[\[?([a-z_.]+)\]\]?(?: (\S+))?", name)
            if match:
                table = match[1]
                keys.add(table if match[2] is None else f"{table}.{match[2]}")
            else:
                keys.add(f"{table}.{name}" if table else name)
    return keys


# Each config class and the doc that lists its keys; `leaf`: the doc has one table per sub-table.
CONFIG_DOCS = [(TrainConfig, "training.md", False), (ModelConfig, "model.md", False),
               (WorldConfig, "world.md", False), (LadderConfig, "ladder.md", False),
               (SpecTable, "file-formats.md", True)]


@pytest.mark.parametrize("cls, doc, leaf", CONFIG_DOCS, ids=lambda x: getattr(x, "__name__", x))
def test_every_config_key_is_documented(cls, doc, leaf):
    documented = _documented(doc)
    rows = knobs(cls)
    tables = {r.key.rsplit(".", 1)[0] for r in rows if "." in r.key}  # documented through their keys
    for row in rows:
        if row.key.startswith("data.") or row.key in tables:  # a ladder's [data]: DataConfig, training.md
            continue
        assert row.key in documented or (leaf and row.key.split(".")[-1] in documented), \
            f"{cls.__name__} key {row.key!r} is not documented in docs/{doc}"


def test_every_data_key_is_documented():
    text = (REPO / "docs" / "training.md").read_text()
    section = text[text.index("`[data]`"):]
    for row in knobs(DataConfig):
        assert f"`{row.key}`" in section, row.key


def test_train_config_without_tokens_is_one_line_exit_2(tmp_path, text_corpus):
    cfg = write_run_config(tmp_path / "run.toml", text_corpus)
    cfg.write_text(re.sub(r"^tokens = .*\n", "", cfg.read_text(), flags=re.M))
    proc = run_cli("train", cfg, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"losslens train: error: {cfg}: train.tokens: missing required key"
    assert not (tmp_path / "run").exists()


def test_non_utf8_train_config_is_one_line_exit_2(tmp_path, text_corpus):
    cfg = write_run_config(tmp_path / "run.toml", text_corpus)
    cfg.write_bytes(cfg.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    proc = run_cli("train", cfg, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0] and "not UTF-8" in lines[0]
    assert not (tmp_path / "run").exists()
