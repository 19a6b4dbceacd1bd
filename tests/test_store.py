"""The SQLite results store: upserts, idempotency, the tidy table, run records, bad files, the CLI."""

from __future__ import annotations

import math
import sqlite3

import pandas as pd
import pytest
from conftest import run_cli

from losslens.analysis.table import REQUIRED, read_db, validate
from losslens.cli import main as cli_main
from losslens.errors import InputError
from losslens.store import TIDY_COLUMNS, MetricRow, Store
from losslens.train.record import RunRecord

CSV_HEAD = ["model", "params", "tokens", "loss", "task", "metric", "value", "stderr", "n", "chance", "step"]


def fill(st: Store, scale: float = 1.0) -> None:
    """Two runs x three checkpoints x two tasks, with held-out losses on two corpora."""
    for name, params, non_emb in (("small", 2000, 1000), ("large", 9000, 5000)):
        run = st.upsert_run(name, params=params, non_embedding_params=non_emb, family="llama",
                            config={"model": {"d": params}})
        for step in (10, 20, 40):
            loss = 5.0 - step / 20 - non_emb / 5000
            ckpt = st.upsert_checkpoint(run, step=step, tokens=step * 256, loss=loss, path=f"/ck/{name}-{step}.pt",
                                        flops=6.0 * non_emb * step * 256)
            st.upsert_heldout(ckpt, corpus="val", nats_per_token=loss, bits_per_byte=loss / 2.5,
                              n_tokens=4096, n_bytes=10_000)
            st.upsert_heldout(ckpt, corpus="other", nats_per_token=loss + 0.5, bits_per_byte=None,
                              n_tokens=4096, n_bytes=None)
            acc = min(1.0, 0.25 + scale * step / 100)
            st.upsert_metrics(ckpt, [
                MetricRow("qa", "acc", acc, stderr=math.sqrt(acc * (1 - acc) / 400), n=400, chance=0.25),
                MetricRow("qa", "brier_sum", 1 - acc, stderr=0.01, n=400, chance=0.75, higher_is_better=False),
                MetricRow("sums", "exact_match", acc / 2, n=100, chance=0.0),
                MetricRow("sums", "answer_logprob", -3.0 / step, n=100, perfect=0.0),
            ])


def dump(path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_creates_schema_in_wal_mode_with_a_version(tmp_path):
    db = tmp_path / "r.db"
    with Store(db):
        pass
    con = sqlite3.connect(db)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"schema_version", "runs", "checkpoints", "heldout", "metrics", "tidy"} <= names
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    con.close()


