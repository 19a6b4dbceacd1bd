"""The report's figures: the analysis' own paper-style figures (`losslens.analysis.figures`) for every
(task, metric) on each axis the study has, plus the scaling law drawn against tokens.

Every figure is a PNG under one folder, written atomically; `write_study_figures` returns what it drew
as `Figure` records, so the page links exactly the files that exist.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from losslens.analysis.figures import (
    compute_figure,
    plt,
    save,
    scaling_figure,
    size_colours,
    size_key,
    slug,
    task_figure,
)
from losslens.analysis.pipeline import scaling_points

# The axes a (task, metric) is drawn against, in the order the page shows them.
AXES = ("loss", "other", "compute")


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str            # file name inside the figures folder
    axis: str            # loss | other | compute | scaling-tokens | scaling-compute
    task: str | None = None
    metric: str | None = None


def scaling_tokens_figure(points, law, path: Path) -> Path:
    """Loss against tokens seen, one colour per model size, with the fitted L(N, D) along each size's
    token range (at most 8 curves: with more sizes, 5 sizes spread over the range)."""
    N, D, L = (points[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    norm, cmap = size_colours(N)
    ax.scatter(D, L, c=cmap(norm(N)), s=12, edgecolors="none", zorder=3)
    sizes = np.unique(N)
    curves = sizes if len(sizes) <= 8 else np.geomspace(N.min(), N.max(), 5)
    for n in curves:
        near = (N >= n / 1.6) & (N <= n * 1.6)
        if not near.any():
            continue
        d = np.geomspace(D[near].min(), D[near].max(), 60)
        ax.plot(d, law.predict(np.full_like(d, n), d), color=cmap(norm(n)), lw=1.2, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen D")
    ax.set_ylabel("loss")
    ax.set_title(f"fitted L(N, D) per model size ({len(L)} points)", fontsize=9)
    size_key(fig, ax, N, norm, cmap)
    return save(fig, path)


def _unique_name(stem: str, taken: set[str]) -> str:
    """`stem.png`, or `stem-2.png`, ... when two (task, metric) slugs collide."""
    name, i = f"{stem}.png", 1
    while name in taken:
        i += 1
        name = f"{stem}-{i}.png"
    taken.add(name)
    return name


def write_study_figures(study, fig_dir: Path) -> list[Figure]:
    """Draw every figure of the study into `fig_dir`; return them in page order."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    taken: set[str] = set()
    groups = dict(iter(study.table.groups()))
    other_groups = dict(iter(study.other_table.groups())) if study.other_table is not None else {}
    other_tasks = {(t.task, t.metric): t for t in study.other_report.tasks} if study.other_report else {}
    for t in study.report.tasks:
        sub = groups[(t.task, t.metric)]
        stem = slug(f"{t.task}-{t.metric}")
        name = _unique_name(stem, taken)
        task_figure(sub, t, study.table.x_label, fig_dir / name)
        figures.append(Figure(name, "loss", t.task, t.metric))
        other = other_tasks.get((t.task, t.metric))
        if other is not None and (t.task, t.metric) in other_groups:
            name = _unique_name(f"{stem}-other", taken)
            task_figure(other_groups[(t.task, t.metric)], other, study.other_table.x_label, fig_dir / name)
            figures.append(Figure(name, "other", t.task, t.metric))
        name = _unique_name(f"{stem}-compute", taken)
        compute_figure(sub, t, fig_dir / name)
        figures.append(Figure(name, "compute", t.task, t.metric))
    points = scaling_points(study.table)
    law = study.report.scaling_law
    if law is not None and points is not None:
        for axis, draw in (("scaling-tokens", scaling_tokens_figure), ("scaling-compute", scaling_figure)):
            name = _unique_name(axis.replace("-", "_"), taken)
            draw(points, law, fig_dir / name)
            figures.append(Figure(name, axis))
    return figures
