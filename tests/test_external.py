"""`losslens external SPEC.toml` end to end, offline: a series of tiny GPT-NeoX and Llama models, each
trained for real and saved at several steps, evaluated on a held-out corpus, losslens tasks and an
lm-eval task into one store that `losslens analyze --db` reads; re-runs skip what is stored; a bad
spec is one line and exit 2, with nothing written."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import make_text_corpus, run_cli

from losslens.cli import main

STEPS = (5, 20, 60)
TOKENS_PER_STEP = 16 * 64  # batch x sequence length of the training loop below
NAMES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"]
PLACES = ["Rome", "Oslo", "Lima", "Pune", "Kiev", "Nice"]


def _task_files(out: Path) -> None:
    """A multiple-choice task and a generation task in the corpus' own sentences."""
    rng = random.Random(3)
    out.mkdir()
    with open(out / "fruit.jsonl", "w") as f:
        for i in range(20):
            who, a, b = rng.choice(NAMES), rng.randint(1, 9), rng.randint(1, 9)
            choices = [f" {a + b} fruits", f" {a + b + 1} fruits", f" {abs(a - b)} fruits"]
            f.write(json.dumps({"id": f"f{i}", "context": f"{who} has {a} apples and {b} pears, so {who} has",
                                "choices": choices, "gold": 0}) + "\n")
    with open(out / "where.jsonl", "w") as f:
        for i in range(12):
            who, where = rng.choice(NAMES), rng.choice(PLACES)
            f.write(json.dumps({"id": f"w{i}", "prompt": f"{who} lives in {where}. In", "answer": where,
                                "stop": ["\n", "."], "max_tokens": 4}) + "\n")


def _train_and_save(model, tokenizer, ids, outs: list[Path], seed: int) -> None:
    """AdamW on random 64-token windows; `save_pretrained` after STEPS[i] steps into outs[i]."""
    import torch

    torch.manual_seed(seed)
    data = torch.tensor(ids)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    done = 0
    for step, out in zip(STEPS, outs):
        for _ in range(step - done):
            start = torch.randint(0, data.numel() - 65, (16,), generator=gen)
            batch = torch.stack([data[s:s + 64] for s in start])
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        done = step
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return build_workdir(tmp_path_factory.mktemp("external"))


def build_workdir(d: Path, *, harness: bool = True) -> Path:
    """Checkpoints, corpus, tasks and spec in `d`, laid out as a user would."""
    import torch
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from losslens.data.tokenizer import iter_documents, train_bpe
    from losslens.evaluate.harness import choice_task_yaml

    train = make_text_corpus(d / "train.txt", n_docs=800, seed=0)
    make_text_corpus(d / "heldout.txt", n_docs=80, seed=1)
    train_bpe(iter_documents(train), 300, d / "tok")
    tok = AutoTokenizer.from_pretrained(d / "tok")
    ids = [i for doc in iter_documents(train) for i in tok(doc)["input_ids"] + [tok.eos_token_id]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a busy machine: more threads only wait on each other
    torch.manual_seed(0)
    small = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=128, bos_token_id=tok.bos_token_id,
                 eos_token_id=tok.eos_token_id)
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(**small, rotary_pct=0.5))
    _train_and_save(neox, tok, ids, [d / "ckpts" / f"neox-step{s}" for s in STEPS], seed=1)
    llama = LlamaForCausalLM(LlamaConfig(**small, num_key_value_heads=2))
    _train_and_save(llama, tok, ids, [d / "ckpts" / f"llama-{s}" for s in STEPS], seed=2)
    torch.set_num_threads(threads)
    _task_files(d / "tasks")
    choice_task_yaml(d / "tasks" / "fruit.jsonl", d / "lmeval", name="fruit_lm_eval", cache_dir=d / "hf-datasets")
    llama_models = "".join(f'[[models]]\npath = "ckpts/llama-{s}"\nseries = "tiny-llama"\nstep = {s}\n'
                           f"tokens = {s * TOKENS_PER_STEP}\n" for s in STEPS)
    (d / "spec.toml").write_text(f"""
name = "tiny-series"
corpus = "heldout.txt"
tasks = ["tasks/fruit.jsonl", "tasks/where.jsonl"]
{'harness = ["fruit_lm_eval"]' if harness else ''}
{'harness_include = "lmeval"' if harness else ''}
limit = 12
heldout_tokens = 4096
batch_size = 16

[[series]]
name = "tiny-neox"
paths = {json.dumps([f"ckpts/neox-step{s}" for s in STEPS])}
tokens_per_step = {TOKENS_PER_STEP}
family = "neox"

{llama_models}""")
    return d


