"""Paper-style figures with matplotlib (Agg backend, files only).

Per (task, metric): performance against the loss axis (points coloured by model size, a line through
each run's checkpoints, the chance level dashed, eta and its interval shaded for emergent tasks) and the
same points against compute C = 6ND. Once per table: the scaling-law fit, if there is one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib

if "IPython" not in sys.modules:  # files only; a notebook keeps its own (inline) backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import cm, colors  # noqa: E402

from losslens.io import atomic_open  # noqa: E402


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "task"


def layout(fig):
    fig.subplots_adjust(left=0.12, right=0.8, bottom=0.13, top=0.92)  # room for the size key on the right
    return fig


def save(fig, path: Path) -> Path:
    layout(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path


def size_colours(params: np.ndarray):
    norm = colors.LogNorm(vmin=params.min(), vmax=max(params.max(), params.min() * 1.0001))
    return norm, cm.viridis


def human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def size_key(fig, ax, params: np.ndarray, norm, cmap) -> None:
    """A legend entry per model size when there are few sizes (as in the paper), else a colour bar."""
    sizes = np.unique(params)
    if len(sizes) <= 8:
        handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(norm(n)), label=f"N={human(n)}")
                   for n in sizes]
        fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    else:  # log colour scale, ticked at five sizes in readable units (20M, not 2x10^7)
        bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="parameters N")
        ticks = np.geomspace(sizes[0], sizes[-1], 5)
        bar.ax.minorticks_off()
        bar.set_ticks(ticks, labels=[human(n) for n in ticks])


def plot_runs(ax, sub, x_col: str, norm, cmap):
    """One line per run through its checkpoints (ordered by tokens), points coloured by N."""
    for _, run in sub.sort_values("tokens").groupby("model", sort=False):
        colour = cmap(norm(run["params"].iloc[0]))
        ax.plot(run[x_col], run["value"], "-", color=colour, alpha=0.45, lw=1)
        ax.scatter(run[x_col], run["value"], color=colour, s=14, zorder=3, edgecolors="none")


def draw_task(sub, task_report, x_label: str):
    """Performance vs loss for one (task, metric); eta band when the verdict is emergent."""
    e = task_report.emergence
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    norm, cmap = size_colours(sub["params"].to_numpy(float))
    plot_runs(ax, sub, "loss", norm, cmap)
    if e.chance is not None:
        ax.axhline(e.chance, ls="--", color="grey", lw=1, label="chance")
    if e.verdict == "emergent" and e.eta is not None:
        if e.eta_ci:
            ax.axvspan(*e.eta_ci, color="tab:red", alpha=0.15, label="eta 95% CI")
        ax.axvline(e.eta, color="tab:red", lw=1.2, label=f"eta = {e.eta:.3g}")
        grid = np.linspace(sub["loss"].min(), sub["loss"].max(), 200)
        ax.plot(grid, e.curve(grid), color="black", lw=1, alpha=0.7, label="Eq. 3 fit")
    ax.invert_xaxis()  # as in the paper: lower loss (better models) to the right
    ax.set_xlabel(x_label)
    ax.set_ylabel(task_report.metric)
    ax.set_title(f"{task_report.task}: {e.verdict}", fontsize=10)
    size_key(fig, ax, sub["params"].to_numpy(float), norm, cmap)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    return layout(fig)


def task_figure(sub, task_report, x_label: str, path: Path) -> Path:
    return save(draw_task(sub, task_report, x_label), path)


def draw_compute(sub, task_report):
    """The same points against training compute C = 6ND (log scale)."""
    sub = sub.assign(compute=6.0 * sub["params"] * sub["tokens"])
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    norm, cmap = size_colours(sub["params"].to_numpy(float))
    plot_runs(ax, sub, "compute", norm, cmap)
    if task_report.emergence.chance is not None:
        ax.axhline(task_report.emergence.chance, ls="--", color="grey", lw=1, label="chance")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOP)")
    ax.set_ylabel(task_report.metric)
    ax.set_title(f"{task_report.task} against compute", fontsize=10)
    size_key(fig, ax, sub["params"].to_numpy(float), norm, cmap)
    return layout(fig)


def compute_figure(sub, task_report, path: Path) -> Path:
    return save(draw_compute(sub, task_report), path)


def draw_same_loss(sub, same_loss):
    """Performance against loss (left) and against compute (right), points coloured by model size: the
    same-loss test asks whether the runs fall on one curve on the left but not on the right."""
    sub = sub.assign(compute=6.0 * sub["params"] * sub["tokens"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), sharey=True)
    norm, cmap = size_colours(sub["params"].to_numpy(float))
    plot_runs(left, sub, "loss", norm, cmap)
    plot_runs(right, sub, "compute", norm, cmap)
    left.invert_xaxis()
    left.set_xlabel("loss")
    left.set_ylabel(same_loss.metric)
    right.set_xscale("log")
    right.set_xlabel("training compute C = 6ND (FLOP)")
    held = "holds" if same_loss.holds else "fails" if same_loss.holds is False else "untested"
    collapse = {True: "collapses", False: "does not collapse", None: "untested"}[same_loss.compute_collapses]
    left.set_title(f"{same_loss.task}: same loss {held}", fontsize=10)
    right.set_title(f"compute {collapse}", fontsize=10)
    size_key(fig, right, sub["params"].to_numpy(float), norm, cmap)
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.13, top=0.9, wspace=0.08)
    return fig


def draw_backtest(sub, backtest, x_label: str = "loss"):
    """The backtest: points above the cut (fitted; with `sub`), the held-out points below it and their
    predictions, and the cut."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if sub is not None:
        fitted = sub[sub["loss"] > backtest.cut]
        ax.scatter(fitted["loss"], fitted["value"], s=14, color="tab:blue", edgecolors="none", label="fitted")
    if backtest.test_loss is not None and len(backtest.test_loss):
        order = np.argsort(backtest.test_loss)
        ax.scatter(backtest.test_loss, backtest.test_value, s=14, color="tab:orange", edgecolors="none",
                   label="held out")
        ax.plot(backtest.test_loss[order], backtest.test_pred[order], color="black", lw=1,
                label=f"predicted ({backtest.form})")
    if np.isfinite(backtest.cut):
        ax.axvline(backtest.cut, ls=":", color="grey", lw=1, label="cut")
    ax.invert_xaxis()
    ax.set_xlabel(x_label)
    ax.set_ylabel(backtest.metric)
    ax.set_title(f"{backtest.task}: {backtest.verdict.replace('_', ' ')}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    return layout(fig)


def draw_scaling_law(points, law):
    """Observed losses against compute, coloured by N, with the fitted law L(N, D) along five model sizes
    (over the token range seen at about that size) and its compute-optimal frontier (dashed)."""
    N, D, L = (points[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    C = 6 * N * D
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    norm, cmap = size_colours(N)
    ax.scatter(C, L, c=cmap(norm(N)), s=12, edgecolors="none", zorder=3)
    for n in np.geomspace(N.min(), N.max(), 5):
        near = (N >= n / 1.6) & (N <= n * 1.6)
        if not near.any():
            continue
        d = np.geomspace(D[near].min(), D[near].max(), 60)
        ax.plot(6 * n * d, law.predict(np.full_like(d, n), d), color=cmap(norm(n)), lw=1, alpha=0.8)
    if hasattr(law, "compute_optimal"):
        c = np.geomspace(C.min(), C.max(), 100)
        n_opt, d_opt = law.compute_optimal(c)
        ax.plot(c, law.predict(n_opt, d_opt), "k--", lw=1, label="compute-optimal")
        ax.legend(fontsize=7, loc="upper right")
    q = law.to_dict()
    if all(k in q for k in ("A", "B", "E", "alpha", "beta")):
        ax.set_title(f"L = {q['E']:.3g} + {q['A']:.3g}/N^{q['alpha']:.3g} + {q['B']:.3g}/D^{q['beta']:.3g}",
                     fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOP)")
    ax.set_ylabel("loss")
    size_key(fig, ax, N, norm, cmap)
    return layout(fig)


def scaling_figure(points, law, path: Path) -> Path:
    return save(draw_scaling_law(points, law), path)


def write_figures(report, table, outdir) -> list[Path]:
    """All figures of an analysis into `outdir`; returns the paths written."""
    from losslens.analysis.pipeline import scaling_points

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    groups = dict(iter(table.groups()))
    for t in report.tasks:
        sub = groups[(t.task, t.metric)]
        stem = slug(f"{t.task}-{t.metric}")
        written.append(task_figure(sub, t, table.x_label, outdir / f"{stem}.png"))
        written.append(compute_figure(sub, t, outdir / f"{stem}-compute.png"))
    points = scaling_points(table)
    if report.scaling_law is not None and points is not None:
        written.append(scaling_figure(points, report.scaling_law, outdir / "scaling_law.png"))
    return written
