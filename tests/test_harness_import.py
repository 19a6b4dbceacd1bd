"""`parse_results` and `losslens import-lm-eval` on lm-eval results files: metric names and filters,
stderrs lm-eval could not compute, groups, chance from the samples files, bad input, idempotency."""

from __future__ import annotations

import json
import sqlite3

import pytest

from losslens.cli import main
from losslens.errors import InputError
from losslens.evaluate.harness import parse_results
from losslens.store import Store

DATE = "2025-01-02T03-04-05.678901"


def _results() -> dict:
    """The shape `lm_eval --output_path` writes (0.4.x): a group with two subtasks, a generation
    task with two filters, a stderr lm-eval reports as "N/A"."""
    return {
        "results": {
            "mmlu_demo": {"acc,none": 0.3, "acc_stderr,none": 0.02, "alias": "mmlu_demo"},
            "mmlu_a": {"alias": " - a", "acc,none": 0.25, "acc_stderr,none": 0.03},
            "mmlu_b": {"alias": " - b", "acc,none": 0.35, "acc_stderr,none": 0.028},
            "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.008,
                      "exact_match,flexible-extract": 0.12, "exact_match_stderr,flexible-extract": "N/A"},
        },
        "group_subtasks": {"mmlu_demo": ["mmlu_a", "mmlu_b"], "mmlu_a": [], "mmlu_b": [], "gsm8k": []},
        "configs": {
            "mmlu_a": {"output_type": "multiple_choice", "metric_list": [{"metric": "acc"}]},
            "mmlu_b": {"output_type": "multiple_choice", "metric_list": [{"metric": "acc"}]},
            "gsm8k": {"output_type": "generate_until"},
        },
        "higher_is_better": {"mmlu_demo": {"acc": True}, "mmlu_a": {"acc": True}, "mmlu_b": {"acc": True},
                             "gsm8k": {"exact_match": True}},
        "n-samples": {"mmlu_a": {"original": 100, "effective": 100}, "mmlu_b": {"original": 300, "effective": 300},
                      "gsm8k": {"original": 1319, "effective": 1319}},
        "config": {"model": "hf", "model_args": "pretrained=EleutherAI/pythia-160m,revision=step143000"},
        "model_name": "EleutherAI/pythia-160m",
    }


def _samples(n: int, n_choices: int) -> str:
    """samples_<task>_<date>.jsonl lines as lm-eval writes them (arguments flattened to a dict)."""
    args = {f"gen_args_{i}": {"arg_0": "Q?", "arg_1": f" {c}"} for i, c in enumerate("ABCDE"[:n_choices])}
    return "".join(json.dumps({"doc_id": d, "arguments": args, "acc": 1.0}) + "\n" for d in range(n))


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "lm-eval-out" / "EleutherAI__pythia-160m"
    d.mkdir(parents=True)
    (d / f"results_{DATE}.json").write_text(json.dumps(_results()))
    (d / f"samples_mmlu_a_{DATE}.jsonl").write_text(_samples(100, 4))
    (d / f"samples_mmlu_b_{DATE}.jsonl").write_text(_samples(300, 2))
    return tmp_path / "lm-eval-out"


def test_parse_results_metrics_groups_and_chance(out_dir):
    [(model, rows)] = parse_results(out_dir)
    assert model == "EleutherAI/pythia-160m"
    got = {(r.task, r.metric): r for r in rows}
    assert set(got) == {("mmlu_demo", "acc"), ("mmlu_a", "acc"), ("mmlu_b", "acc"),
                        ("gsm8k", "exact_match,strict-match"), ("gsm8k", "exact_match,flexible-extract")}
    a, b, group = got["mmlu_a", "acc"], got["mmlu_b", "acc"], got["mmlu_demo", "acc"]
    assert (a.value, a.stderr, a.n, a.chance) == (0.25, 0.03, 100, 0.25)
    assert (b.n, b.chance) == (300, 0.5)
    assert group.n == 400 and group.chance == pytest.approx((100 * 0.25 + 300 * 0.5) / 400)
    strict, flexible = got["gsm8k", "exact_match,strict-match"], got["gsm8k", "exact_match,flexible-extract"]
    assert (strict.value, strict.stderr, strict.n, strict.chance) == (0.1, 0.008, 1319, 0.0)
    assert flexible.stderr is None  # "N/A"
    assert all(r.higher_is_better for r in rows)


