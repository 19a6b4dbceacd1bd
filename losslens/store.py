"""The results store: one SQLite file of runs, checkpoints, held-out losses and task metrics.

Everything the evaluator measures lands here, and everything downstream (analysis, ladder, report)
reads it back as one tidy table (`Store.tidy`, or the `tidy` view for any SQLite reader).

    with Store("results.db") as st:
        run = st.upsert_run("s-1x", params=1_200_000, non_embedding_params=800_000)
        ckpt = st.upsert_checkpoint(run, step=100, tokens=409_600, loss=3.21)
        st.upsert_metrics(ckpt, [MetricRow("qa", "acc", 0.41, stderr=0.02, n=500, chance=0.25)])

Writes are upserts (updates in place) keyed by natural keys (run name; run and step; checkpoint, task, metric, source
(the scorer) and settings hash), so
re-running an evaluation replaces its rows and leaves the tables identical. Several processes may write
at once: the file is in WAL mode, every write is one `BEGIN IMMEDIATE` transaction (the write lock is
taken up front, so transactions never deadlock half-way), and a busy database is waited for and retried.
The schema is documented in docs/store.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from losslens.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000   # SQLite itself waits this long for a lock ...
LOCK_DEADLINE_S = 120.0    # ... and we retry BEGIN/COMMIT until this deadline.

# Who produced a metric row: our own scorer, or lm-eval (`--harness`, `losslens import-lm-eval`).
LOSSLENS, LM_EVAL = "losslens", "lm-eval"
UNRECORDED = ""  # the settings hash of rows whose settings are not known (a migrated version-1 store)

SCHEMA = """
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
    weights_sha256 TEXT,
    hub_commit     TEXT,
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
CREATE TABLE settings (
    hash     TEXT PRIMARY KEY,
    settings TEXT
);
"""
# Tables version 1 -> 2 rebuilds (their keys changed) and their indexes.
METRICS = """
CREATE TABLE metrics (
    checkpoint_id    INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    task             TEXT NOT NULL,
    metric           TEXT NOT NULL,
    source           TEXT NOT NULL,
    settings         TEXT NOT NULL,
    value            REAL NOT NULL,
    stderr           REAL,
    n                INTEGER,
    chance           REAL,
    higher_is_better INTEGER NOT NULL,
    perfect          REAL,
    PRIMARY KEY (checkpoint_id, task, metric, source, settings)
);
CREATE INDEX metrics_task_source ON metrics (task, source);
CREATE TABLE samples (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    task          TEXT NOT NULL,
    source        TEXT NOT NULL,
    settings      TEXT NOT NULL,
    position      INTEGER NOT NULL,
    item          TEXT,
    gold          INTEGER,
    choice        INTEGER,
    logprobs      TEXT,
    generation    TEXT,
    answer        TEXT,
    reference     TEXT,
    correct       INTEGER,
    PRIMARY KEY (checkpoint_id, task, source, position)
);
CREATE UNIQUE INDEX checkpoints_weights ON checkpoints (weights_sha256) WHERE weights_sha256 IS NOT NULL;
"""

# One SELECT serves the `tidy` view (loss = the checkpoint's loss) and `Store.tidy(loss_corpus=...)`
# (loss = the held-out loss on that corpus), so the two can never disagree on anything else.
# Provenance rule: a task name that two sources share anywhere in the store is qualified for every
# source but ours (`lm-eval:qa` beside `qa`), so no analysis ever joins two scorers into one curve.
TIDY_COLUMNS = ("model", "params", "tokens", "loss", "task", "metric", "value", "stderr", "n", "chance",
                "step", "family", "higher_is_better", "flops", "perfect", "source")
_TIDY_SELECT = """
SELECT r.name AS model, COALESCE(r.non_embedding_params, r.params) AS params, c.tokens AS tokens,
       {loss} AS loss,
       CASE WHEN m.source <> 'losslens' AND m.task IN (SELECT task FROM metrics GROUP BY task
                                                       HAVING COUNT(DISTINCT source) > 1)
            THEN m.source || ':' || m.task ELSE m.task END AS task,
       m.metric AS metric, m.value AS value, m.stderr AS stderr,
       m.n AS n, m.chance AS chance, c.step AS step, r.family AS family,
       m.higher_is_better AS higher_is_better, c.flops AS flops, m.perfect AS perfect, m.source AS source
