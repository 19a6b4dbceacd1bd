"""Issue 14 items 2-4 on a tiny trained model: safe checkpoint loading, checkpoint identity (weights
hash, hub commit, duplicates refused) and per-item records (`--log-samples`, `results --samples`, the
report's item pages)."""

from __future__ import annotations

import builtins
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from losslens.cli import main
from losslens.train import checkpoint as ck

EVAL = ["--tasks", "world:exam,qa", "--limit", "6", "--heldout-tokens", "1024"]


class Evil:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


def checkpoints(world_run) -> list[Path]:
    return [p for _, p in ck.list_checkpoints(world_run)]


def one_line_error(proc, *, only=True) -> str:
    """The error line of a failed command: exit 2, no traceback (`only`: nothing else on stderr; else
    library warnings may precede it)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not only or len(lines) == 1, proc.stderr
    return errors[0]


# -- 2. safe loading ------------------------------------------------------------------------------


def test_real_checkpoints_and_state_files_load_with_weights_only(world_run):
    for kind in ("ckpt", "state"):
        found = ck.list_checkpoints(world_run, kind)
        assert found
        payload = ck.load(found[-1][1])  # torch.load(weights_only=True) inside
        assert ("model" if kind == "ckpt" else "optimizer") in payload


def test_a_checkpoint_carrying_a_pickled_callable_is_refused(world_run, tmp_path):
    payload = ck.load(checkpoints(world_run)[-1])
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil" / "checkpoints" / "ckpt-000000000001.pt"
    ck.save(evil, {**payload, "extra": Evil(marker)})  # a valid header and hash: only the content is bad
    db = tmp_path / "r.db"
    for argv in (["eval", evil, "--db", db, *EVAL], ["export", evil, tmp_path / "hf"]):
        line = one_line_error(run_cli(*argv))
        assert f"error: {evil}: refused to load" in line and "pickled global exec" in line, line
    assert not marker.exists()  # the code never ran
    assert not db.exists() and not (tmp_path / "hf").exists()  # nothing written


# -- 3. checkpoint identity -----------------------------------------------------------------------


def _stored_identity(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT c.step, c.weights_sha256, c.hub_commit FROM checkpoints c ORDER BY step").fetchall()
    finally:
        con.close()


def test_weights_hash_is_stored_stable_and_a_copy_under_another_step_is_refused(world_run, tmp_path, capsys):
    from losslens.evaluate.identity import weights_sha256
    from losslens.evaluate.lm import load_lm

    first, last = checkpoints(world_run)[0], checkpoints(world_run)[-1]
    db = tmp_path / "r.db"
    for path in (first, last):
        assert main(["eval", str(path), "--db", str(db), *EVAL]) == 0
    (s1, h1, c1), (s2, h2, c2) = _stored_identity(db)
    assert h1 != h2 and len(h1) == 64 and c1 is c2 is None  # local files: no hub commit
    assert h2 == weights_sha256(load_lm(last).model)
    # stable: the same tensors exported to a Hugging Face directory (safetensors) hash the same
    assert main(["export", str(last), str(tmp_path / "hf")]) == 0
    assert weights_sha256(load_lm(tmp_path / "hf").model) == h2
    # a byte-identical copy filed as another checkpoint of another run: refused, naming both
    copy = tmp_path / "copy" / "checkpoints" / last.name
    copy.parent.mkdir(parents=True)
    shutil.copy(last, copy)
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM metrics").fetchone()
    capsys.readouterr()
    assert main(["eval", str(copy), "--db", str(db), "--step", "999", *EVAL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"copy step 999 ({copy})" in err[0], err
    assert f"as {world_run.name} step {s2} ({last})" in err[0] and "same weights" in err[0], err
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM metrics").fetchone() == before
    # the exported directory is the same weights too
    assert main(["eval", str(tmp_path / "hf"), "--db", str(db), "--step", "5", *EVAL]) == 2
    # re-evaluating the same checkpoint is not a duplicate
    assert main(["eval", str(last), "--db", str(db), *EVAL]) == 0


def _spec(d: Path, body: str) -> Path:
    (d / "heldout.txt").write_text("The cat sat on the mat.\n\nA second short document here.\n" * 20)
    (d / "spec.toml").write_text('corpus = "heldout.txt"\ntasks = ["world:exam"]\nlimit = 4\n'
                                 f'heldout_tokens = 512\nworld = "{d / "world"}"\n' + body)
    return d / "spec.toml"


def test_external_refuses_a_byte_identical_copy_as_another_step(world_run, world_dir, tmp_path):
    last = checkpoints(world_run)[-1]
    run_cli("export", last, tmp_path / "m" / "step10", check=True)
    shutil.copytree(tmp_path / "m" / "step10", tmp_path / "m" / "step20")
    shutil.copytree(world_dir, tmp_path / "world")
    spec = _spec(tmp_path, '[[series]]\nname = "nano"\npaths = ["m/step10", "m/step20"]\ntokens_per_step = 100\n')
    line = one_line_error(run_cli("external", spec, env={"OMP_NUM_THREADS": "1"}), only=False)
    assert "nano step 20" in line and "as nano step 10" in line and "same weights" in line, line
    assert [s for s, *_ in _stored_identity(tmp_path / "results.db")] == [10]  # step 10 stays, 20 is refused


def test_external_stores_the_hub_commit_of_a_cached_revision(world_run, world_dir, tmp_path):
    """A hub revision read offline from the Hugging Face cache records the commit its ref points to."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--losslens--nano"
    run_cli("export", checkpoints(world_run)[-1], repo / "snapshots" / sha, check=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "step10").write_text(sha)
    shutil.copytree(world_dir, tmp_path / "world")
    spec = _spec(tmp_path, 'log_samples = true\n[[series]]\nname = "nano"\nhub = "losslens/nano"\n'
                           'revisions = ["step10"]\ntokens_per_step = 100\n')
    run_cli("external", spec, check=True, env={"HF_HUB_CACHE": str(tmp_path / "hub"), "OMP_NUM_THREADS": "1"})
    assert _stored_identity(tmp_path / "results.db")[0][2] == sha
    con = sqlite3.connect(tmp_path / "results.db")  # log_samples = true: the spec's four exam items
    assert con.execute("SELECT task, COUNT(*) FROM samples GROUP BY task").fetchall() == [("exam", 4)]