def test_parse_results_without_samples_or_tracker_name():
    raw = _results()
    del raw["model_name"]
    [(model, rows)] = parse_results(raw)
    assert model == "EleutherAI/pythia-160m"  # from model_args' pretrained=
    assert {r.chance for r in rows if r.task.startswith("mmlu")} == {None}  # no samples: unknown


def test_import_cli_stores_and_is_idempotent(out_dir, tmp_path, capsys):
    db = tmp_path / "r.db"
    argv = ["import-lm-eval", str(out_dir), "--db", str(db), "--model", "pythia-160m", "--params", "85056000",
            "--tokens", "300000000000", "--step", "143000", "--loss", "2.2"]
    assert main(argv) == 0
    assert "stored 5 metrics of 4 tasks from 1 file(s)" in capsys.readouterr().out
    with Store(db, create=False) as st:
        first = st.tidy()
    assert main(argv) == 0
    with Store(db, create=False) as st:
        again = st.tidy()
        assert st.counts()["metrics"] == 5 and st.counts()["runs"] == 1
    assert first.equals(again)
    row = first[(first.task == "mmlu_a")].iloc[0]
    assert (row.model, row.params, row.tokens, row.step, row.loss) == ("pythia-160m", 85056000, 300000000000,
                                                                        143000, 2.2)


def test_later_results_file_wins(out_dir, tmp_path):
    newer = _results()
    newer["results"] = {"mmlu_a": {"acc,none": 0.5, "acc_stderr,none": 0.05}}
    (out_dir / "EleutherAI__pythia-160m" / "results_2025-02-01T00-00-00.0.json").write_text(json.dumps(newer))
    db = tmp_path / "r.db"
    assert main(["import-lm-eval", str(out_dir), "--db", str(db), "--model", "m"]) == 0
    with Store(db, create=False) as st:
        df = st.tidy()
    assert df[df.task == "mmlu_a"].value.tolist() == [0.5]
    assert len(df) == 5


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("results"), "results"),
    (lambda r: r["results"].__setitem__("gsm8k", [1, 2]), "results.gsm8k"),
    (lambda r: r["results"]["mmlu_a"].__setitem__("acc,none", "high"), "results.mmlu_a.acc,none"),
    (lambda r: r["results"]["mmlu_a"].__setitem__("acc_stderr,none", [0.1]), "results.mmlu_a.acc_stderr,none"),
    (lambda r: r.__setitem__("n-samples", []), "n-samples"),
])
def test_malformed_results_exit_2_naming_file_and_field(out_dir, tmp_path, capsys, mutate, field):
    good = out_dir / "EleutherAI__pythia-160m" / f"results_{DATE}.json"
    bad_raw = _results()
    mutate(bad_raw)
    bad = out_dir / "EleutherAI__pythia-160m" / "results_2025-03-01T00-00-00.0.json"
    bad.write_text(json.dumps(bad_raw))
    db = tmp_path / "r.db"
    assert main(["import-lm-eval", str(out_dir), "--db", str(db), "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}: {field}: " in err and "Traceback" not in err
    assert good.is_file()
    assert not db.exists() or sqlite3.connect(db).execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0


def test_bad_json_and_missing_dir(tmp_path, capsys):
    f = tmp_path / "results_x.json"
    f.write_text('{"results": {"a": {"acc,none": 0.5,}}}')
    with pytest.raises(InputError) as err:
        parse_results(f)
    assert str(err.value).startswith(f"{f}:1: bad JSON")
    assert main(["import-lm-eval", str(tmp_path / "nope"), "--db", str(tmp_path / "r.db"), "--model", "m"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no lm-eval results files"):
        parse_results(empty)


def test_bad_flags_exit_2(out_dir, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["import-lm-eval", str(out_dir), "--db", str(db), "--model", "m", "--params", "0"]) == 2
    assert "--params: invalid value 0" in capsys.readouterr().err
    assert main(["import-lm-eval", str(out_dir), "--db", str(db), "--model", "m", "--loss", "nan"]) == 2
    assert not db.exists()


def test_run_harness_refuses_a_missing_task_dir(tmp_path):
    from losslens.evaluate.harness import run_harness

    with pytest.raises(InputError, match="lm-eval task directory not found"):
        run_harness(None, None, ["x"], include_path=tmp_path / "missing")