FROM metrics m
JOIN checkpoints c ON c.id = m.checkpoint_id
JOIN runs r ON r.id = c.run_id
{join}
"""
_TIDY_ORDER = " ORDER BY r.name, c.step, task, m.metric"
VIEWS = "CREATE VIEW tidy AS " + _TIDY_SELECT.format(loss="c.loss", join="") + ";"

_TABLES = {"schema_version", "runs", "checkpoints", "heldout", "metrics", "settings", "samples", "tidy"}


def settings_hash(settings: dict | None) -> str:
    """A short stable hash of the settings that produced a result (seed, limit, dtype, ...); the
    settings themselves are kept in the `settings` table. None: not recorded."""
    if settings is None:
        return UNRECORDED
    text = json.dumps(settings, sort_keys=True, allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MetricRow:
    """One metric of one task at one checkpoint. `higher_is_better=False` for Brier, edit distance,
    bits/byte...; `perfect` is the metric's best value when it is not 1 (or 0 if lower is better)."""

    task: str
    metric: str
    value: float
    stderr: float | None = None
    n: int | None = None
    chance: float | None = None
    higher_is_better: bool = True
    perfect: float | None = None
    source: str = LOSSLENS  # the scorer: `losslens` or `lm-eval`

    def __post_init__(self):
        where = f"metric {self.task}/{self.metric}"
        if not self.task or not self.metric or not self.source:
            raise ValueError(f"{where}: task, metric and source must be non-empty")
        _finite(self.value, f"{where}: value")
        for name in ("stderr", "chance", "perfect"):
            if getattr(self, name) is not None:
                _finite(getattr(self, name), f"{where}: {name}")
        if self.stderr is not None and self.stderr < 0:
            raise ValueError(f"{where}: stderr must be >= 0, got {self.stderr}")
        if self.n is not None and (not _is_int(self.n) or self.n < 1):
            raise ValueError(f"{where}: n must be a whole number >= 1, got {self.n!r}")


@dataclass(frozen=True)
class SampleRow:
    """One item of one task at one checkpoint, as scored: `logprobs` holds each choice's
    log-likelihood (multiple choice; `choice` is the argmax, `gold` the right index) or the
    reference answer's (generation; `generation` is the raw output, `answer` what was extracted)."""

    position: int
    item: str | None = None
    gold: int | None = None
    choice: int | None = None
    logprobs: tuple[float, ...] = ()
    generation: str | None = None
    answer: str | None = None
    reference: str | None = None
    correct: bool | None = None