@pytest.fixture(scope="module")
def evaluated(workdir):
    """The first run, as a user would start it: a fresh process, the store beside the spec."""
    return run_cli("external", workdir / "spec.toml", cwd=workdir, check=True, env={"OMP_NUM_THREADS": "1"})


def _dump(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.mark.slow
def test_series_into_the_store(workdir, evaluated):
    db = workdir / "results.db"  # the default: beside the spec
    assert "evaluated 6, skipped 0 of 6" in evaluated.stdout
    assert evaluated.stdout.count("nats/token") == 6  # one progress line per checkpoint
    con = sqlite3.connect(db)
    runs = {name: (n, fam) for name, n, fam in con.execute("SELECT name, non_embedding_params, family FROM runs")}
    assert set(runs) == {"tiny-neox", "tiny-llama"} and runs["tiny-neox"][1] == "neox"
    for run in runs:
        rows = con.execute("""SELECT c.step, c.tokens, c.loss, h.nats_per_token, h.bits_per_byte FROM checkpoints c
                              JOIN runs r ON r.id = c.run_id JOIN heldout h ON h.checkpoint_id = c.id
                              WHERE r.name = ? AND h.corpus = 'heldout' ORDER BY c.step""", (run,)).fetchall()
        assert [r[0] for r in rows] == list(STEPS)
        assert [r[1] for r in rows] == [s * TOKENS_PER_STEP for s in STEPS]
        losses = [r[2] for r in rows]
        assert losses == [r[3] for r in rows]  # the checkpoint's loss is its held-out loss
        assert losses[0] > losses[1] > losses[2], (run, losses)  # training helped
        assert all(0 < r[4] < r[3] for r in rows)  # bits/byte: several bytes per token
        tasks = con.execute("""SELECT c.step, COUNT(DISTINCT m.task) FROM checkpoints c JOIN runs r ON r.id = c.run_id
                               JOIN metrics m ON m.checkpoint_id = c.id WHERE r.name = ? GROUP BY c.step""",
                            (run,)).fetchall()
        assert tasks == [(s, 3) for s in STEPS]  # fruit, where and the lm-eval task at every step
    acc = con.execute("SELECT task, n, chance FROM metrics WHERE metric = 'acc'").fetchall()
    assert {(t, n) for t, n, _ in acc} == {("fruit", 12), ("fruit_lm_eval", 12)}
    assert all(c == pytest.approx(1 / 3) for *_, c in acc)
    # our scorer and lm-eval read the same items the same way (tests/test_harness_parity.py): equal acc
    both = con.execute("""SELECT a.value, b.value FROM metrics a JOIN metrics b ON a.checkpoint_id = b.checkpoint_id
                          WHERE a.task = 'fruit' AND b.task = 'fruit_lm_eval' AND a.metric = 'acc'
                          AND b.metric = 'acc'""").fetchall()
    assert len(both) == 6 and all(a == pytest.approx(b) for a, b in both)
    query = "SELECT COUNT(*) FROM metrics WHERE task = 'where' AND metric = 'exact_match'"
    assert con.execute(query).fetchone()[0] == 6
    con.close()


@pytest.mark.slow
def test_params_are_the_papers_n(workdir, evaluated):
    """N excludes the input embedding and the (untied) output matrix, counted by parameter name."""
    from transformers import AutoModelForCausalLM

    con = sqlite3.connect(workdir / "results.db")
    stored = dict(con.execute("SELECT name, non_embedding_params FROM runs"))
    for run, ckpt in (("tiny-neox", "neox-step5"), ("tiny-llama", "llama-5")):
        model = AutoModelForCausalLM.from_pretrained(workdir / "ckpts" / ckpt)
        n = sum(p.numel() for name, p in model.named_parameters()
                if not any(k in name for k in ("embed_in", "embed_out", "embed_tokens", "lm_head")))
        assert stored[run] == n


@pytest.mark.slow
def test_analyze_reads_the_store(workdir, evaluated, capsys):
    code = main(["analyze", "--db", str(workdir / "results.db"), "--bootstrap", "20", "--permutations", "9"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 models" in out  # two runs, three checkpoints each
    for task in ("fruit", "fruit_lm_eval", "where"):
        assert f"\u2502 {task} " in out  # a row of the verdict table


@pytest.mark.slow
def test_rerun_skips_everything(workdir, evaluated, capsys):
    db = workdir / "results.db"
    before = _dump(db)
    assert main(["external", str(workdir / "spec.toml")]) == 0
    out = capsys.readouterr().out
    assert out.count("results.db, skipped\n") == 6 and "evaluated 0, skipped 6 of 6" in out
    assert "nats/token" not in out  # nothing was scored
    assert _dump(db) == before


@pytest.mark.slow
def test_rerun_evaluates_only_what_is_missing(workdir, evaluated, tmp_path, capsys):
    db = tmp_path / "copy.db"
    shutil.copy(workdir / "results.db", db)
    con = sqlite3.connect(db)
    query = """SELECT m.metric, m.value FROM metrics m JOIN checkpoints c ON c.id = m.checkpoint_id
               JOIN runs r ON r.id = c.run_id WHERE r.name = 'tiny-llama' AND c.step = 20 AND m.task = 'where'
               ORDER BY m.metric"""
    where = con.execute(query).fetchall()
    with con:
        con.execute("DELETE FROM metrics WHERE task = 'where' AND checkpoint_id = (SELECT c.id FROM checkpoints c "
                    "JOIN runs r ON r.id = c.run_id WHERE r.name = 'tiny-llama' AND c.step = 20)")
    con.close()
    assert main(["external", str(workdir / "spec.toml"), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "evaluated 1, skipped 5 of 6" in out and "tiny-llama step 20: 20,480 tokens" in out
    con = sqlite3.connect(db)
    again = con.execute(query).fetchall()
    con.close()
    assert [m for m, _ in again] == [m for m, _ in where]
    # Same model, same numbers, to fp32's precision: this rerun scores in the test's process with its
    # torch thread count, the fixture's in a subprocess with its own, and on some CPUs (AMD EPYC,
    # measured 1.2e-7 on a log-prob of -6.6) the matmuls' reduction order follows the thread count.
    assert [v for _, v in again] == pytest.approx([v for _, v in where], rel=1e-6, abs=1e-9)


def test_dry_run_writes_nothing(workdir, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["external", str(workdir / "spec.toml"), "--db", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("to do: held-out loss, fruit, where, lm-eval:fruit_lm_eval") == 6
    assert not db.exists()


def test_pythia_non_embedding_params_match_the_model_card():
    """Pythia's published non-embedding counts: total minus the input and the untied output embedding."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from losslens.evaluate.lm import non_embedding_params

    for hidden, layers, heads, expected in ((512, 6, 8, 18_915_328), (768, 12, 12, 85_056_000)):
        config = GPTNeoXConfig(vocab_size=50304, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=4 * hidden, rotary_pct=0.25,
                               max_position_embeddings=2048, tie_word_embeddings=False)
        with torch.device("meta"):  # counts only: no memory, no initialisation
            model = GPTNeoXForCausalLM(config)
        assert non_embedding_params(model) == expected


# -- bad specs: one line naming the spec file and the field, exit 2, nothing written -------------------

SERIES = '[[series]]\nname = "s"\npaths = ["m/step10"]\ntokens_per_step = 100\n'


@pytest.mark.parametrize("body, field, words", [
    ('corpus = "heldout.txt"\ncolour = 1\n' + SERIES, "colour", "unknown key"),
    ('corpus = "heldout.txt"\n' + SERIES.replace("tokens_per_step", "token_per_step"), "series[0].token_per_step",
     "unknown key"),
    (SERIES, "corpus", "missing field"),
    ('corpus = "nope.txt"\n' + SERIES, "corpus", "no such file"),
    ('corpus = "heldout.txt"\n' + SERIES.replace("m/step10", "m/step99"), "series[0].paths[0]", "no such directory"),
    ('corpus = "heldout.txt"\n' + SERIES.replace("m/step10", "notamodel"), "series[0].paths[0]", "no config.json"),
    ('corpus = "heldout.txt"\n[[series]]\nname = "p"\nhub = "EleutherAI/pythia-70m"\nrevisions = ["step 1000"]\n'
     'tokens_per_step = 2097152\n', "series[0].revisions[0]", "not a revision name"),
    ('corpus = "heldout.txt"\n[[series]]\nname = "p"\nhub = "EleutherAI/pythia-70m"\nrevisions = ["main"]\n'
     'tokens_per_step = 2097152\n', "series[0].revisions[0]", "no step"),
    ('corpus = "heldout.txt"\n[[models]]\nhub = "not a hub id"\ntokens = 5\n', "models[0].hub", "not a hub id"),
    ('corpus = "heldout.txt"\n' + SERIES.replace("tokens_per_step = 100\n", ""), "series[0].tokens_per_step",
     "tokens seen unknown"),
    ('corpus = "heldout.txt"\n' + SERIES + '[[models]]\npath = "m/step10"\nseries = "s"\ntokens = 9\n',
     "models[0]", "step 10 twice"),
    ('corpus = "heldout.txt"\ntasks = ["world:all"]\n' + SERIES, "tasks[0]", "needs world"),
    ('corpus = "heldout.txt"\ntasks = ["t.jsonl"]\n' + SERIES, "tasks[0]", "no such file"),
    ('corpus = "heldout.txt"\nlimit = 0\n' + SERIES, "limit", "must be at least 1"),
    ('corpus = "heldout.txt"\ndevice = "tpu"\n' + SERIES, "device", "unknown device"),
    ('corpus = "heldout.txt"\n' + SERIES + 'family = "a"\n[[models]]\npath = "m/step10"\nseries = "s"\nstep = 2\n'
     'tokens = 9\nfamily = "b"\n', "models[0]", "family 'b' here but 'a'"),
    ('corpus = "heldout.txt"\n', "models", "no models"),
    ('corpus = "heldout.txt\n', None, "not valid TOML"),
])
def test_bad_spec_is_one_line(tmp_path, capsys, body, field, words):
    (tmp_path / "heldout.txt").write_text("Some text.\n\nMore text.\n")
    (tmp_path / "m" / "step10").mkdir(parents=True)
    (tmp_path / "m" / "step10" / "config.json").write_text("{}")
    (tmp_path / "notamodel").mkdir()
    spec = tmp_path / "spec.toml"
    spec.write_text(body)
    code = main(["external", str(spec)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(spec) in err[0] and words in err[0], err[0]
    assert field is None or f": {field}: " in err[0], err[0]
    assert not (tmp_path / "results.db").exists()


def test_hub_id_offline_without_cache_is_one_line(tmp_path, capsys):
    """With HF_HUB_OFFLINE=1 (set for every test) and an empty cache, a hub id cannot load: one line."""
    (tmp_path / "heldout.txt").write_text("Some text.\n\nMore text.\n")
    spec = tmp_path / "spec.toml"
    spec.write_text('corpus = "heldout.txt"\n[[series]]\nname = "pythia-70m"\nhub = "EleutherAI/pythia-70m"\n'
                    'revisions = ["step1000"]\ntokens_per_step = 2097152\n')
    code = main(["external", str(spec)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{spec}: series[0].revisions[0]: cannot load EleutherAI/pythia-70m@step1000" in err[0]
    assert not (tmp_path / "results.db").exists()
