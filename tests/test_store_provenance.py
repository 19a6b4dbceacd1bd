"""Store provenance (issue 14): metric rows keyed by (checkpoint, task, metric, source, settings), two
scorers of one task name side by side and never mixed, and the version 1 -> 2 migration."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import run_cli

from losslens.analysis.table import read_db
from losslens.errors import InputError
from losslens.store import LM_EVAL, MetricRow, Store, settings_hash

# The schema of main at 64b3cbc (store version 1), copied verbatim: an old store as users have it.
SCHEMA_V1 = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE runs (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    params               INTEGER,
    non_embedding_params INTEGER,
    family               TEXT,
    source               TEXT NOT NULL,
    config               TEXT
);
CREATE TABLE checkpoints (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    tokens  INTEGER NOT NULL,
    loss    REAL,
    path    TEXT,
    flops   REAL,
    UNIQUE (run_id, step)
);
CREATE TABLE heldout (
    checkpoint_id  INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    corpus         TEXT NOT NULL,
    nats_per_token REAL NOT NULL,
    bits_per_byte  REAL,
    n_tokens       INTEGER NOT NULL,
    n_bytes        INTEGER,
    PRIMARY KEY (checkpoint_id, corpus)
);
CREATE TABLE metrics (
    checkpoint_id    INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    task             TEXT NOT NULL,
    metric           TEXT NOT NULL,
    value            REAL NOT NULL,
    stderr           REAL,
    n                INTEGER,
    chance           REAL,
    higher_is_better INTEGER NOT NULL,
    perfect          REAL,
    PRIMARY KEY (checkpoint_id, task, metric)
);
CREATE VIEW tidy AS
SELECT r.name AS model, COALESCE(r.non_embedding_params, r.params) AS params, c.tokens AS tokens,
       c.loss AS loss, m.task AS task, m.metric AS metric, m.value AS value, m.stderr AS stderr,
       m.n AS n, m.chance AS chance, c.step AS step, r.family AS family,
       m.higher_is_better AS higher_is_better, c.flops AS flops, m.perfect AS perfect
FROM metrics m
JOIN checkpoints c ON c.id = m.checkpoint_id
JOIN runs r ON r.id = c.run_id;
INSERT INTO schema_version (version) VALUES (1);
"""

SETTINGS = {"seed": 0, "limit": None, "dtype": "fp32"}


def ours(acc=0.342):
    return [MetricRow("qa", "acc", acc, stderr=0.044, n=114, chance=0.25),
            MetricRow("qa", "brier_sum", 0.7, n=114, chance=0.75, higher_is_better=False)]


def theirs(acc=0.28):
    return [MetricRow("qa", "acc", acc, stderr=0.064, n=50, chance=0.25, source=LM_EVAL),
            MetricRow("qa", "acc_norm", 0.3, n=50, chance=0.25, source=LM_EVAL)]


def two_scorers(db, steps=(10, 20, 30)):
    with Store(db) as st:
        run = st.upsert_run("m", params=1000)
        for step in steps:
            ckpt = st.upsert_checkpoint(run, step=step, tokens=step * 100, loss=4.0 - step / 100)
            st.upsert_metrics(ckpt, ours(), settings=SETTINGS)
            st.upsert_metrics(ckpt, theirs(), settings=SETTINGS)


def test_a_task_name_from_two_scorers_is_kept_side_by_side_and_never_mixed(tmp_path):
    """The issue's case: lm-eval's qa (0.28, n=50) no longer replaces ours (0.342, n=114)."""
    db = tmp_path / "r.db"
    two_scorers(db)
    con = sqlite3.connect(db)
    stored = con.execute("SELECT source, metric, value, n FROM metrics WHERE checkpoint_id = 1 "
                         "ORDER BY source, metric").fetchall()
    assert stored == [("lm-eval", "acc", 0.28, 50), ("lm-eval", "acc_norm", 0.3, 50),
                      ("losslens", "acc", 0.342, 114), ("losslens", "brier_sum", 0.7, 114)]
    with Store(db) as st:
        df = st.tidy()
    # the collision is resolved by qualifying the other scorer's name; every curve has one source
    assert sorted(set(zip(df.task, df.source))) == [("lm-eval:qa", "lm-eval"), ("qa", "losslens")]
    assert df.groupby(["model", "step", "task", "metric"]).size().max() == 1
    for task, n in (("qa", 114), ("lm-eval:qa", 50)):
        assert set(df[df.task == task].n) == {n}
    table = read_db(db).df  # the analysis' loader (`SELECT * FROM tidy`) sees two tasks
    assert set(table.task) == {"qa", "lm-eval:qa"}
    assert table[(table.task == "qa") & (table.metric == "acc")].value.tolist() == [0.342] * 3