def _finite(x, what: str) -> float:
    """Refuse NaN and infinities: a non-finite number in the store would poison every analysis."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {x!r}")
    return f


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _count(x, what: str, *, minimum: int = 0, optional: bool = False) -> int | None:
    if x is None and optional:
        return None
    if not _is_int(x) or x < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {x!r}")
    return int(x)


def _opt_finite(x, what: str) -> float | None:
    return None if x is None else _finite(x, what)


def _float_or_none(x) -> float | None:
    return None if x is None else float(x)


def _int_or_none(x) -> int | None:
    return None if x is None else int(x)


def _is_busy(err: sqlite3.OperationalError) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(err) or "busy" in str(err)


class Store:
    """A SQLite results file. Open with `with Store(path) as st:`; every write method is atomic.

    `create=False` refuses a missing file instead of creating an empty store (for readers).
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = LOCK_DEADLINE_S):
        self.path = Path(path)
        self.timeout = timeout
        self._depth = 0
        if not create and not self.path.is_file():
            raise InputError(self.path, "no such results file")
        if self.path.is_dir():
            raise InputError(self.path, "is a directory, not a results file")
        try:
            self.con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as err:
            raise InputError(self.path, f"cannot open as SQLite ({err})") from None
        try:
            self._retry(lambda: self.con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
            self.con.execute("PRAGMA foreign_keys = ON")
            self._retry(self._wal)
            self._init_schema()
        except sqlite3.DatabaseError as err:  # "file is not a database", a corrupt page, ...
            self.con.close()
            raise InputError(self.path, f"not a readable SQLite results file ({err})") from None
        except BaseException:
            self.con.close()
            raise

    # -- connection plumbing -------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _wal(self) -> None:
        mode = self.con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a read-only directory: say so rather than lose concurrency
            raise InputError(self.path, f"cannot switch the file to WAL journal mode (got {mode!r})")

    def _retry(self, fn):
        """Run `fn`, retrying with backoff while the database is busy, up to `self.timeout` seconds."""
        deadline, delay = time.monotonic() + self.timeout, 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`): all of it is stored or none of it.

        Nested uses join the outer transaction, so a caller can make several upserts atomic:
        `with st.transaction(): st.upsert_checkpoint(...); st.upsert_metrics(...)`. Each nested use is
        a savepoint, so a failed inner upsert leaves nothing behind even if the caller carries on.
        """
        if self._depth:
            savepoint = f"sp{self._depth}"
            self.con.execute(f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield self.con
            except BaseException:
                if self.con.in_transaction:  # SQLite may already have rolled everything back
                    self.con.execute(f"ROLLBACK TO {savepoint}")
                raise
            finally:
                self._depth -= 1
                if self.con.in_transaction:
                    self.con.execute(f"RELEASE {savepoint}")
            return
        self._retry(lambda: self.con.execute("BEGIN IMMEDIATE"))
        self._depth = 1
        try:
            yield self.con
            self._retry(lambda: self.con.execute("COMMIT"))
        except BaseException:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def _init_schema(self) -> None:
        with self.transaction() as con:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
            if not names:  # a new file (executescript would COMMIT mid-transaction, so one at a time)
                self._script(SCHEMA + METRICS + VIEWS)
                con.execute("INSERT INTO settings (hash, settings) VALUES (?, NULL)", (UNRECORDED,))
                con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                return
            if "schema_version" not in names:
                raise InputError(self.path, "not a losslens results store (tables: "
                                 f"{', '.join(sorted(names))})")
            version = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version == 1:
                self._migrate_v1()
                names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
            elif version != SCHEMA_VERSION:
                raise InputError(self.path, f"results store schema version {version}; this losslens "
                                 f"reads versions 1 (migrated on open) and {SCHEMA_VERSION}")
            if not _TABLES <= names:
                raise InputError(self.path, "damaged results store: missing "
                                 f"{', '.join(sorted(_TABLES - names))}")

    def _script(self, sql: str) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                self.con.execute(statement)

    def _migrate_v1(self) -> None:
        """Version 1 -> 2, in the open transaction (all or nothing; a second process waits for it and
        then finds version 2). Metrics gain `source` and `settings` in their key: version 1 recorded
        neither, so its rows become source `losslens` with settings unrecorded (`''`); checkpoints gain
        `weights_sha256` and `hub_commit` (NULL until evaluated again); `samples` is new."""
        missing = {"runs", "checkpoints", "heldout", "metrics"} - {
            r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if missing:
            raise InputError(self.path, f"damaged results store: missing {', '.join(sorted(missing))}")
        self._script(f"""
            DROP VIEW IF EXISTS tidy;
            CREATE TABLE settings (hash TEXT PRIMARY KEY, settings TEXT);
            INSERT INTO settings (hash, settings) VALUES ('{UNRECORDED}', NULL);
            ALTER TABLE checkpoints ADD COLUMN weights_sha256 TEXT;
            ALTER TABLE checkpoints ADD COLUMN hub_commit TEXT;
            ALTER TABLE metrics RENAME TO metrics_v1;
            {METRICS}
            INSERT INTO metrics (checkpoint_id, task, metric, source, settings, value, stderr, n, chance,
                                 higher_is_better, perfect)
              SELECT checkpoint_id, task, metric, '{LOSSLENS}', '{UNRECORDED}', value, stderr, n, chance,
                     higher_is_better, perfect FROM metrics_v1;
            DROP TABLE metrics_v1;
            {VIEWS}
            UPDATE schema_version SET version = {SCHEMA_VERSION};
        """)

    # -- writes ----------------------------------------------------------------------------------

    def upsert_run(self, name: str, *, params: int | None, non_embedding_params: int | None = None,
                   family: str | None = None, source: str = "losslens", config: dict | None = None) -> int:
        """Insert or update the run called `name`; return its id. A None never erases a known value."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"run name must be a non-empty string, got {name!r}")
        params = _count(params, f"run {name}: params", minimum=1, optional=True)
        non_emb = _count(non_embedding_params, f"run {name}: non_embedding_params", minimum=1, optional=True)
        config_json = None if config is None else json.dumps(config, sort_keys=True, allow_nan=False)
        with self.transaction() as con:
            return con.execute(
                """INSERT INTO runs (name, params, non_embedding_params, family, source, config)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET
                     params = COALESCE(excluded.params, params),
                     non_embedding_params = COALESCE(excluded.non_embedding_params, non_embedding_params),
                     family = COALESCE(excluded.family, family),
                     source = excluded.source,
                     config = COALESCE(excluded.config, config)
                   RETURNING id""",
                (name, params, non_emb, family, source, config_json)).fetchone()[0]

    def upsert_checkpoint(self, run_id: int, *, step: int, tokens: int, loss: float | None,
                          path: str | None = None, flops: float | None = None,
                          weights_sha256: str | None = None, hub_commit: str | None = None) -> int:
        """Insert or update the checkpoint (run_id, step); return its id. `loss` is the held-out
        pre-training loss in nats/token; `weights_sha256` the content hash of its weights
        (`losslens.identity.weights_sha256`), `hub_commit` the hub commit of a hub revision. The same
        weights stored under another checkpoint is an `InputError` naming both. A None never erases
        a known value."""
        step = _count(step, "checkpoint step")
        tokens = _count(tokens, "checkpoint tokens")
        loss = _opt_finite(loss, f"checkpoint step {step}: loss")
        flops = _opt_finite(flops, f"checkpoint step {step}: flops")
        with self.transaction() as con:
            if weights_sha256 is not None:
                name = con.execute("SELECT name FROM runs WHERE id = ?", (int(run_id),)).fetchone()
                self.check_identity(weights_sha256, run=name[0] if name else str(run_id), step=step, path=path)
            return con.execute(
                """INSERT INTO checkpoints (run_id, step, tokens, loss, path, flops, weights_sha256, hub_commit)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (run_id, step) DO UPDATE SET
                     tokens = excluded.tokens,
                     loss = COALESCE(excluded.loss, loss),
                     path = COALESCE(excluded.path, path),
                     flops = COALESCE(excluded.flops, flops),
                     weights_sha256 = COALESCE(excluded.weights_sha256, weights_sha256),
                     hub_commit = COALESCE(excluded.hub_commit, hub_commit)
                   RETURNING id""",
                (int(run_id), step, tokens, loss, None if path is None else str(path), flops,
                 weights_sha256, hub_commit)).fetchone()[0]

    def check_identity(self, weights_sha256: str, *, run: str, step: int, path: str | None = None) -> None:
        """Refuse weights already stored under another checkpoint: an `InputError` naming both."""
        _, rows = self._query("""SELECT r.name, c.step, c.path FROM checkpoints c JOIN runs r ON r.id = c.run_id
                                 WHERE c.weights_sha256 = ? AND NOT (r.name = ? AND c.step = ?)""",
                              (weights_sha256, run, int(step)))
        if rows:
            twin = rows[0]
            this = f"{run} step {step}" + (f" ({path})" if path else "")
            that = f"{twin[0]} step {twin[1]}" + (f" ({twin[2]})" if twin[2] else "")
            raise InputError(self.path, f"{this} has the same weights (sha256 {weights_sha256[:12]}) as {that}: "
                             "a duplicated or mislabelled checkpoint", field="weights_sha256")

    def upsert_heldout(self, ckpt_id: int, *, corpus: str, nats_per_token: float, bits_per_byte: float | None,
                       n_tokens: int, n_bytes: int | None) -> None:
        """Store (or replace) the held-out loss of checkpoint `ckpt_id` on `corpus`."""
        what = f"held-out loss on {corpus!r}"
        row = (int(ckpt_id), corpus, _finite(nats_per_token, f"{what}: nats_per_token"),
               _opt_finite(bits_per_byte, f"{what}: bits_per_byte"),
               _count(n_tokens, f"{what}: n_tokens", minimum=1),
               _count(n_bytes, f"{what}: n_bytes", minimum=1, optional=True))
        with self.transaction() as con:
            con.execute("""INSERT INTO heldout (checkpoint_id, corpus, nats_per_token, bits_per_byte, n_tokens, n_bytes)
                           VALUES (?, ?, ?, ?, ?, ?)
                           ON CONFLICT (checkpoint_id, corpus) DO UPDATE SET
                             nats_per_token = excluded.nats_per_token, bits_per_byte = excluded.bits_per_byte,
                             n_tokens = excluded.n_tokens, n_bytes = excluded.n_bytes""", row)

    def _settings(self, settings: dict | None) -> str:
        key = settings_hash(settings)
        if settings is not None:
            self.con.execute("INSERT OR IGNORE INTO settings (hash, settings) VALUES (?, ?)",
                             (key, json.dumps(settings, sort_keys=True, allow_nan=False, default=str)))
        return key

    def _replace_other_settings(self, ckpt_id: int, task: str, source: str, key: str) -> None:
        """A (checkpoint, task, source) holds the results of one set of settings: results under other
        settings are removed with their samples, so re-evaluating replaces, never mixes."""
        for table in ("metrics", "samples"):
            self.con.execute(f"DELETE FROM {table} WHERE checkpoint_id = ? AND task = ? AND source = ? "
                             "AND settings <> ?", (ckpt_id, task, source, key))

    def upsert_metrics(self, ckpt_id: int, rows: list[MetricRow], *, settings: dict | None = None) -> None:
        """Store (or replace) the metrics of one checkpoint, all in one transaction. Rows are keyed by
        (checkpoint, task, metric, source, settings hash): two scorers' rows for one task name are kept
        side by side; a task's rows from one source under other `settings` are replaced whole."""
        ckpt_id = int(ckpt_id)
        with self.transaction() as con:
            key = self._settings(settings)
            for task, source in sorted({(r.task, r.source) for r in rows}):
                self._replace_other_settings(ckpt_id, task, source, key)
            values = [(ckpt_id, r.task, r.metric, r.source, key, float(r.value), _float_or_none(r.stderr),
                       _int_or_none(r.n), _float_or_none(r.chance), int(bool(r.higher_is_better)),
                       _float_or_none(r.perfect)) for r in rows]
            con.executemany("""INSERT INTO metrics (checkpoint_id, task, metric, source, settings, value, stderr,
                                                   n, chance, higher_is_better, perfect)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                               ON CONFLICT (checkpoint_id, task, metric, source, settings) DO UPDATE SET
                                 value = excluded.value, stderr = excluded.stderr, n = excluded.n,
                                 chance = excluded.chance, higher_is_better = excluded.higher_is_better,
                                 perfect = excluded.perfect""", values)

    def upsert_samples(self, ckpt_id: int, task: str, rows: list[SampleRow], *, source: str = LOSSLENS,
                       settings: dict | None = None) -> None:
        """Store the per-item records of one task at one checkpoint, replacing any stored before."""
        ckpt_id = int(ckpt_id)
        values = []
        for r in rows:
            lps = [_finite(x, f"sample {task}#{r.position}: logprob") for x in r.logprobs]
            values.append((ckpt_id, task, source, None, r.position, r.item, _int_or_none(r.gold),
                           _int_or_none(r.choice),
                           json.dumps([round(x, 6) for x in lps]), r.generation, r.answer, r.reference,
                           None if r.correct is None else int(bool(r.correct))))
        with self.transaction() as con:
            key = self._settings(settings)
            self._replace_other_settings(ckpt_id, task, source, key)
            con.execute("DELETE FROM samples WHERE checkpoint_id = ? AND task = ? AND source = ?",
                        (ckpt_id, task, source))
            con.executemany("""INSERT INTO samples (checkpoint_id, task, source, settings, position, item, gold,
                                                    choice, logprobs, generation, answer, reference, correct)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                            [v[:3] + (key,) + v[4:] for v in values])

    def add_run_record(self, run_dir: str | Path, *, family: str | None = None) -> int:
        """Store a training run from its `run.json` (docs/file-formats.md): the run and every
        checkpoint it lists, with the checkpoint's validation loss as its loss. Returns the run id."""
        from losslens.train.record import load_record

        run_dir = Path(run_dir)
        record = load_record(run_dir)
        if record is None:
            raise InputError(run_dir / "run.json", "no run record (not a losslens run directory?)")
        with self.transaction():
            run_id = self.upsert_run(record.name, params=record.params,
                                     non_embedding_params=record.non_embedding_params, family=family,
                                     source="losslens", config=record.config)
            for c in record.checkpoints:
                self.upsert_checkpoint(run_id, step=c["step"], tokens=c["tokens"], loss=c.get("val_loss"),
                                       path=str((run_dir / c["path"]).resolve()) if c.get("path") else None,
                                       flops=c.get("flops"))
        return run_id

    # -- reads ---------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple = ()) -> tuple[list[str], list[tuple]]:
        """Run a read; a corrupt file (found only when its damaged pages are read) is an InputError."""
        try:
            cur = self.con.execute(sql, args)
            return [d[0] for d in cur.description], cur.fetchall()
        except sqlite3.OperationalError as err:
            if _is_busy(err):
                raise
            raise InputError(self.path, f"cannot read the results file ({err})") from None
        except sqlite3.DatabaseError as err:
            raise InputError(self.path, f"corrupt results file ({err})") from None

    def checkpoint_id(self, run: str, step: int) -> int | None:
        """The id of run `run`'s checkpoint at `step`, or None if it is not stored."""
        _, rows = self._query("SELECT c.id FROM checkpoints c JOIN runs r ON r.id = c.run_id "
                              "WHERE r.name = ? AND c.step = ?", (run, step))
        return rows[0][0] if rows else None

    def has_task(self, ckpt_id: int, task: str, source: str = LOSSLENS) -> bool:
        """Whether any metric of `task` from `source` is stored for this checkpoint (metrics of one
        task are written in one transaction, so one means all)."""
        return bool(self._query("SELECT 1 FROM metrics WHERE checkpoint_id = ? AND task = ? AND source = ? "
                                "LIMIT 1", (int(ckpt_id), task, source))[1])

    def has_heldout(self, ckpt_id: int, corpus: str) -> bool:
        return bool(self._query("SELECT 1 FROM heldout WHERE checkpoint_id = ? AND corpus = ?",
                                (int(ckpt_id), corpus))[1])

    def corpora(self) -> list[str]:
        """Names of the corpora with held-out losses in the store."""
        return [r[0] for r in self._query("SELECT DISTINCT corpus FROM heldout ORDER BY corpus")[1]]

    def counts(self) -> dict[str, int]:
        """Row counts: runs, checkpoints, heldout, metrics, and distinct tasks."""
        q = {t: f"SELECT COUNT(*) FROM {t}" for t in ("runs", "checkpoints", "heldout", "metrics")}
        q["tasks"] = "SELECT COUNT(*) FROM (SELECT DISTINCT task, source FROM metrics)"
        return {k: self._query(sql)[1][0][0] for k, sql in q.items()}

    def runs(self) -> list[dict]:
        """One dict per run, smallest first: name, params (N as in `tidy`), family, source, checkpoints
        (count), and its latest checkpoint's step, tokens, loss and number of evaluated tasks."""
        names, rows = self._query("""
            SELECT r.name AS name, COALESCE(r.non_embedding_params, r.params) AS params, r.family AS family,
                   r.source AS source, (SELECT COUNT(*) FROM checkpoints WHERE run_id = r.id) AS checkpoints,
                   c.step AS step, c.tokens AS tokens, c.loss AS loss,
                   (SELECT COUNT(*) FROM (SELECT DISTINCT task, source FROM metrics
                                          WHERE checkpoint_id = c.id)) AS tasks
            FROM runs r LEFT JOIN checkpoints c
              ON c.id = (SELECT id FROM checkpoints WHERE run_id = r.id ORDER BY step DESC LIMIT 1)
            ORDER BY params, name""")
        return [dict(zip(names, row)) for row in rows]

    def heldout(self) -> pd.DataFrame:
        """Every held-out loss: one row per (model, step, corpus) with nats_per_token, bits_per_byte,
        n_tokens and n_bytes."""
        import pandas as pd

        names, rows = self._query("""
            SELECT r.name AS model, c.step AS step, c.tokens AS tokens, h.corpus AS corpus,
                   h.nats_per_token AS nats_per_token, h.bits_per_byte AS bits_per_byte,
                   h.n_tokens AS n_tokens, h.n_bytes AS n_bytes
            FROM heldout h JOIN checkpoints c ON c.id = h.checkpoint_id JOIN runs r ON r.id = c.run_id
            ORDER BY r.name, c.step, h.corpus""")
        return pd.DataFrame.from_records(rows, columns=names)

    def tidy(self, loss_corpus: str | None = None) -> pd.DataFrame:
        """One row per (run, checkpoint, task, metric) with the analysis' tidy columns (TIDY_COLUMNS).

        `params` is the non-embedding count when known (the paper's N), else the total. `loss` is the
        checkpoint's loss, or its held-out loss on `loss_corpus` (missing where not measured).
        """
        import pandas as pd

        if loss_corpus is None:
            sql, args = _TIDY_SELECT.format(loss="c.loss", join=""), ()
        else:
            if loss_corpus not in self.corpora():
                raise InputError(self.path, f"no held-out loss on corpus {loss_corpus!r}; stored corpora: "
                                 f"{', '.join(self.corpora()) or 'none'}", field="loss_corpus")
            sql = _TIDY_SELECT.format(loss="h.nats_per_token", join="LEFT JOIN heldout h ON "
                                      "h.checkpoint_id = c.id AND h.corpus = ?")
            args = (loss_corpus,)
        names, rows = self._query(sql + _TIDY_ORDER, args)
        df = pd.DataFrame.from_records(rows, columns=names)
        for col in ("params", "tokens", "n", "step"):
            df[col] = df[col].astype("Int64")
        for col in ("loss", "value", "stderr", "chance", "flops", "perfect"):
            df[col] = df[col].astype(float)
        df["higher_is_better"] = df["higher_is_better"].astype(bool)
        df["family"] = df["family"].astype(object)
        return df[list(TIDY_COLUMNS)]

    def samples(self, *, task: str | None = None, run: str | None = None, step: int | None = None) -> pd.DataFrame:
        """Per-item records (`--log-samples`): one row per (model, step, task, source, item), with the
        per-choice log-likelihoods as a list; `task` may be qualified (`lm-eval:qa`) as in `tidy`."""
        import pandas as pd

        where, args = [], []
        if task is not None:
            source, _, bare = task.partition(":") if task.startswith(f"{LM_EVAL}:") else (None, "", task)
            where.append("s.task = ?" + (" AND s.source = ?" if source else ""))
            args += [bare] + ([source] if source else [])
        if run is not None:
            where.append("r.name = ?")
            args.append(run)
        if step is not None:
            where.append("c.step = ?")
            args.append(int(step))
        names, rows = self._query(f"""
            SELECT r.name AS model, c.step AS step, s.task AS task, s.source AS source, s.settings AS settings,
                   s.position AS position, s.item AS item, s.gold AS gold, s.choice AS choice,
                   s.correct AS correct, s.logprobs AS logprobs, s.generation AS generation,
                   s.answer AS answer, s.reference AS reference
            FROM samples s JOIN checkpoints c ON c.id = s.checkpoint_id JOIN runs r ON r.id = c.run_id
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY r.name, c.step, s.task, s.source, s.position""", tuple(args))
        df = pd.DataFrame.from_records(rows, columns=names)
        df["logprobs"] = [json.loads(x) if x else [] for x in df["logprobs"]]
        for col in ("gold", "choice", "step", "position"):
            df[col] = df[col].astype("Int64")
        df["correct"] = df["correct"].astype("boolean")
        for col in ("item", "generation", "answer", "reference"):  # None, not NaN, where not recorded
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df