# -- 4. per-item records --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(world_run, tmp_path_factory):
    """Every checkpoint of the tiny run evaluated with --log-samples into one store."""
    db = tmp_path_factory.mktemp("logged") / "r.db"
    for path in checkpoints(world_run):
        assert main(["eval", str(path), "--db", str(db), "--log-samples", *EVAL]) == 0
    return db


def test_log_samples_stores_each_item_and_agrees_with_the_metrics(logged):
    from losslens.store import Store

    with Store(logged, create=False) as st:
        items, tidy = st.samples(), st.tidy()
    steps = sorted(set(tidy.step))
    assert len(steps) == 3 and len(items) == 3 * 2 * 6  # checkpoints x tasks x items
    for (step, task), g in items.groupby(["step", "task"]):
        metric = "acc" if task == "exam" else "exact_match"
        row = tidy[(tidy.step == step) & (tidy.task == task) & (tidy.metric == metric)].iloc[0]
        assert row.n == len(g) == 6 and g.correct.astype(float).mean() == pytest.approx(row.value)
        assert set(g.source) == {"losslens"} and g.item.notna().all()
    exam = items[items.task == "exam"]
    for r in exam.itertuples():  # per-choice log-likelihoods, the argmax choice, the gold index
        assert len(r.logprobs) == 4 and r.choice == int(np.argmax(r.logprobs)) and 0 <= r.gold < 4
        assert r.correct == (r.choice == r.gold) and r.generation is None
    qa = items[items.task == "qa"]
    assert qa.generation.map(lambda g: isinstance(g, str)).all() and qa.reference.notna().all()
    assert qa.logprobs.map(len).eq(1).all() and (qa.logprobs.map(lambda x: x[0]) < 0).all()


def test_eval_without_log_samples_stores_no_items(world_run, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["eval", str(checkpoints(world_run)[0]), "--db", str(db), *EVAL]) == 0
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM samples").fetchone() == (0,)
    capsys.readouterr()
    assert main(["results", "--db", str(db), "--samples"]) == 2
    assert "no per-item records stored" in capsys.readouterr().err
    assert main(["eval", str(checkpoints(world_run)[0]), "--log-samples", *EVAL]) == 2  # needs --db


def logged_run(db) -> str:
    return sqlite3.connect(db).execute("SELECT name FROM runs").fetchone()[0]


def test_results_samples_reads_them_by_task_and_checkpoint(logged, tmp_path, capsys):
    con = sqlite3.connect(logged)
    step = con.execute("SELECT MAX(step) FROM checkpoints").fetchone()[0]
    want = con.execute("SELECT item, gold, choice FROM samples s JOIN checkpoints c ON c.id = s.checkpoint_id "
                       "WHERE c.step = ? AND task = 'exam' ORDER BY position", (step,)).fetchall()
    con.close()
    capsys.readouterr()
    assert main(["results", "--db", str(logged), "--samples", "--task", "exam",
                 "--checkpoint", f"{logged_run(logged)}@{step}"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") == 11]
    assert [(r[4], r[5], r[6]) for r in rows] == [(i, str(g), str(c)) for i, g, c in want], out
    assert {r[1] for r in rows} == {str(step)} and {r[2] for r in rows} == {"exam"}
    csv = tmp_path / "items.csv"
    assert main(["results", "--db", str(logged), "--samples", "--checkpoint", str(step), "--csv", str(csv)]) == 0
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 12 and set(df.task) == {"exam", "qa"}
    assert main(["results", "--db", str(logged), "--samples", "--checkpoint", "x@y"]) == 2
    assert main(["results", "--db", str(logged), "--task", "exam"]) == 2  # --task needs --samples


def test_the_report_links_each_task_to_its_items_per_checkpoint(logged, tmp_path):
    out = tmp_path / "out"
    assert main(["report", "--db", str(logged), "--out", str(out), "--bootstrap", "20",
                 "--permutations", "20"]) == 0
    index = (out / "report" / "index.html").read_text()
    pages = sorted((out / "report" / "samples").glob("task-*.html"))
    assert len(pages) == 2
    for page in pages:
        assert f'href="samples/{page.name}"' in index
        html = page.read_text()
        con = sqlite3.connect(logged)
        run = logged_run(logged)
        for step, in con.execute("SELECT step FROM checkpoints"):
            assert f'id="ckpt-{run}-{step}"' in html and f'href="#ckpt-{run}-{step}"' in html
        con.close()
    exam = next(p.read_text() for p in pages if "<title>exam: items" in p.read_text())
    items = sqlite3.connect(logged).execute("SELECT item FROM samples WHERE task = 'exam'").fetchall()
    assert items and all(f"<td>{i}</td>" in exam for (i,) in items)
