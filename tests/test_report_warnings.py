"""`losslens report` prints no warnings: every RuntimeWarning (numpy's invalid value / divide / empty
slice, scipy's degenerate-data ones, which subclass it) is an error here, in a fresh process, as a
user runs it, on a planted ladder store with degenerate tasks (one constant, one at chance)."""

from __future__ import annotations

import os
import sqlite3

from conftest import run_cli
from report_store import write_store, write_world


def test_report_prints_no_runtime_warnings(tmp_path):
    world, db, out = write_world(tmp_path / "world"), write_store(tmp_path / "r.db"), tmp_path / "out"
    con = sqlite3.connect(db)
    with con:  # degenerate curves: a metric that never moves and a correct-choice prob stuck at chance
        con.execute("UPDATE metrics SET value = 0.25, stderr = 0.0 WHERE task = 'cloze' AND metric = 'acc'")
        con.execute("UPDATE metrics SET value = 0.0 WHERE task = 'arith' AND metric = 'exact_match'")
    con.close()
    proc = run_cli("report", "--db", db, "--out", out, "--world", world, "--bootstrap", "50",
                   "--permutations", "9", env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "Warning" not in proc.stdout
    assert (out / "report" / "index.html").is_file()
