"""`losslens eval` end to end: all six world tasks with every metric, stored; bad task files store nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import run_cli

WORLD_SIX = ["qa", "completion", "reading", "coref", "exam", "arithmetic"]
MC_METRICS = {"acc", "acc_norm", "correct_choice_prob", "brier_sum", "brier_mean", "gold_logprob", "gold_bpb"}
GEN_METRICS = {"exact_match", "token_edit_distance", "per_token_accuracy", "target_logprob", "target_bpb"}


def test_eval_prints_and_stores_every_world_task(tmp_path, world_run):
    db = tmp_path / "results.db"
    proc = run_cli("eval", world_run, "--db", db, "--limit", "12", "--heldout-tokens", "4096", check=True)
    for task in WORLD_SIX:
        assert task in proc.stdout
    for metric in MC_METRICS | GEN_METRICS:
        assert metric in proc.stdout
    con = sqlite3.connect(db)
    rows = con.execute("SELECT task, metric, value, stderr, n, chance FROM metrics").fetchall()
    got = {}
    for task, metric, _value, _stderr, n, _chance in rows:
        got.setdefault(task, set()).add(metric)
        assert n == 12
    for task in ["completion", "reading", "coref", "exam"]:
        assert got[task] == MC_METRICS
    for task in ["qa", "arithmetic"]:
        assert got[task] == GEN_METRICS
    chance = dict(con.execute("SELECT task, chance FROM metrics WHERE metric = 'acc'").fetchall())
    assert chance["coref"] == 0.5 and chance["exam"] == 0.25
    (loss,) = con.execute("SELECT loss FROM checkpoints").fetchone()
    corpora = {r[0] for r in con.execute("SELECT corpus FROM heldout")}
    assert loss > 0 and "val" in corpora and "val:facts" in corpora
    before = con.execute("SELECT * FROM metrics ORDER BY task, metric").fetchall()
    con.close()
    run_cli("eval", world_run, "--db", db, "--limit", "12", "--heldout-tokens", "4096", check=True)
    con = sqlite3.connect(db)
    assert con.execute("SELECT * FROM metrics ORDER BY task, metric").fetchall() == before  # idempotent


def test_exported_hf_dir_scores_like_the_checkpoint(tmp_path, world_run, world_dir):
    from losslens.evaluate.evaluate import evaluate_model

    run_cli("export", world_run, tmp_path / "hf", check=True)
    ours = evaluate_model(world_run, tasks=["world:exam,copying"], limit=8, heldout=[world_dir / "val.txt"],
                          heldout_tokens=2048)
    theirs = evaluate_model(tmp_path / "hf", tasks=["world:exam,copying"], world=world_dir, limit=8,
                            heldout=[world_dir / "val.txt"], heldout_tokens=2048)
    assert theirs.heldout[0].nats_per_token == pytest.approx(ours.heldout[0].nats_per_token, abs=1e-5)
    for a, b in zip(ours.tasks, theirs.tasks):
        for ma, mb in zip(a.metrics, b.metrics):
            assert ma.name == mb.name and ma.value == pytest.approx(mb.value, abs=1e-4)


def _mc_line(**overrides):
    item = {"id": "x", "context": "Q:", "choices": [" a", " b"], "gold": 0}
    item.update(overrides)
    return json.dumps(item)


@pytest.mark.parametrize("line, field, words", [
    ("{not json", None, "bad JSON"),
    (json.dumps({"id": "x", "choices": [" a"], "gold": 0}), "context", "missing field"),
    (_mc_line(gold=5), "gold", "out of range"),
    (_mc_line(choices=[]), "choices", "no choices"),
    (_mc_line(gold="0"), "gold", "expected int"),
])
def test_malformed_task_line_names_file_line_field(tmp_path, world_run, capsys, line, field, words):
    from losslens.cli import main

    task = tmp_path / "task.jsonl"
    task.write_text(_mc_line() + "\n" + _mc_line(id="y") + "\n" + line + "\n")
    db = tmp_path / "r.db"
    code = main(["eval", str(world_run), "--tasks", str(task), "--db", str(db)])  # in-process: fast
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{task}:3" in err[0] and words in err[0] and (field is None or field in err[0])
    assert not db.exists()


def test_bad_task_config_and_device_are_one_line(tmp_path, world_run, capsys):
    from losslens.cli import main

    task = tmp_path / "t.jsonl"
    task.write_text(_mc_line() + "\n")
    (tmp_path / "t.json").write_text("[1]")
    assert main(["eval", str(world_run), "--tasks", str(task)]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    (tmp_path / "t.json").write_text('{"num_fewshot": "2"}')
    assert main(["eval", str(world_run), "--tasks", str(task)]) == 2
    assert "num_fewshot" in capsys.readouterr().err
    import torch
    if not torch.cuda.is_available():
        assert main(["eval", str(world_run), "--device", "cuda"]) == 2
        assert "--device" in capsys.readouterr().err
