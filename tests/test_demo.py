"""`losslens demo --quick` end to end, as a user runs it: a real world, real training of 4 runs of 3
sizes, every checkpoint evaluated, both loss axes analysed, summary.json and the HTML report (opened
in headless Chromium). Then the demo is killed mid-way and re-run: it must finish without redoing
finished runs and give the same summary as the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

CLAIM_KEYS = ("a_smooth", "b_emergent", "c_same_loss", "d_backtest", "e_other_genres")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "quick"
    proc = run_cli("demo", "--quick", "--out", out, "--quiet", timeout=600, check=True)
    return out, proc


def test_quick_demo_writes_store_summary_and_report(quick_demo):
    out, proc = quick_demo
    summary = json.loads((out / "summary.json").read_text())
    for key in CLAIM_KEYS:
        assert isinstance(summary[key]["holds"], bool), key
        assert summary[key]["status"] in ("holds", "fails", "not testable here"), key
        assert summary[key]["holds"] is (summary[key]["status"] == "holds") and summary[key]["evidence"], key
    assert summary["all_hold"] == all(summary[k]["holds"] for k in CLAIM_KEYS)
    # each claim's evidence is the verdict table's: (a) lists exactly the smooth pairs, (c) tests them
    smooth = [f"{v['task']}/{v['metric']}" for v in summary["verdicts"] if v["verdict"] == "smooth"]
    assert summary["a_smooth"]["smooth"] == smooth
    assert summary["a_smooth"]["holds"]  # even at toy scale arithmetic's per-token accuracy rises smoothly
    assert [f"{t['task']}/{t['metric']}" for t in summary["c_same_loss"]["tasks"]] == \
        [p for p, v in zip(smooth, [v for v in summary["verdicts"] if v["verdict"] == "smooth"])
         if v["same_loss_holds"] is not None]
    assert {v["task"] for v in summary["verdicts"]} == {"completion", "coref", "arithmetic", "copying"}
    assert "the paper's claims" in proc.stdout and "(e)" in proc.stdout

    con = sqlite3.connect(out / "results.db")
    runs = [r[0] for r in con.execute("SELECT name FROM runs ORDER BY name")]
    assert runs == ["micro-200k-s0", "nano-200k-s0", "nano-400k-s0", "tiny-100k-s0"]
    ckpts = con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    assert ckpts == 16  # 4 checkpoints per run
    # every checkpoint: every task, and the held-out loss on val and on each genre
    per_ckpt = con.execute("SELECT COUNT(DISTINCT task) FROM metrics GROUP BY checkpoint_id").fetchall()
    assert per_ckpt == [(4,)] * 16
    corpora = {r[0] for r in con.execute("SELECT DISTINCT corpus FROM heldout")}
    assert "val" in corpora and {"val:stories", "val:copying"} <= corpora
    assert (out / "report" / "index.html").is_file()
    assert json.loads((out / "timings.json").read_text())


def test_quick_demo_report_opens_in_chromium(quick_demo, tmp_path):
    from test_report_browser import Browser, _chromium

    out, _ = quick_demo
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Browser(_chromium(), profile)
    try:
        page = browser.open((out / "report" / "index.html").as_uri())
    finally:
        browser.close()
    assert page["problems"] == []
    assert page["images"] and all(i["complete"] and i["width"] > 0 for i in page["images"])
    assert {i["axis"] for i in page["images"]} >= {"loss", "other", "compute"}


def _completed_runs(out: Path) -> list[Path]:
    done = []
    for record in out.glob("runs/*/run.json"):
        try:
            if json.loads(record.read_text()).get("status") == "complete":
                done.append(record.parent)
        except ValueError:
            pass
    return done


def test_killed_demo_resumes_without_redoing_runs_and_matches(quick_demo, tmp_path):
    reference, _ = quick_demo
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "losslens", "demo", "--quick", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not _completed_runs(out):  # kill once a run is finished but before the ladder is
            assert proc.poll() is None, "the demo ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "summary.json").exists()
    finished = {run: sorted((p.name, p.stat().st_mtime_ns) for p in (run / "checkpoints").iterdir())
                for run in _completed_runs(out)}

    run_cli("demo", "--quick", "--out", out, "--quiet", timeout=600, check=True)
    for run, files in finished.items():  # finished runs were not trained again
        assert sorted((p.name, p.stat().st_mtime_ns) for p in (run / "checkpoints").iterdir()) == files
    assert json.loads((out / "summary.json").read_text()) == json.loads((reference / "summary.json").read_text())


def test_demo_rejects_bad_arguments(tmp_path):
    proc = run_cli("demo", "--quick", "--seed", "-1", "--out", tmp_path / "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--seed" in proc.stderr
    assert not (tmp_path / "x").exists()