def test_upserts_are_keyed_and_rerunning_leaves_identical_tables(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        fill(st)
        before = dump(db)
        counts = st.counts()
        fill(st)  # the same results again
        assert dump(db) == before
        assert st.counts() == counts == {"runs": 2, "checkpoints": 6, "heldout": 12, "metrics": 24, "tasks": 2}
        fill(st, scale=2.0)  # re-evaluated: values are replaced in place, nothing added
        assert st.counts() == counts
        assert dump(db) != before
        run = st.upsert_run("small", params=None)  # None keeps the known count
        assert run == st.upsert_run("small", params=2000)
        assert st.con.execute("SELECT params, non_embedding_params FROM runs WHERE name = 'small'").fetchone() == (
            2000, 1000)


def test_tidy_table_has_the_analysis_schema_and_values(tmp_path):
    with Store(tmp_path / "r.db") as st:
        fill(st)
        df = st.tidy()
        other = st.tidy(loss_corpus="other")
    assert list(df.columns) == list(TIDY_COLUMNS) and list(df.columns[:11]) == CSV_HEAD
    assert len(df) == 2 * 3 * 4
    row = df[(df.model == "large") & (df.step == 20) & (df.metric == "acc")].iloc[0]
    assert row.params == 5000  # the non-embedding count: the paper's N
    assert row.tokens == 20 * 256 and row.loss == pytest.approx(5.0 - 1.0 - 1.0)
    assert row.value == pytest.approx(0.45) and row.n == 400 and row.chance == 0.25
    assert row.stderr == pytest.approx(math.sqrt(0.45 * 0.55 / 400)) and row.family == "llama"
    assert row.flops == pytest.approx(6.0 * 5000 * 20 * 256) and bool(row.higher_is_better)
    brier = df[df.metric == "brier_sum"]
    assert not brier.higher_is_better.any() and brier.perfect.isna().all()
    assert (df[df.metric == "answer_logprob"].perfect == 0.0).all()
    assert other.loss.to_numpy() == pytest.approx(df.loss.to_numpy() + 0.5)
    pd.testing.assert_frame_equal(other.drop(columns="loss"), df.drop(columns="loss"))
    # The analysis accepts it as it is.
    clean = validate(df, "r.db")
    assert len(clean) == len(df) and set(REQUIRED) <= set(clean.columns)


def test_sql_view_gives_the_same_table_to_the_analysis_reader(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        fill(st)
        mine = st.tidy()
    table = read_db(db)  # `SELECT * FROM tidy`, the analysis' own loader
    theirs = table.df.sort_values(["model", "step", "task", "metric"]).reset_index(drop=True)
    assert theirs["value"].to_numpy() == pytest.approx(mine["value"].to_numpy())
    assert theirs["loss"].to_numpy() == pytest.approx(mine["loss"].to_numpy())
    assert theirs["params"].tolist() == mine["params"].astype(float).tolist()


def test_an_empty_store_gives_an_empty_table_with_the_columns(tmp_path):
    with Store(tmp_path / "r.db") as st:
        st.upsert_run("no-checkpoints-yet", params=10)
        df = st.tidy()
        assert list(df.columns) == list(TIDY_COLUMNS) and len(df) == 0
        assert st.runs()[0]["checkpoints"] == 0 and st.runs()[0]["step"] is None
    proc = run_cli("results", "--db", tmp_path / "r.db", check=True)
    assert "1 runs, 0 checkpoints" in proc.stdout and "no metrics stored yet" in proc.stdout


def test_loss_corpus_missing_for_some_checkpoints_is_nan_and_unknown_corpus_is_an_error(tmp_path):
    with Store(tmp_path / "r.db") as st:
        run = st.upsert_run("r", params=10)
        a = st.upsert_checkpoint(run, step=1, tokens=100, loss=3.0)
        b = st.upsert_checkpoint(run, step=2, tokens=200, loss=2.0)
        st.upsert_metrics(a, [MetricRow("t", "acc", 0.3)])
        st.upsert_metrics(b, [MetricRow("t", "acc", 0.4)])
        st.upsert_heldout(a, corpus="val", nats_per_token=3.1, bits_per_byte=1.2, n_tokens=10, n_bytes=40)
        df = st.tidy(loss_corpus="val")
        assert df.loss.iloc[0] == 3.1 and math.isnan(df.loss.iloc[1])
        with pytest.raises(InputError, match="no held-out loss on corpus 'nope'; stored corpora: val"):
            st.tidy(loss_corpus="nope")


def test_metrics_of_one_call_are_one_transaction(tmp_path):
    with Store(tmp_path / "r.db") as st:
        ckpt = st.upsert_checkpoint(st.upsert_run("r", params=10), step=1, tokens=10, loss=1.0)
        rows = [MetricRow("t", "acc", 0.5), MetricRow("t", "acc_norm", 0.6), MetricRow("t", "brier_sum", 0.1)]
        st.con.execute("CREATE TRIGGER boom BEFORE INSERT ON metrics WHEN NEW.metric = 'brier_sum' "
                       "BEGIN SELECT RAISE(ABORT, 'boom'); END")
        with pytest.raises(sqlite3.IntegrityError, match="boom"):
            st.upsert_metrics(ckpt, rows)
        assert not st.has_task(ckpt, "t") and st.counts()["metrics"] == 0
        st.con.execute("DROP TRIGGER boom")
        st.upsert_metrics(ckpt, rows)
        assert st.has_task(ckpt, "t") and not st.has_task(ckpt, "other")
        assert st.checkpoint_id("r", 1) == ckpt and st.checkpoint_id("r", 2) is None
        # An explicit transaction makes several upserts atomic.
        with pytest.raises(RuntimeError):
            with st.transaction():
                c2 = st.upsert_checkpoint(st.upsert_run("r2", params=5), step=1, tokens=5, loss=2.0)
                st.upsert_metrics(c2, rows)
                raise RuntimeError("crash mid-evaluation")
        assert st.counts()["runs"] == 1 and st.counts()["metrics"] == 3
        # A failed upsert inside a transaction the caller keeps going with leaves nothing behind.
        with st.transaction():
            st.upsert_metrics(ckpt, [MetricRow("u", "acc", 0.1)])
            st.con.execute("CREATE TRIGGER boom BEFORE INSERT ON metrics WHEN NEW.metric = 'brier_sum' "
                           "BEGIN SELECT RAISE(ABORT, 'boom'); END")
            with pytest.raises(sqlite3.IntegrityError):
                st.upsert_metrics(ckpt, [MetricRow("v", "acc", 0.2), MetricRow("v", "brier_sum", 0.3)])
            st.con.execute("DROP TRIGGER boom")
        assert st.has_task(ckpt, "u") and not st.has_task(ckpt, "v")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="qa/acc: value must be finite"):
        MetricRow("qa", "acc", bad)
    with pytest.raises(ValueError, match="qa/acc: stderr must be finite"):
        MetricRow("qa", "acc", 0.5, stderr=bad)
    with Store(tmp_path / "r.db") as st:
        run = st.upsert_run("r", params=10)
        with pytest.raises(ValueError, match="loss must be finite"):
            st.upsert_checkpoint(run, step=1, tokens=10, loss=bad)
        ckpt = st.upsert_checkpoint(run, step=1, tokens=10, loss=1.0)
        with pytest.raises(ValueError, match="nats_per_token must be finite"):
            st.upsert_heldout(ckpt, corpus="val", nats_per_token=bad, bits_per_byte=None, n_tokens=5, n_bytes=None)
        assert st.counts()["heldout"] == 0
    with pytest.raises(ValueError, match="n must be a whole number"):
        MetricRow("qa", "acc", 0.5, n=0)


def test_add_run_record_stores_the_run_and_every_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    record = RunRecord(name="nano-1x", config={"model": {"preset": "nano"}, "train": {"tokens": 6144}},
                           model_config={"d_model": 48}, params=66288, non_embedding_params=50928,
                           flops_per_token=434592.0, tokenizer="tok", tokenizer_hash="abc", data_dir="data",
                           tokens_per_step=256, total_steps=24, world_size=1, losslens_version="0.1.0")
    for step, loss in ((3, 5.27), (6, 4.80), (12, 4.10), (24, 3.67)):
        record.add_checkpoint(step=step, tokens=step * 256, val_loss=loss, val_bpb=loss / 1.6, train_loss=loss,
                              lr=1e-3, path=f"checkpoints/ckpt-{step * 256:012d}.pt", sha256="0" * 64)
    record.status = "complete"
    record.save(run_dir)  # the trainer's own writer

    with Store(tmp_path / "r.db") as st:
        run_id = st.add_run_record(run_dir)
        assert st.add_run_record(run_dir) == run_id  # idempotent
        assert st.counts()["runs"] == 1 and st.counts()["checkpoints"] == 4
        rows = st.con.execute("SELECT step, tokens, loss, path, flops FROM checkpoints ORDER BY step").fetchall()
        assert [r[0] for r in rows] == [3, 6, 12, 24] and rows[-1][1] == 6144 and rows[-1][2] == 3.67
        assert rows[0][3] == str((run_dir / "checkpoints/ckpt-000000000768.pt").resolve())
        assert rows[-1][4] == 6.0 * 50928 * 6144
        ckpt = st.checkpoint_id("nano-1x", 24)
        st.upsert_metrics(ckpt, [MetricRow("qa", "acc", 0.5, n=10, chance=0.25)])
        row = st.tidy().iloc[0]
        assert (row.model, row.params, row.tokens, row.loss, row.step) == ("nano-1x", 50928, 6144, 3.67, 24)
        assert st.runs()[0]["checkpoints"] == 4 and st.runs()[0]["tasks"] == 1
        with pytest.raises(InputError, match="no run record"):
            st.add_run_record(tmp_path)


def corrupt(path):
    """A real store whose data pages are then overwritten, as a disk error would."""
    with Store(path) as st:
        for scale in range(1, 6):
            fill(st, scale)
        st.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(2 * 4096, len(data), 4096):
        data[offset:offset + 100] = b"\xff" * 100
    path.write_bytes(bytes(data))
    return path


def _sql(path, statement: str) -> None:
    con = sqlite3.connect(path)
    con.execute(statement)
    con.commit()
    con.close()


def test_bad_files_are_input_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all, just some text" * 100)
    with pytest.raises(InputError, match="not a readable SQLite results file"):
        Store(junk)
    other = tmp_path / "other.db"
    _sql(other, "CREATE TABLE people (name TEXT)")
    with pytest.raises(InputError, match="not a losslens results store"):
        Store(other)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    _sql(newer, "UPDATE schema_version SET version = 99")
    with pytest.raises(InputError, match="schema version 99"):
        Store(newer)
    with pytest.raises(InputError, match="no such results file"):
        Store(tmp_path / "missing.db", create=False)
    with pytest.raises(InputError, match="corrupt results file"):
        with Store(corrupt(tmp_path / "corrupt.db")) as st:
            st.tidy()
    assert not (tmp_path / "missing.db").exists()


def test_cli_exports_csv_and_prints_a_summary(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        fill(st)
        expected = st.tidy(loss_corpus="other")
    out = tmp_path / "out" / "tidy.csv"
    proc = run_cli("results", "--db", db, "--csv", out, "--loss-corpus", "other", check=True)
    assert "wrote 24 rows" in proc.stdout
    df = pd.read_csv(out)
    assert list(df.columns) == list(TIDY_COLUMNS)
    assert df["loss"].to_numpy() == pytest.approx(expected["loss"].to_numpy())
    assert df["value"].to_numpy() == pytest.approx(expected["value"].to_numpy(), rel=0, abs=0)
    assert df["params"].tolist() == expected["params"].tolist()
    proc = run_cli("results", "--db", db, check=True)
    assert "2 runs, 6 checkpoints, 2 tasks, 24 metric rows" in proc.stdout
    assert "large" in proc.stdout and "exact_match" in proc.stdout and "0.65" in proc.stdout


@pytest.mark.parametrize("kind", ["junk", "corrupt", "missing", "corpus"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, kind, capsys):
    db = tmp_path / "r.db"
    args = []
    if kind == "junk":
        db.write_text("hello, not sqlite\n" * 50)
    elif kind == "corrupt":
        corrupt(db)
    elif kind == "corpus":
        Store(db).close()
        args = ["--loss-corpus", "nope"]
    assert cli_main(["results", "--db", str(db), "--csv", str(tmp_path / "o.csv"), *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()
