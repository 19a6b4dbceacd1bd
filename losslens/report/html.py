"""The report: one static HTML page (inline CSS, no script, relative image paths) that opens from disk.

    OUT/report/index.html
    OUT/report/figures/*.png

Sections: the paper's claims (a)-(e) from `study.summary`, the verdict of every (task, metric) on both
loss axes, the correlations of the paper's Table 2, the same-loss test, the backtests, the scaling law,
per task its figures against the validation loss, the other-genres loss and compute, and the training
log of each run (report/training.py).

Every piece of text goes through `html.escape` (`_cell`); markup is built only by the `Html` helpers.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from losslens import __version__
from losslens.fmt import interval, num
from losslens.io import write_text
from losslens.report.claims import claim_rows, headline
from losslens.report.figures import Figure, write_study_figures
from losslens.report.training import TrainingLog, training_figure, training_logs

AXIS_CAPTIONS = {"loss": "against the validation loss", "other": "against the loss on the other genres",
                 "compute": "against compute 6ND", "scaling-tokens": "loss against tokens, with the fitted law",
                 "scaling-compute": "loss against compute, with the fitted law and its compute-optimal frontier"}
BADGES = {"emergent", "smooth", "not_emerged", "inconclusive", "holds", "fails", "untested", "missing",
          "predictable", "not_predictable", "not testable here"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2328;background:#fafbfc}
header,main,nav{max-width:1280px;margin:0 auto;padding:0 20px}
header{padding-top:18px}h1{margin:.2em 0;font-size:1.6em}h2{margin-top:1.8em;border-bottom:2px solid #dde3e8;
padding-bottom:.2em}h3{margin:1.4em 0 .4em}h4{margin:.8em 0 .3em;font-size:1.02em}
nav{position:sticky;top:0;background:#fafbfcee;border-bottom:1px solid #dde3e8;padding:6px 20px;z-index:2}
nav a{margin-right:12px;color:#245;text-decoration:none;white-space:nowrap}nav a:hover{text-decoration:underline}
.meta{color:#555;margin:.2em 0}.note{color:#7a5b00}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #dde3e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr{background:#fff}tbody tr:nth-child(even){background:#f7f9fa}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;white-space:nowrap}
.b-emergent,.b-fails,.b-not_predictable{background:#fde2e1;color:#a11}
.b-smooth,.b-holds,.b-predictable{background:#dff3e4;color:#15652f}
.b-not_emerged,.b-untested,.b-missing,.b-not-testable-here{background:#eceff1;color:#555}.b-inconclusive{background:#fff1cc;color:#7a5b00}
.sig{font-weight:700}ul.tight{margin:0;padding-left:1.1em}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
figure{margin:0;background:#fff;border:1px solid #dde3e8;padding:4px}figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555;padding:2px 4px}
details{margin:.5em 0}pre{background:#f1f4f6;padding:10px;overflow:auto;font-size:12px}
.metric{margin-bottom:1.2em}
"""


class Html(str):
    """Markup that is already safe; every other string is escaped when it becomes a cell."""


def _cell(x) -> str:
    return x if isinstance(x, Html) else escape("-" if x is None else str(x))


def _join(parts) -> Html:
    return Html("".join(_cell(p) for p in parts))


def _tag(name: str, content, **attrs) -> Html:
    a = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{a}>{_cell(content)}</{name}>")


def _badge(text) -> Html:
    text = str(text)
    kind = (text if text in BADGES else "missing").replace(" ", "-")
    return Html(f'<span class="badge b-{kind}">{escape(text.replace("_", " "))}</span>')


def _holds(value) -> Html:
    """The same-loss verdict: null is "not shown" (too few runs, or equivalence underpowered; see the note)."""
    return _badge({True: "holds", False: "fails"}.get(value, "inconclusive"))


