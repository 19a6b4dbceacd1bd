"""The report's page without a browser: every (task, metric) has its figures, the claims and tables are
there and true to the study, text is escaped, and a study without a second axis, a scaling law or a full
summary still makes a page. Also `losslens report` end to end and its input errors."""

from __future__ import annotations

import json
from html import escape, unescape
from html.parser import HTMLParser

import pytest
from report_store import planted_report, write_store, write_world

from losslens.analysis import analyze
from losslens.analysis.study import Study
from losslens.analysis.synthetic import planted_table
from losslens.analysis.table import TidyTable, validate
from losslens.cli import main
from losslens.report import write_report


class Page(HTMLParser):
    """Tags with their attributes, and the text of every <pre>."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.pre: list[str] = []
        self._in_pre = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_pre = tag == "pre"
        if self._in_pre:
            self.pre.append("")

    def handle_endtag(self, tag):
        self._in_pre = self._in_pre and tag != "pre"

    def handle_data(self, data):
        if self._in_pre:
            self.pre[-1] += data

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return planted_report(tmp_path_factory)


def test_every_task_and_metric_has_its_three_figures(report):
    study, index = report
    page = Page(index.read_text())
    imgs = page.all("img")
    for (task, metric), _ in study.table.groups():
        for axis in ("loss", "other", "compute"):
            found = [i for i in imgs if (i["data-task"], i["data-metric"], i["data-axis"]) == (task, metric, axis)]
            assert len(found) == 1, (task, metric, axis)
    assert {i["data-axis"] for i in imgs if not i["data-task"]} == {"scaling-tokens", "scaling-compute"}
    for img in imgs:
        path = index.parent / img["src"]
        assert img["src"].startswith("figures/") and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no file from elsewhere: every link is inside the page, every image beside it
    assert all(a["href"].startswith("#") for a in page.all("a"))
    assert not [a for t, a in page.tags if t in ("script", "iframe", "object")]
    assert [a["href"] for a in page.all("link")] == ["data:,"]


def test_claims_tables_and_raw_summary_match_the_study(report):
    study, index = report
    html = index.read_text()
    page = Page(html)
    assert [a["id"] for t, a in page.tags if t == "h2"] == ["claims", "verdicts", "correlations", "same-loss",
                                                             "backtests", "scaling-law", "training", "tasks"]
    assert json.loads(unescape(page.pre[0])) == study.summary
    claims = html.split('id="claims"')[1].split("<details>")[0]
    badge = {"holds": "b-holds", "fails": "b-fails", "not testable here": "b-not-testable-here"}
    for claim in study.claims:
        row = claims.split(claim.label)[1].split("</tr>")[0]
        assert badge[claim.status] in row and study.summary[claim.key]["status"] == claim.status
        assert all(escape(line) in row for line in claim.evidence)  # the evidence built once in the study
        assert study.summary[claim.key]["holds"] is (claim.status == "holds")
    assert "exam/correct_choice_prob" in claims  # (b)'s evidence names the continuous metric
    verdicts = html.split('id="verdicts"')[1].split('id="correlations"')[0]
    for t in study.report.tasks:
        assert verdicts.count(f"<td>{t.task}</td><td>{t.metric}</td>") == 1
        if t.verdict == "emergent":
            lo, hi = t.emergence.eta_ci
            assert f"{t.emergence.eta:.4g} [{lo:.4g}, {hi:.4g}]" in verdicts
    table2 = html.split('id="correlations"')[1].split('id="same-loss"')[0]
    exam = study.report.task("exam", "acc").same_loss
    assert f"<td class=num>{exam.spearman:.3g}</td><td class=num>{exam.pearson:.3g}</td>" in table2
    law = html.split('id="scaling-law"')[1].split('id="tasks"')[0]
    assert f"{study.report.scaling_law.alpha:.4g}" in law and "95% CI" in law
    backtests = html.split('id="backtests"')[1].split('id="scaling-law"')[0]
    assert backtests.count("b-not_predictable") >= 3 and "b-predictable" in backtests


def test_text_is_escaped_and_a_bare_study_still_makes_a_page(tmp_path):
    evil = "<script>alert('x')</script>"
    table = TidyTable(validate(planted_table({evil: "emergent", "a&b": "linear"}, seed=1)), source="planted")
    analysis = analyze(table, seed=0, bootstrap=0, permutations=0, scaling_law=False)
    summary = {"a_smooth": {"holds": True, "smooth": [f"{evil}/acc"]}, "z_new": {"holds": None, "why": [evil, 1.5]}}
    study = Study(table, analysis, None, None, summary)
    index = write_report(tmp_path, study, title=f"report of {evil}")
    html = index.read_text()
    assert "<script" not in html and "&lt;script&gt;" in html
    page = Page(html)
    assert {i["data-axis"] for i in page.all("img")} == {"loss", "compute"}  # no second axis, no law
    assert len(page.all("img")) == 4
    assert "No scaling law" in html
    claims = html.split('id="claims"')[1].split("<details>")[0]
    assert claims.count("b-missing") == 4 and "z_new" in claims and "b-not-testable-here" in claims
    assert "1 of 5 claims hold; 4 missing from the summary." in claims
    assert len(list((tmp_path / "report" / "figures").glob("*.png"))) == 4

    # a second report into the same folder leaves no figure of the first behind
    small = TidyTable(table.df[table.df["task"] == "a&b"].reset_index(drop=True), source="planted")
    write_report(tmp_path, Study(small, analyze(small, bootstrap=0, permutations=0, scaling_law=False),
                                 None, None, {}))
    assert sorted(p.name for p in (tmp_path / "report" / "figures").glob("*")) == ["a_b-acc-compute.png",
                                                                                    "a_b-acc.png"]


def test_cli_writes_report_and_summary(tmp_path, capsys):
    world, db, out = write_world(tmp_path / "world"), write_store(tmp_path / "r.db"), tmp_path / "out"
    assert main(["report", "--db", str(db), "--out", str(out), "--world", str(world), "--bootstrap", "0",
                 "--permutations", "0", "--seed", "3", "--title", "ladder <1>"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"(a) smooth         {'holds' if summary['a_smooth']['holds'] else 'fails'}" in printed
    html = (out / "report" / "index.html").read_text()
    assert "<title>ladder &lt;1&gt;</title>" in html and "other genres" in html
    assert f"wrote {out / 'report' / 'index.html'}" in printed


@pytest.mark.parametrize("args, message", [
    (["--bootstrap", "-1"], "--bootstrap: must be >= 0"),
    (["--world", "{tmp}"], "--world: not a world directory"),
    ([], "no such results file"),
])
def test_cli_input_errors_are_one_line(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_training_section_plots_each_runs_metrics_log(tmp_path):
    import sqlite3

    from losslens.analysis.table import read_db
    from losslens.train.metrics import MetricsLog

    db = write_store(tmp_path / "results.db")
    with sqlite3.connect(db) as con:
        name, run_id = con.execute("SELECT name, id FROM runs ORDER BY name LIMIT 1").fetchone()
        con.execute("UPDATE checkpoints SET path = ? WHERE run_id = ?",
                    (str(tmp_path / "runA" / "checkpoints" / "ckpt-000000001000.pt"), run_id))
    (tmp_path / "runA").mkdir()
    log = MetricsLog(tmp_path / "runA", start_step=0)
    log.write([{"step": s, "tokens": 100 * s, "loss": 5.0 / s, "lr": 1e-3, "grad_norm": 1.0,
                "tokens_per_s": 2000.0, "mfu": 0.25 if s > 1 else None, "time": 0.0} for s in range(1, 11)])
    log.close()
    table = read_db(db)
    study = Study(table, analyze(table, bootstrap=0, permutations=0, scaling_law=False), None, None, {})
    html = write_report(tmp_path / "out", study).read_text()
    section = html.split('id="training"')[1].split("<h2")[0]
    assert name in section and "2,000" in section and "25.0%" in section and "0.5000" in section
    assert 'src="figures/training-loss.png"' in section
    assert (tmp_path / "out" / "report" / "figures" / "training-loss.png").stat().st_size > 1000
    assert '<a href="#training">' in html
    # Runs without logs: the section says so and no training figure is left behind.
    (tmp_path / "runA" / "metrics.jsonl").unlink()
    html = write_report(tmp_path / "out", study).read_text()
    assert "No training logs" in html and not (tmp_path / "out" / "report" / "figures" / "training-loss.png").exists()
