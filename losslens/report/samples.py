"""Per-task item pages of the report: for each task with stored per-item records (`--log-samples`,
on in ladders), `report/samples/task-<i>.html` shows every checkpoint's items — gold, the model's
choice, each choice's log-likelihood, the generation — so a surprising point on a curve can be read
item by item. The task's section of index.html links to its page; each checkpoint is an anchor."""

from __future__ import annotations

from html import escape
from pathlib import Path

from losslens.io import write_text

MAX_ITEMS = 200  # per checkpoint on the page; `losslens results --samples --csv` has them all


def _anchor(model: str, step) -> str:
    return "ckpt-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}-{step}")


def _page(task: str, df, css: str) -> str:
    parts, nav = [], []
    for (model, step), g in df.groupby(["model", "step"], sort=True):
        anchor = _anchor(model, step)
        right = g["correct"].dropna()
        score = f"{int(right.sum())}/{len(right)} right" if len(right) else ""
        nav.append(f'<a href="#{anchor}">{escape(model)}@{step}</a>')
        rows = []
        for r in g.head(MAX_ITEMS).itertuples():
            lps = " ".join(f"{x:.3f}" for x in r.logprobs)
            cells = [r.item or "", _s(r.gold), _s(r.choice), {True: "yes", False: "no"}.get(_b(r.correct), ""),
                     lps, r.generation or "", r.answer or "", r.reference or ""]
            rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        more = (f'<p class="meta">{len(g) - MAX_ITEMS} more: losslens results --samples --task {escape(task)} '
                f'--checkpoint {escape(model)}@{step}</p>') if len(g) > MAX_ITEMS else ""
        head = "".join(f"<th>{h}</th>" for h in ("item", "gold", "choice", "right", "log-likelihoods",
                                                  "generation", "answer", "reference"))
        parts.append(f'<h3 id="{anchor}">{escape(model)} step {step} <span class="meta">{score}</span></h3>'
                     f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{escape(task)}: items</title><style>{css}</style></head>\n<body>"
            f'<header><h1>{escape(task)}: items per checkpoint</h1><p class="meta"><a href="../index.html">'
            f"back to the report</a></p></header><nav>{''.join(nav)}</nav><main>{''.join(parts)}</main>"
            "</body></html>\n")


def _s(x) -> str:
    import pandas as pd

    return "" if x is None or pd.isna(x) else str(x)


def _b(x):
    import pandas as pd

    return None if x is None or pd.isna(x) else bool(x)


def write_sample_pages(report_dir: Path, study, tasks: list[str], css: str) -> dict[str, str]:
    """Write a page per task of `tasks` that has stored items; return {task: page path relative to
    report_dir}. Nothing (and {}) for a study not read from a store or a store without items."""
    from losslens.store import Store

    out_dir = Path(report_dir) / "samples"
    pages: dict[str, str] = {}
    path = getattr(study.table, "path", None)
    if getattr(study.table, "source", None) == "db" and path and Path(path).is_file():
        with Store(path, create=False) as st:
            models = set(study.table.df["model"])
            for i, task in enumerate(tasks):
                df = st.samples(task=task)
                df = df[df["model"].isin(models)]
                if df.empty:
                    continue
                name = f"task-{i}.html"
                write_text(out_dir / name, _page(task, df, css))
                pages[task] = f"samples/{name}"
    keep = {Path(p).name for p in pages.values()}
    for old in out_dir.glob("task-*.html") if out_dir.is_dir() else []:
        if old.name not in keep:
            old.unlink()
    return pages