def _table(headers, rows, numeric: set[int] = frozenset()) -> Html:
    """A table; columns whose index is in `numeric` are right-aligned."""
    head = "".join(f"<th>{_cell(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{_cell(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _list(items) -> Html:
    items = list(items)
    return Html("<ul class=tight>" + "".join(f"<li>{_cell(i)}</li>" for i in items) + "</ul>") if items else Html("-")


# ---------------------------------------------------------------- the claims


def _yes_no(v) -> str:
    return {True: "yes", False: "no"}.get(v, "-")


def claims_section(study) -> Html:
    """The claims as `report.claims` renders them for every front end (the demo's table is the same rows)."""
    rows = [[r.label, r.text, _badge(r.status), _list(r.evidence)] for r in claim_rows(study.claims)]
    raw = json.dumps(study.summary, indent=2, sort_keys=False)
    return _join([_tag("h2", "The paper's claims", id="claims"), _tag("p", headline(study.claims)),
                  _table(["claim", "what it says", "verdict", "evidence"], rows),
                  Html(f"<details><summary>summary.json</summary><pre>{escape(raw)}</pre></details>")])


# ---------------------------------------------------------------- per (task, metric) tables


def _eta(e) -> str:
    if e is None or e.verdict != "emergent" or e.eta is None:
        return "-"
    return f"{e.eta:.4g} {interval(e.eta_ci, '.4g')}".strip()


def _pairs(study):
    """(task report on the validation loss, the same on the other-genres loss or None), in order."""
    other = {(t.task, t.metric): t for t in study.other_report.tasks} if study.other_report else {}
    return [(t, other.get((t.task, t.metric))) for t in study.report.tasks]


def _error_rate(e) -> str:
    """The calibration suite's measured error rate of this verdict for tasks like this one."""
    r = e.error_rates
    if not r or r.get("false_rate") is None:
        return "-"
    return f"{100 * r['false_rate']:.1f}% ({r.get('n', '?')} tasks)"


def verdicts_section(study) -> Html:
    has_other = study.other_report is not None
    headers = ["task", "metric", "verdict", "reason code", "eta [95% CI]", "test p", "q", "error rate",
               "delta BIC", "best smooth"]
    if has_other:
        headers += ["verdict (other genres)", "eta (other genres)"]
    headers.append("reasons")
    rows = []
    for t, o in _pairs(study):
        e = t.emergence
        row = [t.task, t.metric, _badge(e.verdict), e.reason_code, _eta(e), num(e.lrt_p, ".2g"),
               num(e.q_value, ".2g"), _error_rate(e), num(e.delta_bic, ".1f"), e.best_smooth or "-"]
        if has_other:
            row += [_badge(o.verdict) if o else "-", _eta(o.emergence) if o else "-"]
        rates = [e.error_rates["text"]] if e.error_rates and e.error_rates.get("text") else []
        row.append(_list([*e.reasons, *rates, *e.notes]))
        rows.append(row)
    numeric = {4, 5, 6, 8} | ({11} if has_other else set())
    return _join([_tag("h2", "Verdicts", id="verdicts"),
                  _tag("p", "Each (task, metric) classified on the validation-loss axis"
                       + (" and on the loss of the genres other than the task's own" if has_other else "")
                       + ". The emergence test is a likelihood ratio of Eq. 3 against the best smooth curve, "
                         "calibrated by a parametric bootstrap under that smooth curve (test p); q is its "
                         "Benjamini-Hochberg q-value across this analysis; the error rate is how often "
                         "planted tasks like this one got this verdict wrongly in the calibration suite; "
                         "eta and its profile-likelihood interval are reported only where the verdict is "
                         "emergent. delta BIC > 0 favours the threshold (Eq. 3) over the best smooth fit."),
                  _table(headers, rows, numeric)])


def correlations_section(study) -> Html:
    has_other = study.other_report is not None
    headers = ["task", "metric", "Spearman (loss)", "Pearson (loss)"]
    if has_other:
        headers += ["Spearman (other genres)", "Pearson (other genres)"]
    headers += ["Spearman (log compute)", "Pearson (log compute)"]
    rows = []
    for t, o in _pairs(study):
        s = t.same_loss
        row = [t.task, t.metric, num(s.spearman), num(s.pearson)]
        if has_other:
            row += [num(o.same_loss.spearman) if o else "-", num(o.same_loss.pearson) if o else "-"]
        rows.append(row + [num(s.spearman_compute), num(s.pearson_compute)])
    return _join([_tag("h2", "Correlations with loss (the paper's Table 2)", id="correlations"),
                  _tag("p", "Correlation of each task's metric with the loss and with log compute over all "
                       "checkpoints. With loss it is negative when the metric improves as loss falls (positive "
                       "for lower-is-better metrics such as Brier); a flat stretch at chance weakens it."),
                  _table(headers, rows, set(range(2, len(headers))))])


def _test(s, axis, name) -> Html:
    t = s.test(axis, name)
    if t is None:
        return Html("-")
    p = num(t.p_value, ".3g")
    text = escape(f"{t.improvement:+.3f}") + f"<br><small>{escape(interval(t.ci, '+.3f'))} p {escape(p)}</small>"
    if t.effect is not None:  # the equivalence test: effect per doubling, its 90% interval, the margin
        verdict = {True: "equivalent", False: "not equivalent"}.get(t.equivalent, "no interval")
        text += (f"<br><small>effect {escape(num(t.effect, '+.3f'))} {escape(interval(t.effect_ci, '+.3f'))}/doubling "
                 f"vs &plusmn;{escape(num(t.margin, 'g'))}: {verdict}, power {escape(num(t.power, '.2f'))}</small>")
    return Html(f'<span class="sig">{text} *</span>' if t.significant else text)


def same_loss_section(study) -> Html:
    rows = []
    for t, _ in _pairs(study):
        s = t.same_loss
        rows.append([t.task, t.metric, s.n_runs, _test(s, "loss", "log_params"), _test(s, "loss", "log_tokens"),
                     _test(s, "compute", "log_params"), num(s.r2_loss), num(s.r2_compute),
                     Html(f"{escape(num(s.compute_excess, '+.3f'))}<br><small>"
                          f"{escape(interval(s.compute_excess_ci, '+.3f'))}</small>"),
                     _yes_no(s.compute_collapses), _holds(s.holds), s.reason or ""])
    return _join([_tag("h2", "The same-loss test", id="same-loss"),
                  _tag("p", "Improvement of the cross-validated error (runs held out whole) from adding log N "
                       "or log D to a monotone function of loss: 1 - MSE_with / MSE_loss, with its 95% bootstrap "
                       "interval over runs and a permutation p-value; * = significant. Below it the equivalence "
                       "test: the effect of doubling N or D at equal loss (chance-to-perfect units) with its 90% "
                       "interval over runs; 'same loss' holds only when every interval lies inside the margin, "
                       "fails when a covariate is significant and not equivalent, and is inconclusive otherwise "
                       "(the power says how likely equivalence was to show). The same with log N beyond "
                       "compute, and the relative excess error of compute over loss as the x-axis: compute "
                       "collapses the runs only when it fits held-out runs as well as loss."),
                  _table(["task", "metric", "runs", "log N beyond loss", "log D beyond loss",
                          "log N beyond compute", "CV R^2 loss", "CV R^2 compute", "compute excess error",
                          "compute collapses", "same loss", "note"], rows, {2, 3, 4, 5, 6, 7, 8})])


def backtests_section(study) -> Html:
    has_other = study.other_report is not None
    headers = ["task", "metric", "cut (held out: loss <= cut)", "fit / test points", "curve", "MAE",
               "tolerance", "verdict"] + (["verdict (other genres)"] if has_other else []) + ["reason"]
    rows = []
    for t, o in _pairs(study):
        b = t.backtest
        if b is None:
            rows.append([t.task, t.metric, "-", "-", "-", "-", "-", _badge("untested")]
                        + (["-"] if has_other else []) + ["no backtest"])
            continue
        row = [t.task, t.metric, num(b.cut, ".4g"), f"{b.n_fit} / {b.n_test}", b.form or "-", num(b.mae),
               num(b.tolerance), _badge(b.verdict)]
        if has_other:
            row.append(_badge(o.backtest.verdict) if o is not None and o.backtest is not None else "-")
        rows.append(row + [b.reason])
    return _join([_tag("h2", "Backtests", id="backtests"),
                  _tag("p", "Fit the checkpoints with loss above the cut, predict those at or below it; "
                       "predictable when the mean absolute error is within the tolerance max(2 x noise, "
                       "0.1 x range). An emergent task's flat high-loss stretch says nothing about its rise."),
                  _table(headers, rows, {2, 3, 5, 6})])


# ---------------------------------------------------------------- scaling law and figures


def _img(fig: Figure, alt: str) -> Html:
    return Html(f'<figure><img src="figures/{escape(fig.name)}" alt="{escape(alt)}" '
                f'data-axis="{escape(fig.axis)}" data-task="{escape(fig.task or "")}" '
                f'data-metric="{escape(fig.metric or "")}"><figcaption>{escape(AXIS_CAPTIONS[fig.axis])}'
                f"</figcaption></figure>")


def scaling_section(study, figures: list[Figure]) -> Html:
    law = study.report.scaling_law
    parts = [_tag("h2", "Scaling law", id="scaling-law")]
    if law is None:
        why = [n for n in study.report.notes if "scaling law" in n] or ["no law was fitted to this table"]
        return _join(parts + [_tag("p", "No scaling law: " + "; ".join(why))])
    q = law.to_dict()
    parts.append(_tag("p", f"{q.get('form', 'L(N, D)')}, fitted to {q.get('n_points', '?')} checkpoints "
                      f"(Huber loss on log L, L-BFGS from {q.get('starts', '?')} starts); intervals from "
                      f"{q.get('bootstrap', 0)} bootstrap resamples."))
    level = q.get("ci_level", 0.95)
    rows = [[name, num(q[name], ".4g"), interval((q.get("ci") or {}).get(name), ".4g") or "-"]
            for name in ("E", "A", "alpha", "B", "beta", "n_opt_exponent") if name in q]
    parts.append(_table(["parameter", "estimate", f"{100 * level:g}% CI"], rows, {1, 2}))
    scaling = [f for f in figures if f.axis.startswith("scaling")]
    parts.append(Html('<div class="figs">' + "".join(_img(f, f"scaling law: {AXIS_CAPTIONS[f.axis]}")
                                                     for f in scaling) + "</div>"))
    return _join(parts)


def tasks_section(study, figures: list[Figure], sample_pages: dict[str, str] | None = None) -> Html:
    by_pair: dict[tuple, list[Figure]] = {}
    for f in figures:
        if f.task is not None:
            by_pair.setdefault((f.task, f.metric), []).append(f)
    parts = [_tag("h2", "Tasks", id="tasks"),
             _tag("p", "Per metric: performance against the validation loss (reversed: better models to the "
                  "right), the loss on the other genres, and compute. Points are coloured by model size "
                  "(log scale), a line joins each run's checkpoints, the dashed line is chance; for emergent "
                  "verdicts eta (red line), its 95% interval (shaded) and the Eq. 3 fit (black).")]
    for i, (task, pairs) in enumerate(_by_task(study)):
        parts.append(_tag("h3", task, id=f"task-{i}"))
        if task in (sample_pages or {}):  # the items behind each point (losslens/report/samples.py)
            parts.append(Html(f'<p class="meta"><a href="{escape(sample_pages[task])}">items at each '
                              "checkpoint</a></p>"))
        for t, o in pairs:
            head = [t.metric, " ", _badge(t.verdict)]
            if o is not None:
                head += [" other genres: ", _badge(o.verdict)]
            eta = _eta(t.emergence)
            text = f"eta {eta}" if eta != "-" else ""
            if o is not None and _eta(o.emergence) != "-":
                text += ("; " if text else "") + f"eta on the other genres {_eta(o.emergence)}"
            figs = "".join(_img(f, f"{task} / {t.metric} {AXIS_CAPTIONS[f.axis]}")
                           for f in by_pair.get((t.task, t.metric), []))
            parts.append(Html(f'<div class="metric"><h4>{_join(head)}</h4>'
                              + (f'<p class="meta">{escape(text)}</p>' if text else "")
                              + f'<div class="figs">{figs}</div></div>'))
    return _join(parts)


def _by_task(study):
    out: dict[str, list] = {}
    for t, o in _pairs(study):
        out.setdefault(t.task, []).append((t, o))
    return list(out.items())


def training_section(logs: list[TrainingLog], figure: str | None) -> Html:
    parts = [_tag("h2", "Training", id="training")]
    if not logs:
        return _join(parts + [_tag("p", "No training logs (metrics.jsonl) beside these runs' checkpoints.")])
    parts.append(_tag("p", "Training loss at every optimizer step, from each run's metrics.jsonl; tokens/s and "
                      "MFU are medians over the logged steps (MFU is '-' where the device's peak is unknown)."))
    rows = [[log.run, log.rows[-1]["step"], num(log.final_loss, ".4f"), f"{log.tokens_per_s:,.0f}",
             "-" if log.mfu is None else f"{100 * log.mfu:.1f}%"] for log in logs]
    parts.append(_table(["run", "steps", "final training loss", "tokens/s", "MFU"], rows, {1, 2, 3, 4}))
    if figure:
        parts.append(Html(f'<div class="figs"><figure><img src="figures/{escape(figure)}" data-axis="training" '
                          f'data-task="" data-metric="" alt="training loss per step"></figure></div>'))
    return _join(parts)


# ---------------------------------------------------------------- the page


def _header(study, title: str) -> Html:
    src, settings = study.report.source, study.report.settings
    lines = [f"{src.get('rows', '?')} results of {src.get('models', '?')} runs, "
             f"{len(study.report.tasks)} (task, metric) pairs; x-axis: {study.table.x_label}"
             + (f"; second axis: {study.other_table.x_label}" if study.other_table is not None else
                "; no second (other-genres) axis: the study had no world or no per-genre held-out losses")]
    lines.append(f"seed {settings.get('seed', '-')}, {settings.get('bootstrap', '-')} bootstrap resamples, "
                 f"{settings.get('permutations', '-')} permutations; losslens {__version__}")
    notes = [*src.get("notes", []), *study.report.notes]
    if study.other_report is not None:
        notes += [f"other genres: {n}" for n in study.other_report.notes]
    return _join([_tag("h1", title)] + [_tag("p", line, class_="meta") for line in lines]
                 + [_tag("p", f"note: {n}", class_="meta note") for n in notes])


def _nav(study) -> Html:
    links = [("claims", "Claims"), ("verdicts", "Verdicts"), ("correlations", "Correlations"),
             ("same-loss", "Same-loss test"), ("backtests", "Backtests"), ("scaling-law", "Scaling law"),
             ("training", "Training"), ("tasks", "Tasks:")]
    links += [(f"task-{i}", task) for i, (task, _) in enumerate(_by_task(study))]
    return Html("".join(f'<a href="#{escape(a)}">{escape(text)}</a>' for a, text in links))


def render(study, figures: list[Figure], *, title: str = "losslens report",
           sample_pages: dict[str, str] | None = None,
           training: tuple[list[TrainingLog], str | None] = ([], None)) -> str:
    """The page as a string; `figures` are those `write_study_figures` drew (paths relative to the page),
    `sample_pages` the per-task item pages (task -> relative path), `training` the runs' training logs
    and the name of their figure."""
    body = _join([claims_section(study), verdicts_section(study), correlations_section(study),
                  same_loss_section(study), backtests_section(study), scaling_section(study, figures),
                  training_section(*training), tasks_section(study, figures, sample_pages)])
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # Nothing may come from the network; images only from beside the page.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; "
        "style-src 'unsafe-inline'\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>"
        f"<header>{_header(study, title)}</header><nav>{_nav(study)}</nav>\n<main>{body}</main></body></html>\n")


def write_report(out_dir, study, *, title: str = "losslens report") -> Path:
    """Write OUT/report/index.html and its figures (each file atomically; the page last, so it never
    links a figure that is not there yet); figures left from an earlier report are removed."""
    report_dir = Path(out_dir) / "report"
    fig_dir = report_dir / "figures"
    figures = write_study_figures(study, fig_dir)
    from losslens.report.samples import write_sample_pages

    sample_pages = write_sample_pages(report_dir, study, [task for task, _ in _by_task(study)], CSS)
    logs = training_logs(getattr(study.table, "path", None))
    train_fig = training_figure(logs, fig_dir / "training-loss.png").name if logs else None
    index = report_dir / "index.html"
    write_text(index, render(study, figures, title=title, sample_pages=sample_pages, training=(logs, train_fig)))
    keep = {f.name for f in figures} | {train_fig}
    for old in fig_dir.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    return index
