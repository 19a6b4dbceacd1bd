"""World knobs: defaults, TOML round trip, validation errors, and the `losslens world` command."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from conftest import run_cli

from losslens.cli import main
from losslens.errors import InputError
from losslens.world import GENRES, WorldConfig, load_manifest


def test_defaults_and_round_trip():
    cfg = WorldConfig()
    assert cfg.seed == 0 and cfg.size_mb == 4.0 and cfg.genres.exam.options == 4
    assert tuple(cfg.to_dict()["genres"]) == GENRES
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    assert sum(cfg.shares().values()) == pytest.approx(1.0)
    tuned = WorldConfig.from_dict({"seed": 3, "genres": {"copying": {"share": 0.3, "length": 12}}})
    assert tuned.genres.copying.length == 12 and tuned.genres.copying.share == 0.3
    assert tuned.genres.exam == cfg.genres.exam
    assert tuned.shares()["copying"] > cfg.shares()["copying"]
    assert cfg.val_bytes() == 100_000 and WorldConfig(size_mb=500).val_bytes() == 2_000_000


@pytest.mark.parametrize("table, field, message", [
    ({"sizemb": 3}, "world.sizemb", "unknown key"),
    ({"genres": {"exam": {"option": 4}}}, "world.genres.exam.option", "unknown key"),
    ({"genres": {"poetry": {}}}, "world.genres.poetry", "unknown key"),
    ({"seed": "zero"}, "world.seed", "expected an integer"),
    ({"genres": {"arithmetic": {"digits": 1.5}}}, "world.genres.arithmetic.digits", "expected an integer"),
    ({"genres": {"exam": {"options": 9}}}, "world.genres.exam.options", "must be in [2, 5]"),
    ({"size_mb": 0}, "world.size_mb", "must be in"),
    ({"heldout": float("nan")}, "world.heldout", "finite"),
    ({"genres": {"reading": {"options": 3, "distractors_in_passage": 2, "facts": 1}}},
     "world.genres.reading.facts", "must be in [2, 7]"),
    ({"genres": {"reading": {"options": 2, "distractors_in_passage": 2}}},
     "world.genres.reading.distractors_in_passage", "options - 1"),
    ({"genres": {"exam": {"options": 3, "stated_distractors": 3}}}, "world.genres.exam.stated_distractors",
     "options - 1"),
    ({"genres": {"arithmetic": {"operations": "+/"}}}, "world.genres.arithmetic.operations", "+ - *"),
    ({"genres": {"copying": {"alphabet": "ab.c"}}}, "world.genres.copying.alphabet", "no '.'"),
    ({"genres": {"copying": {"alphabet": "aab"}}}, "world.genres.copying.alphabet", "distinct"),
    ({"genres": {g: {"share": 0.0} for g in GENRES}}, "world.genres.facts.share", "at least one"),
    ({"val_min_mb": 3.0}, "world.val_min_mb", "val_max_mb"),
])
def test_bad_knobs_name_file_and_field(table, field, message):
    with pytest.raises(InputError) as err:
        WorldConfig.from_dict(table, source="w.toml")
    assert err.value.field == field and err.value.path == "w.toml"
    assert message in err.value.message
    assert str(err.value).startswith(f"w.toml: {field}: ")


def test_python_configs_are_validated_too(tmp_path):
    from losslens.world import generate_world

    with pytest.raises(InputError, match="size_mb"):
        generate_world(WorldConfig(size_mb=-1.0), tmp_path / "w")
    assert not (tmp_path / "w").exists()


def _bad_config_fails_cleanly(capsys, tmp_path, toml: str, field: str):
    cfg = tmp_path / "world.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    code = main(["world", "--seed", "1", "--out", str(out), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(cfg) in err and field in err
    assert not out.exists() and list(tmp_path.iterdir()) == [cfg]


@pytest.mark.parametrize("toml, field", [
    ("[world]\nsize_mb = 1\n[world.genres.exam]\noptions = 7\n", "world.genres.exam.options"),
    ("[world]\nzipf = 1.0\n", "world.zipf"),
    ("[world.genres.copying]\nlength = 'ten'\n", "world.genres.copying.length"),
    ("[wrld]\nseed = 1\n", "wrld"),
    ("[world\nseed = 1\n", "not valid TOML"),
])
def test_cli_bad_config_exits_2_with_one_line(capsys, tmp_path, toml, field):
    _bad_config_fails_cleanly(capsys, tmp_path, toml, field)


def test_cli_bad_config_in_a_fresh_process(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[world.genres.reading]\ndistractors_in_passage = 5\n")
    proc = run_cli("world", "--seed", "0", "--out", tmp_path / "x", "--config", bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{bad}: world.genres.reading.distractors_in_passage:" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_cli_generates_with_flags_over_file(capsys, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[world]\nsize_mb = 0.3\neval_items = 40\n[world.genres.arithmetic]\nsteps = 3\n")
    assert main(["world", "--seed", "9", "--out", str(tmp_path / "w"), "--config", str(good), "--size-mb", "0.2"]) == 0
    stdout = capsys.readouterr().out
    manifest = load_manifest(tmp_path / "w")
    assert manifest["seed"] == 9 and manifest["config"]["size_mb"] == 0.2  # flags override the file
    assert manifest["config"]["genres"]["arithmetic"]["steps"] == 3
    for name in ("qa", "completion", "reading", "coref", "exam", "arithmetic", "copying"):
        assert f"task {name}" in stdout
    assert "train.txt 0.20 MB" in stdout and "facts" in stdout
    # The same command again finds the complete world and leaves it alone.
    assert main(["world", "--seed", "9", "--out", str(tmp_path / "w"), "--config", str(good), "--size-mb", "0.2"]) == 0
    assert load_manifest(tmp_path / "w") == manifest


def test_docs_list_every_knob_with_its_default():
    """docs/world.md's knob table stays true to WorldConfig."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "world.md").read_text()
    doc = doc[doc.index("## Knobs"):doc.index("## File formats")]
    table = dict(re.findall(r"^\| `([a-z_.]+)` \| ([^|]+?) \|", doc, flags=re.M))

    def knobs(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from knobs(value, f"{prefix}{f.name}.")
            else:
                yield prefix + f.name, value

    expected = dict(knobs(WorldConfig()))
    assert set(table) == set(expected)
    for name, value in expected.items():
        assert json.loads(table[name]) == value, name
