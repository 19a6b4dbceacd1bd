"""Faults: SIGKILL during `eval`'s writes, two concurrent writers, a truncated store, a corrupt
checkpoint, a read-only output dir. Real tiny models, real SQLite files, the real CLI in fresh
processes. Every case: nothing already stored is lost, the failure is one line (exit 2, no
traceback), and a rerun completes."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from losslens.train import checkpoint as ckpt

EVAL = ("--tasks", "world:exam", "--limit", "4", "--heldout-tokens", "512")


def _checkpoints(world_run) -> list[Path]:
    return [p for _, p in ckpt.list_checkpoints(world_run)]


def _rows(db: Path) -> dict:
    """Everything the store holds, keyed by (run, step, ...), without row ids."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        q = "SELECT r.name, c.step, {cols} FROM {table} x JOIN checkpoints c ON c.id = x.checkpoint_id " \
            "JOIN runs r ON r.id = c.run_id"
        metrics = con.execute(q.format(cols="x.task, x.metric, x.value, x.n", table="metrics")).fetchall()
        heldout = con.execute(q.format(cols="x.corpus, x.nats_per_token", table="heldout")).fetchall()
        return {"metrics": sorted(metrics), "heldout": sorted(heldout)}
    finally:
        con.close()


def _one_line_error(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def clean(world_run, tmp_path_factory) -> dict:
    """The first and the last checkpoint evaluated one after the other: what every fault must end at."""
    db = tmp_path_factory.mktemp("clean") / "results.db"
    first, *_, last = _checkpoints(world_run)
    run_cli("eval", first, "--db", db, *EVAL, check=True)
    rows_first = _rows(db)
    run_cli("eval", last, "--db", db, *EVAL, check=True)
    return {"db": db, "first": rows_first, "both": _rows(db)}


def test_sigkill_during_eval_writes_loses_nothing_and_a_rerun_completes(world_run, clean, tmp_path):
    first, *_, last = _checkpoints(world_run)
    db = tmp_path / "results.db"
    run_cli("eval", first, "--db", db, *EVAL, check=True)
    wal = db.with_name(db.name + "-wal")
    proc = subprocess.Popen([sys.executable, "-m", "losslens", "eval", str(last), "--db", str(db), *EVAL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not wal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)  # the store is opened only to write: kill as soon as it is
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it was still running, inside or just before its one write
    after = _rows(db)  # a readable, consistent store ...
    assert after in (clean["first"], clean["both"])  # ... with the killed checkpoint all there or not at all
    run_cli("eval", last, "--db", db, *EVAL, check=True)
    assert _rows(db) == clean["both"]


def test_two_concurrent_writers_both_land(world_run, clean, tmp_path):
    first, *_, last = _checkpoints(world_run)
    db = tmp_path / "results.db"
    procs = [subprocess.Popen([sys.executable, "-m", "losslens", "eval", str(p), "--db", str(db), *EVAL],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for p in (first, last)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert _rows(db) == clean["both"]


def test_a_truncated_store_is_one_line_and_left_alone(world_run, clean, tmp_path):
    db = tmp_path / "results.db"
    shutil.copyfile(clean["db"], db)
    os.truncate(db, db.stat().st_size // 2)
    damaged = db.read_bytes()
    _one_line_error(run_cli("results", "--db", db), str(db), "not a readable SQLite results file")
    _one_line_error(run_cli("eval", _checkpoints(world_run)[-1], "--db", db, *EVAL), str(db))
    assert db.read_bytes() == damaged  # not "repaired" into an empty store: the user decides
    fresh = tmp_path / "fresh.db"
    run_cli("eval", _checkpoints(world_run)[-1], "--db", fresh, *EVAL, check=True)
    assert _rows(fresh)["metrics"]


def test_a_corrupt_checkpoint_is_one_line_and_stores_nothing(world_run, clean, tmp_path):
    good = _checkpoints(world_run)[-1]
    bad = tmp_path / "run" / "checkpoints" / good.name
    bad.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    db = tmp_path / "results.db"
    shutil.copyfile(clean["db"], db)
    _one_line_error(run_cli("eval", bad, "--db", db, *EVAL), str(bad), "sha256 mismatch")
    _one_line_error(run_cli("export", bad, tmp_path / "hf"), str(bad), "sha256 mismatch")
    assert _rows(db) == clean["both"] and not (tmp_path / "hf").exists()


def _read_only(directory: Path, *args: str) -> subprocess.CompletedProcess:
    """`losslens ARGS` with `directory` read-only. Root ignores permission bits, so as root the
    directory is bind-mounted read-only in a private mount namespace of that one process."""
    cmd = [sys.executable, "-m", "losslens", *map(str, args)]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.fail("running as root needs util-linux `unshare` to make a read-only directory")
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(directory), *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    directory.chmod(0o555)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        directory.chmod(0o755)


def test_a_read_only_output_dir_is_one_line_and_a_rerun_completes(world_run, clean, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    last = _checkpoints(world_run)[-1]
    _one_line_error(_read_only(out, "eval", last, "--db", out / "results.db", *EVAL), "--db", "not writable")
    _one_line_error(_read_only(out, "export", last, out / "hf"), str(out), "cannot write")
    shutil.copyfile(clean["db"], out / "results.db")
    _one_line_error(_read_only(out, "eval", last, "--db", out / "results.db", *EVAL), "--db", "not writable")
    assert sorted(p.name for p in out.iterdir()) == ["results.db"]  # nothing half-written
    assert _rows(out / "results.db") == clean["both"]
    run_cli("export", last, out / "hf", check=True)
    run_cli("eval", _checkpoints(world_run)[0], "--db", out / "new.db", *EVAL, check=True)
    assert _rows(out / "new.db") == clean["first"]