def test_a_task_only_one_scorer_has_keeps_its_name(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        ckpt = st.upsert_checkpoint(st.upsert_run("m", params=1000), step=1, tokens=100, loss=4.0)
        st.upsert_metrics(ckpt, [MetricRow("piqa", "acc", 0.6, source=LM_EVAL), MetricRow("qa", "acc", 0.4)])
        assert dict(zip(st.tidy().task, st.tidy().source)) == {"piqa": "lm-eval", "qa": "losslens"}
        assert st.has_task(ckpt, "qa") and not st.has_task(ckpt, "qa", LM_EVAL)
        assert st.has_task(ckpt, "piqa", LM_EVAL) and not st.has_task(ckpt, "piqa")


def test_other_settings_replace_a_task_whole_and_are_recorded(tmp_path):
    db = tmp_path / "r.db"
    two_scorers(db, steps=(10,))
    with Store(db) as st:
        st.upsert_metrics(1, [MetricRow("qa", "acc", 0.5, n=20)], settings={**SETTINGS, "limit": 20})
        rows = st.con.execute("SELECT source, metric, value, n, settings FROM metrics "
                              "ORDER BY source, metric").fetchall()
        saved = dict(st.con.execute("SELECT hash, settings FROM settings").fetchall())
    # ours under the new settings only (brier_sum of the old settings is gone, not mixed in);
    # lm-eval's rows are another source and stay
    new = settings_hash({**SETTINGS, "limit": 20})
    assert rows == [("lm-eval", "acc", 0.28, 50, settings_hash(SETTINGS)),
                    ("lm-eval", "acc_norm", 0.3, 50, settings_hash(SETTINGS)), ("losslens", "acc", 0.5, 20, new)]
    assert saved[new] == '{"dtype": "fp32", "limit": 20, "seed": 0}'
    assert settings_hash(SETTINGS) == settings_hash(dict(reversed(SETTINGS.items())))  # key order: same hash


def test_results_cli_shows_the_source(tmp_path):
    db = tmp_path / "r.db"
    two_scorers(db)
    proc = run_cli("results", "--db", str(db), check=True)
    out = proc.stdout
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") == 5]
    assert ["lm-eval:qa", "acc", "lm-eval", "0.28 ±0.064"] in cells, out
    assert ["qa", "acc", "losslens", "0.342 ±0.044"] in cells, out
    run_cli("results", "--db", str(db), "--csv", str(tmp_path / "t.csv"), check=True)
    head = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert head[-1] == "source"


def make_v1(db):
    con = sqlite3.connect(db)
    con.executescript(SCHEMA_V1)
    con.execute("INSERT INTO runs (name, params, non_embedding_params, family, source) "
                "VALUES ('old', 2000, 1000, 'llama', 'losslens')")
    for i, step in enumerate((10, 20), start=1):
        con.execute("INSERT INTO checkpoints (run_id, step, tokens, loss, path, flops) VALUES (1, ?, ?, ?, ?, ?)",
                    (step, step * 256, 4.0 - i / 10, f"/ck/{step}.pt", 6.0 * 1000 * step * 256))
        con.execute("INSERT INTO heldout VALUES (?, 'val', ?, 1.5, 4096, 10000)", (i, 4.0 - i / 10))
        con.execute("INSERT INTO metrics VALUES (?, 'qa', 'acc', ?, 0.02, 400, 0.25, 1, NULL)", (i, 0.3 + i / 10))
        con.execute("INSERT INTO metrics VALUES (?, 'qa', 'answer_logprob', ?, NULL, 400, NULL, 1, 0.0)", (i, -i))
    con.commit()
    tidy = con.execute("SELECT * FROM tidy ORDER BY step, metric").fetchall()
    con.close()
    return tidy


def test_a_version_1_store_is_migrated_on_open_with_its_data_intact(tmp_path):
    db = tmp_path / "old.db"
    old = make_v1(db)
    with Store(db, create=False) as st:
        df = st.tidy()
        assert st.counts() == {"runs": 1, "checkpoints": 2, "heldout": 2, "metrics": 4, "tasks": 1}
        ckpt = st.checkpoint_id("old", 20)
        assert st.has_task(ckpt, "qa")  # resumable ladders keep their results after the migration
        st.upsert_metrics(ckpt, [MetricRow("qa", "acc", 0.9, n=400)], settings=SETTINGS)  # new code writes
    migrated = [tuple(r[:15]) for r in df.sort_values(["step", "metric"]).itertuples(index=False)]
    assert [(m, p, t, lo, ta, me, v, se, n, ch, s, f, bool(h), fl, pe) for (m, p, t, lo, ta, me, v, se, n, ch, s, f,
            h, fl, pe) in old] == [tuple(None if x != x else x for x in r) for r in migrated]
    assert set(df.source) == {"losslens"}
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    assert {"settings", "samples"} <= {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert con.execute("SELECT DISTINCT settings FROM metrics WHERE checkpoint_id = 1").fetchall() == [("",)]
    # the re-evaluated task replaced the unrecorded-settings rows of that checkpoint, whole
    assert con.execute("SELECT metric, value FROM metrics WHERE checkpoint_id = 2").fetchall() == [("acc", 0.9)]
    cols = [r[1] for r in con.execute("PRAGMA table_info(checkpoints)")]
    assert cols[-2:] == ["weights_sha256", "hub_commit"]
    con.close()
    with Store(db, create=False) as st:  # opening again is a no-op
        assert st.counts()["metrics"] == 3


def test_a_store_of_an_unknown_version_is_refused(tmp_path):
    db = tmp_path / "new.db"
    with Store(db):
        pass
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 9")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="schema version 9"):
        Store(db)
