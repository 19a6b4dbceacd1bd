"""The ladder config: runs from the grid and [[runs]], names, and one-line errors naming file and field."""

from __future__ import annotations

import pytest
from conftest import run_cli

from losslens.errors import InputError
from losslens.ladder.config import load_ladder_config, tokens_label

BASE = """
name = "lad"
seeds = [0, 1]
[data]
vocab_size = 512
[data.world]
size_mb = 0.3
[train]
batch_size = 8
seq_len = 64
lr = 2e-3
"""


def _load(tmp_path, text: str):
    path = tmp_path / "ladder.toml"
    path.write_text(text)
    return load_ladder_config(path), path


def test_grid_and_runs_expand_to_named_runs_with_their_own_budgets(tmp_path):
    cfg, _ = _load(tmp_path, BASE + """
[grid]
models = ["nano", { preset = "nano", n_layers = 3 }]
tokens = [12_800, 2.56e4]
[[runs]]
model = { preset = "micro", name = "wide" }
tokens = 4_000_000
train = { lr = 1e-3, warmup_fraction = 0.1 }
""")
    cells = cfg.cells()
    names = [c.name for c in cells]
    assert names == ["nano-12.8k-s0", "nano-12.8k-s1", "nano-25.6k-s0", "nano-25.6k-s1",
                     "d48-l3-12.8k-s0", "d48-l3-12.8k-s1", "d48-l3-25.6k-s0", "d48-l3-25.6k-s1",
                     "wide-4M-s0", "wide-4M-s1"]
    by = {c.name: c for c in cells}
    assert by["nano-25.6k-s1"].train.tokens == 25_600 and by["nano-25.6k-s1"].train.seed == 1
    assert by["nano-25.6k-s1"].train.lr == 2e-3 and by["nano-25.6k-s1"].train.threads == 1
    assert by["wide-4M-s0"].train.lr == 1e-3 and by["wide-4M-s0"].train.warmup_fraction == 0.1
    assert by["wide-4M-s0"].model == {"preset": "micro"}  # the label is not a model field
    assert by["d48-l3-12.8k-s0"].model == {"preset": "nano", "n_layers": 3}
    # Each run's schedule ends at its own budget, with its own checkpoints.
    assert by["nano-12.8k-s0"].train.milestone_steps()[-1] == 25
    assert by["nano-25.6k-s0"].train.milestone_steps()[-1] == 50


def test_tokens_label_is_short_and_exact():
    assert [tokens_label(n) for n in (999, 1000, 204_800, 4_000_000, 2_500_000_000, 1_234_567)] == \
        ["999", "1k", "204.8k", "4M", "2.5B", "1.234567M"]


@pytest.mark.parametrize("extra, field, message", [
    ("[grid]\nmodels = ['nano']\ntokens = [100]\n", "grid.tokens[0]", "smaller than one batch"),
    ("[grid]\nmodels = ['huge']\ntokens = [12800]\n", "grid.models[0].preset", "unknown preset"),
    ("[grid]\nmodels = ['nano']\ntokens = []\n", "grid.tokens", "empty list"),
    ("[[runs]]\nmodel = 'nano'\ntokens = [12800]\ntrain = { lr = -1.0 }\n", "runs[0].train.lr", "positive"),
    ("[[runs]]\nmodel = 'nano'\ntokens = [12800]\ntrain = { seed = 3 }\n", "runs[0].train.seed", "seeds"),
    ("[[runs]]\nmodel = { preset = 'nano', n_heads = 5 }\ntokens = 12800\n", "runs[0].model.n_heads", "divide"),
    ("[[runs]]\nmodel = 'nano'\ntokens = [12800]\n[[runs]]\nmodel = 'nano'\ntokens = [12800]\n",
     "runs[1].model", "two runs would be named 'nano-12.8k-s0'"),
    ("[grid]\nmodels = ['nano']\ntokens = [12800]\n[executor]\nkind = 'slurm'\n", "executor.kind", "local, ray"),
    ("[grid]\nmodels = ['nano']\ntokens = [12800]\n[eval]\ntasks = ['nope.jsonl']\n", "eval.tasks[0]", "no such"),
    ("[grid]\nmodels = ['nano']\ntokens = [12800]\n[eval]\nlimiit = 3\n", "eval.limiit", "unknown key"),
    ("", "grid", "not a ladder config"),
])
def test_bad_configs_name_the_file_and_the_field(tmp_path, extra, field, message):
    with pytest.raises(InputError, match=message) as err:
        _load(tmp_path, BASE + extra)
    assert err.value.field == field and err.value.path == str(tmp_path / "ladder.toml")


def test_a_bad_base_train_value_is_reported_in_train_not_in_a_run(tmp_path):
    with pytest.raises(InputError) as err:
        _load(tmp_path, BASE.replace("lr = 2e-3", "lr = 0.0") + "[[runs]]\nmodel = 'nano'\ntokens = [12800]\n"
              "train = { warmup_fraction = 0.1 }\n")
    assert err.value.field == "train.lr"


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "[grid]\nmodels = ['nano']\ntokens = [100]\n")
    proc = run_cli("ladder", path, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"losslens ladder: error: {path}: grid.tokens[0]: budget 100 is smaller than "
                                   "one batch (8 x 64 = 512 tokens)")
    assert not (tmp_path / "out").exists()  # nothing started
    missing = run_cli("ladder", "no-such-ladder", "--out", tmp_path / "out")
    assert missing.returncode == 2 and "no such ladder config" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_shipped_ladder_configs_load_by_name_and_stay_out_of_losslens_train():
    from losslens.ladder.config import ladder_configs
    from losslens.train.config import load_run_config, named_configs

    names = ladder_configs()
    assert names, "no ladder config shipped in losslens/configs/ladders/"
    for name in names:
        cfg = load_ladder_config(name)
        assert cfg.cells() and cfg.source.endswith(f"ladders/{name}.toml")
    for name in named_configs():  # what `losslens train` lists is a run config, never a ladder
        load_run_config(name)
