"""Regenerate docs/case-studies.md's figures and numbers from the published data in ../shared/data.

    python scripts/case_studies.py [--data ../shared/data] [--out docs/figures/case-studies]

Runs the losslens analysis (the same calls, seeds and resampling counts as `losslens analyze`) on the
Gadre et al. testbed, the OLMo ladder and the Pythia evals, writes the figures as PNG and every number
the doc quotes to numbers.json. tests/test_case_studies.py recomputes the cheap ones and checks the doc
against that file. About 2 minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from losslens.analysis import figures  # noqa: E402
from losslens.analysis.emergence import EmergenceConfig, analyze_emergence  # noqa: E402
from losslens.analysis.pipeline import analyze  # noqa: E402
from losslens.analysis.predict import backtest, olmo_target_errors  # noqa: E402
from losslens.analysis.same_loss import SameLossConfig, analyze_same_loss  # noqa: E402
from losslens.analysis.sources import load_source  # noqa: E402
from losslens.analysis.table import TidyTable  # noqa: E402
from losslens.io import (
    jsonable,  # noqa: E402
    write_json,  # noqa: E402
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "docs" / "figures" / "case-studies"
SEED, BOOTSTRAP, PERMUTATIONS = 0, 1000, 99  # the CLI's defaults: the doc's numbers are `losslens analyze`'s

# Representative Gadre tasks for the per-task figures: smooth, emergent, rising late, never leaving chance.
GADRE_EXAMPLES = ("piqa", "bigbench_cs_algorithms", "squad", "mmlu")
GADRE_AGGREGATES = ("avg_46", "avg_17_subset")
CORPORA = {"c4_original": "C4", "rpj": "RedPajama", "rw_original": "RefinedWeb"}
CORPUS_TASKS = ("squad", "jeopardy", "bigbench_qa_wikidata", "lambada_openai", "coqa", "arc_easy",
                "hellaswag", "piqa")
OLMO_FIG_TASKS = ("mmlu", "hellaswag", "arc_challenge", "socialiqa")
PYTHIA_TASKS = ("arc_easy", "arc_challenge", "piqa", "sciq", "winogrande", "mmlu_macro_avg", "logiqa", "wsc")
PYTHIA_FIG_TASKS = ("arc_easy", "arc_challenge")


# ----------------------------------------------------------------------------- helpers


def r(x, nd=4):
    """A number for the JSON, rounded (None stays None)."""
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def category(t) -> str:
    """The verdict, with `inconclusive` split by its reason code (emergence.REASONS)."""
    e = t.emergence
    return e.verdict if e.verdict != "inconclusive" else e.reason_code


def failing_covariates(s) -> list[str]:
    return [f"{t.name} ({'+' if t.coef > 0 else '-'})" for t in s.tests if t.axis == "loss" and t.significant]


def size_test(s, name="log_params", axis="loss") -> dict:
    t = s.test(axis, name)
    return None if t is None else {"improvement": r(t.improvement, 3), "ci": [r(c, 3) for c in t.ci] if t.ci else None,
                                   "p": r(t.p_value, 3), "significant": t.significant, "coef": r(t.coef, 5)}


def task_numbers(t) -> dict:
    e, s = t.emergence, t.same_loss
    return {"verdict": e.verdict, "reason_code": e.reason_code, "chance": r(e.chance, 4),
            "chance_source": e.chance_source, "lrt_p": r(e.lrt_p, 4), "q_value": r(e.q_value, 4),
            "eta": r(e.eta, 3), "eta_ci": [r(c, 3) for c in e.eta_ci] if e.eta_ci else None,
            "spearman": r(s.spearman, 3), "r2_loss": r(s.r2_loss, 3), "r2_compute": r(s.r2_compute, 3),
            "compute_excess": r(s.compute_excess, 3), "compute_collapses": s.compute_collapses, "holds": s.holds,
            "log_params": size_test(s), "log_tokens": size_test(s, "log_tokens"),
            "backtest": t.backtest.verdict if t.backtest is not None else None}


# ----------------------------------------------------------------------------- Gadre et al.


def gadre_case(data: Path, out: Path) -> dict:
    table = load_source("gadre", data / "gadre_overtraining")
    report = analyze(table, seed=SEED, bootstrap=BOOTSTRAP, permutations=PERMUTATIONS)
    tasks = [t for t in report.tasks if t.task not in GADRE_AGGREGATES]
    values = table.df.groupby("task")["value"]
    per_task = {}
    for t in tasks:
        e = t.emergence
        per_task[t.task] = {**task_numbers(t), "category": category(t), "trend_p": r(e.trend_p, 6),
                            "delta_bic": r(e.delta_bic, 1), "high_mean": r(e.high.mean, 4),
                            "low_mean": r(e.low.mean, 4),
                            "value_range": [r(values.min()[t.task], 4), r(values.max()[t.task], 4)]}
    counts = {v: sum(p["verdict"] == v for p in per_task.values()) for v in ("emergent", "smooth", "not_emerged",
                                                                                 "inconclusive")}
    categories = {cat: sorted(n for n, p in per_task.items() if p["category"] == cat) for cat in CATEGORY_LABELS}
    categories = {cat: names for cat, names in categories.items() if names}
    unlabelled = {p["category"] for p in per_task.values()} - set(CATEGORY_LABELS)
    assert not unlabelled, f"no CATEGORY_LABELS entry for {sorted(unlabelled)}"
    alpha, delta = EmergenceConfig().alpha, EmergenceConfig().delta
    rising = [t.task for t in tasks if t.emergence.trend_p is not None and t.emergence.trend_p < alpha]
    fails = {t.task: failing_covariates(t.same_loss) for t in tasks if t.same_loss.holds is False}

    corpora = corpus_numbers(table, per_task, rising)
    gadre_figures(table, report, per_task, out)
    targets = report.targets.to_dict()["targets"]
    return {
        "n_tasks": len(tasks), "n_models": int(table.df["model"].nunique()), "counts": counts,
        "categories": categories, "per_task": per_task,
        "emergent": {n: {"eta": p["eta"], "eta_ci": p["eta_ci"]} for n, p in per_task.items()
                     if p["verdict"] == "emergent"},
        "rising": rising,
        # "never leave chance": even the lowest-loss third of the models is within delta of chance on average
        "near_chance_at_lowest_losses": sorted(n for n, p in per_task.items() if p["low_mean"] < delta),
        "same_loss": {"holds": sum(p["holds"] is True for p in per_task.values()), "fails": fails,
                      "rising_holds": sum(per_task[n]["holds"] is True for n in rising),
                      "loss_beats_compute": corpora.pop("loss_beats_compute"), "by_corpus": corpora.pop("by_corpus")},
        **corpora,
        "aggregates": {a: task_numbers(report.task(a)) for a in GADRE_AGGREGATES},
        "reproduction": [{"model": t["model"], "loss_rel_error_pct": r(100 * t["loss_rel_error"]),
                          "error_rel_error_pct": r(100 * t["error_rel_error"])} for t in targets],
    }


def corpus_numbers(table: TidyTable, per_task: dict, rising: list[str]) -> dict:
    """Does the training corpus matter at equal C4 loss? The x-axis is every model's loss on C4's text,
    in-distribution for the C4-trained models only."""
    # Loss or compute as the axis that lines the models up: across all corpora, and within each one.
    r2_cfg = SameLossConfig(bootstrap=0, permutations=0)  # R^2 only: no intervals needed
    by_corpus = {}
    for corpus in CORPORA:
        part = table.df[table.df["family"] == corpus]
        by_corpus[corpus] = {}
        for i, task in enumerate(rising):
            s = analyze_same_loss(part[part["task"] == task].reset_index(drop=True), r2_cfg, seed=SEED + i)
            by_corpus[corpus][task] = {"r2_loss": r(s.r2_loss, 3), "r2_compute": r(s.r2_compute, 3)}
    loss_better = {"all_corpora": sum(per_task[n]["r2_loss"] > per_task[n]["r2_compute"] for n in rising)}
    for corpus, vals in by_corpus.items():
        loss_better[corpus] = sum(v["r2_loss"] > v["r2_compute"] for v in vals.values())
    tests = {task: corpus_beyond_loss(table, task, seed=SEED + i) for i, task in enumerate(rising)}
    # How much higher a model's C4 loss is when it was trained elsewhere (same shape and token budget).
    pivot = table.extras["models"].pivot_table(index=["shape", "multiplier"], columns="dataset", values="loss")
    pivot = pivot.dropna()
    return {"loss_beats_compute": loss_better, "by_corpus": by_corpus, "c4_trained_beyond_loss": tests,
            "c4_trained_significant": sorted(t for t, v in tests.items() if v["significant"]),
            "corpus_residual_points": corpus_residuals(table, CORPUS_TASKS),
            "c4_loss_offset_vs_c4_trained": {c: r(float((pivot[c] - pivot["c4_original"]).median()), 3)
                                             for c in ("rpj", "rw_original")}}


def corpus_beyond_loss(table: TidyTable, task: str, *, seed: int) -> dict:
    """The same-loss test's machinery with the covariate "trained on C4" (0/1) in place of log N: does the
    training corpus explain held-out models beyond a monotone curve in C4 loss?"""
    from losslens.analysis import stats as st
    from losslens.analysis.same_loss import Folds, covariate_test

    cfg = SameLossConfig(bootstrap=BOOTSTRAP, permutations=PERMUTATIONS)
    sub = table.df[table.df["task"] == task]
    rng = np.random.default_rng(seed)
    codes, n_runs = st.group_codes(sub["model"])
    x, y = sub["loss"].to_numpy(float), sub["value"].to_numpy(float)
    folds = Folds(x, st.grouped_folds(codes, n_runs, cfg.folds, rng))
    z = (sub["family"] == "c4_original").to_numpy(float)
    t = covariate_test("loss", x, y, z, "c4_trained", codes, n_runs, folds, folds.errors(y), cfg, rng)
    return {"improvement": r(t.improvement, 3), "ci": [r(c, 3) for c in t.ci], "p": r(t.p_value, 3),
            "significant": t.significant, "coef_points": r(100 * t.coef, 2)}


def corpus_residuals(table: TidyTable, tasks) -> dict:
    """Mean accuracy (points) of each corpus's models above or below one monotone curve in C4 loss fitted to
    all 104 models: how much the training corpus matters at equal C4 loss."""
    from losslens.analysis.same_loss import MonotoneFit

    out = {}
    for task in tasks:
        sub = table.df[table.df["task"] == task]
        mf = MonotoneFit(sub["loss"].to_numpy(float))
        y = sub["value"].to_numpy(float)
        res = y - mf.iso(y)[mf.inv]
        out[task] = {c: r(100 * res[(sub["family"] == c).to_numpy()].mean(), 2) for c in CORPORA}
    return out


def gadre_figures(table, report, per_task, out: Path) -> None:
    groups = dict(iter(table.groups()))
    for name in GADRE_EXAMPLES:
        t = report.task(name, "acc")
        figures.task_figure(groups[(name, "acc")], t, table.x_label, out / f"gadre-{name}.png")
    task_map_figure(per_task, out / "gadre-task-map.png")
    corpora_figure(table, "squad", out / "gadre-corpora.png")


def task_map_figure(per_task: dict, path: Path) -> None:
    """Each task's normalised performance at the highest vs the lowest losses, by verdict (category)."""
    style = {"smooth": ("tab:green", "o"), "emergent": ("tab:red", "*"), "not_emerged": ("grey", "o"),
             "smooth_alternative_fits": ("tab:blue", "o"), "not_significant_after_fdr": ("tab:pink", "*"),
             "plateau_not_at_chance": ("tab:orange", "s"), "plateau_too_noisy": ("tab:brown", "s"),
             "rise_too_small": ("tab:olive", "v"), "presence_too_noisy": ("tab:cyan", "v"),
             "no_rise": ("tab:purple", "D")}
    style.update({cat: ("black", "P") for cat in {p["category"] for p in per_task.values()} - set(style)})
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for cat, (colour, marker) in style.items():
        pts = [(p["high_mean"], p["low_mean"], p["holds"]) for p in per_task.values() if p["category"] == cat]
        if not pts:
            continue
        x, y, holds = map(np.array, zip(*pts))
        holds = np.array([h is not False for h in holds], bool)  # hollow only where same-loss fails
        ax.scatter(x[holds], y[holds], color=colour, marker=marker, s=40, label=f"{cat.replace('_', ' ')} ({len(pts)})")
        ax.scatter(x[~holds], y[~holds], facecolors="none", edgecolors=colour, marker=marker, s=40)
    for name, p in per_task.items():
        if p["low_mean"] > 0.15 or p["verdict"] == "emergent":
            ax.annotate(name.replace("bigbench_", "bb_"), (p["high_mean"], p["low_mean"]), fontsize=6,
                        xytext=(4, -2), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.6, ls="--")
    ax.axhline(EmergenceConfig().delta, color="grey", lw=0.6, ls=":")
    ax.text(-0.145, EmergenceConfig().delta + 0.006, "5% of the way to perfect", fontsize=6, color="grey")
    ax.set_xlim(-0.15, 0.2)
    ax.axvline(0, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("normalised performance, highest-loss third of models (0 = chance)")
    ax.set_ylabel("normalised performance, lowest-loss third")
    ax.set_title("Gadre et al., 46 tasks (hollow: size or tokens matter beyond loss)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def corpora_figure(table, task: str, path: Path) -> None:
    """One task against C4 loss and against compute, coloured by training corpus."""
    sub = table.df[table.df["task"] == task]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True)
    for corpus, colour in zip(CORPORA, ("tab:blue", "tab:orange", "tab:green")):
        part = sub[sub["family"] == corpus]
        axes[0].scatter(part["loss"], part["value"], s=14, color=colour, label=CORPORA[corpus])
        axes[1].scatter(6 * part["params"] * part["tokens"], part["value"], s=14, color=colour)
    axes[0].invert_xaxis()
    axes[0].set_xlabel("C4 eval loss (nats/token)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("training compute 6ND (FLOP)")
    axes[0].set_ylabel(f"{task} accuracy")
    axes[0].legend(fontsize=7, title="trained on", title_fontsize=7)
    fig.suptitle("Gadre et al.: at equal C4 loss the C4-trained models score lower", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    from losslens.io import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- OLMo ladder


def olmo_case(data: Path, out: Path) -> dict:
    table = load_source("olmo", data / "olmo_ladder")
    runs = {avg: olmo_target_errors(table, moving_avg=avg) for avg in (5, 1)}
    res = runs[5]
    errors = {}
    for avg, rr in runs.items():
        errors[str(avg)] = {p.task: {} for p in rr.predictions}
        for p in rr.predictions:
            errors[str(avg)][p.task][p.target] = r(p.abs_error, 2)
    detail = {}
    for p in res.predictions:
        step2_only = 100 * abs(float(res.fits[p.task].step2.predict(p.task_loss)) - p.accuracy)
        detail.setdefault(p.task, {})[p.target] = {
            "accuracy": r(100 * p.accuracy, 1), "accuracy_pred": r(100 * p.accuracy_pred, 1),
            "task_loss": r(p.task_loss, 3), "task_loss_pred": r(p.task_loss_pred, 3),
            "error": r(p.abs_error, 2), "error_step2_only": r(step2_only, 2)}
    claim, others = list(res.claim_tasks), [t for t in detail if t not in res.claim_tasks]
    olmo_figure(table, res, out / "olmo-two-step.png")
    report = analyze(table, seed=SEED, bootstrap=BOOTSTRAP, permutations=PERMUTATIONS)
    return {
        "counts": report.counts(), "n_pairs": len(report.tasks),
        "verdicts": {f"{t.task}/{t.metric}": {"verdict": t.verdict, "reason_code": t.emergence.reason_code,
                                              "chance": r(t.emergence.chance, 4),
                                              "chance_source": t.emergence.chance_source,
                                              "q_value": r(t.emergence.q_value, 4)} for t in report.tasks},
        "emergent": {f"{t.task}/{t.metric}": {"eta": r(t.emergence.eta, 2),
                                              "eta_ci": [r(c, 2) for c in t.emergence.eta_ci]}
                     for t in report.tasks if t.verdict == "emergent"},
        "errors": errors, "detail": detail, "claim_tasks": claim,
        "claim_holds": [t for t in claim if all(v <= 2.0 for v in errors["5"][t].values())],
        "others_mean_error": {avg: r(np.mean([v for t in others for v in errors[avg][t].values()]), 2)
                              for avg in errors},
    }


def olmo_figure(table, res, path: Path) -> None:
    """Step 1 (task loss from N, D) and step 2 (accuracy from task loss) for a few tasks, with the targets."""
    df = table.df
    ladder, targets = table.extras["paper_ladder"], table.extras["paper_targets"]
    fig, axes = plt.subplots(2, len(OLMO_FIG_TASKS), figsize=(3.0 * len(OLMO_FIG_TASKS), 5.6))
    norm, cmap = figures.size_colours(df.loc[df["model"].isin(ladder), "params"].to_numpy(float))
    for j, task in enumerate(OLMO_FIG_TASKS):
        fit = res.fits[task]
        bpb = df[(df["task"] == task) & (df["metric"] == "bpb")]
        acc = df[(df["task"] == task) & (df["metric"].isin(["acc_norm", "acc"]))]
        top, bottom = axes[0, j], axes[1, j]
        for model, run in bpb[bpb["model"].isin(ladder)].groupby("model"):
            n, colour = run["params"].iloc[0], cmap(norm(run["params"].iloc[0]))
            last = run.sort_values("tokens").iloc[-res.moving_avg:]
            top.scatter(last["tokens"].iloc[-1], last["value"].mean(), color=colour, s=14, zorder=3)
            pair = run.merge(acc[acc["model"] == model][["tokens", "value"]], on="tokens", suffixes=("", "_acc"))
            bottom.scatter(pair["value"], pair["value_acc"], color=colour, s=3, alpha=0.5, edgecolors="none")
        for n in sorted(set(bpb.loc[bpb["model"].isin(ladder), "params"])):
            d = np.geomspace(2e9, 6e12, 50)
            top.plot(d, fit.step1.predict(np.full_like(d, n), d), color=cmap(norm(n)), lw=0.8, alpha=0.7)
        for label in targets:
            p = next(q for q in res.predictions if q.task == task and q.target == label)
            d = np.geomspace(2e9, 6e12, 50)
            top.plot(d, fit.step1.predict(np.full_like(d, p.params), d), color="black", lw=0.8, ls=":")
            top.scatter(p.tokens, p.task_loss, marker="*", s=70, color="black", zorder=4)
            top.scatter(p.tokens, p.task_loss_pred, marker="o", s=30, facecolors="none", edgecolors="red", zorder=4)
            bottom.scatter(p.task_loss, p.accuracy, marker="*", s=70, color="black", zorder=4)
            bottom.scatter(p.task_loss_pred, p.accuracy_pred, marker="o", s=30, facecolors="none",
                           edgecolors="red", zorder=4)
        grid = np.linspace(0.9 * bpb["value"].min(), bpb["value"].max(), 100)
        bottom.plot(grid, fit.step2.predict(grid), color="black", lw=1)
        top.set_xscale("log")
        top.set_title(task, fontsize=9)
        top.set_xlabel("tokens D", fontsize=8)
        bottom.set_xlabel("task loss (bits/byte)", fontsize=8)
        bottom.invert_xaxis()
        if j == 0:
            top.set_ylabel("step 1: task loss (bpb)", fontsize=8)
            bottom.set_ylabel("step 2: accuracy", fontsize=8)
    handles = [plt.Line2D([], [], marker="*", ls="", color="black", ms=9, label="7B / 13B measured"),
               plt.Line2D([], [], marker="o", ls="", mfc="none", mec="red", label="7B / 13B predicted")]
    handles += [plt.Line2D([], [], marker="o", ls="", color=cmap(norm(n)), label=f"ladder N={figures.human(n)}")
                for n in sorted(set(df.loc[df["model"].isin(ladder), "params"]))]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


# ----------------------------------------------------------------------------- Pythia


def pythia_case(data: Path, out: Path) -> dict:
    tables, reports = {}, {}
    for proxy in ("lambada", "chinchilla"):
        tables[proxy] = load_source("pythia", data / "pythia_evals", proxy=proxy)
        reports[proxy] = analyze(tables[proxy], seed=SEED, bootstrap=BOOTSTRAP, permutations=PERMUTATIONS)
    numbers = {}
    for proxy, rep in reports.items():
        numbers[proxy] = {
            "counts": rep.counts(),
            "tasks": {f"{t.task}/{t.metric}": task_numbers(t) for t in rep.tasks},
            "holds": sum(t.same_loss.holds is True for t in rep.tasks), "n_pairs": len(rep.tasks),
            "compute_worse": sum(t.same_loss.compute_excess_ci is not None and t.same_loss.compute_excess_ci[0] > 0
                                 for t in rep.tasks),
        }
    pythia_figure(tables, out / "pythia-compute-vs-proxy.png")
    # When did the early checkpoints (steps 1-512) sit on the LAMBADA axis?
    lam = tables["lambada"].df
    early = lam[lam["step"] <= 512]
    return {**numbers, "early_lambada_nll_min": r(float(early["loss"].min()), 2),
            "final_lambada_nll_range": [r(float(lam.loc[lam["step"] == 143000, "loss"].min()), 2),
                                        r(float(lam.loc[lam["step"] == 143000, "loss"].max()), 2)]}


def pythia_figure(tables, path: Path) -> None:
    axes_spec = (("compute", "training compute 6ND (FLOP)"), ("lambada", "LAMBADA target-word NLL (proxy)"),
                 ("chinchilla", "Chinchilla-law loss L(N, D) (proxy)"))
    fig, axes = plt.subplots(len(PYTHIA_FIG_TASKS), 3, figsize=(11.0, 3.2 * len(PYTHIA_FIG_TASKS)), sharey="row")
    for i, task in enumerate(PYTHIA_FIG_TASKS):
        for j, (kind, label) in enumerate(axes_spec):
            ax = axes[i, j]
            df = tables["chinchilla" if kind == "compute" else kind].df
            sub = df[(df["task"] == task) & (df["metric"] == "acc")]
            if kind == "compute":
                sub = sub.assign(loss=6 * sub["params"] * sub["tokens"])
                ax.set_xscale("log")
            norm, cmap = figures.size_colours(sub["params"].to_numpy(float))
            figures.plot_runs(ax, sub, "loss", norm, cmap)
            ax.axhline(sub["chance"].iloc[0], ls="--", color="grey", lw=1)
            if kind != "compute":
                ax.invert_xaxis()
            ax.set_xlabel(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{task} accuracy (0-shot)", fontsize=8)
    figures.size_key(fig, axes[0, -1], tables["lambada"].df["params"].to_numpy(float), norm, cmap)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    _save(fig, path)


# ----------------------------------------------------------------------------- the two oddities


def oddities(data: Path) -> dict:
    chin = analyze(load_source("chinchilla", data / "epoch_chinchilla"), seed=SEED, bootstrap=0, permutations=0,
                   scaling_law=False)
    olmo = load_source("olmo", data / "olmo_ladder")
    index = {key: i for i, (key, _) in enumerate(olmo.groups())}  # analyze() seeds task i with SEED + i
    sub = dict(iter(olmo.groups()))[("piqa", "soft_choice_prob")].reset_index(drop=True)
    cfg = dataclasses.replace(EmergenceConfig(), bootstrap=BOOTSTRAP)
    e = analyze_emergence(sub, cfg, seed=SEED + index[("piqa", "soft_choice_prob")])
    above = sub[sub["loss"] >= e.eta]
    final = sub.groupby("model")["tokens"].max()
    frac = above["tokens"] / above["model"].map(final)
    acc = olmo.df[(olmo.df["task"] == "piqa") & (olmo.df["metric"] == "acc_norm")]
    acc_above = acc[acc["loss"] >= e.eta]
    trimmed = sub[sub["loss"] < 5.5].reset_index(drop=True)
    e_trim = analyze_emergence(trimmed, cfg, seed=SEED + index[("piqa", "soft_choice_prob")])
    default_cut = backtest(sub)
    return {
        "chinchilla": {"tasks": len(chin.tasks), "notes": chin.notes},
        "olmo_piqa_ccp": {
            "verdict": e.verdict, "eta": r(e.eta, 2), "eta_ci": [r(c, 2) for c in e.eta_ci],
            "power": r(e.fits[e.threshold_fit].params["p"], 2),
            "delta_bic": r(e.delta_bic, 1), "loss_max": r(float(sub["loss"].max()), 2),
            "value_min": r(float(sub["value"].min()), 4), "value_max": r(float(sub["value"].max()), 4),
            "n_above_eta": int(len(above)), "above_eta_value_range": [r(float(above["value"].min()), 4),
                                                                     r(float(above["value"].max()), 4)],
            "above_eta_fraction_of_run": [r(float(frac.min()), 3), r(float(frac.max()), 3)],
            "above_eta_tokens_max": float(above["tokens"].max()),
            "acc_norm_above_eta_mean": r(float(acc_above["value"].mean()), 3),
            "n_below_eta": int((sub["loss"] < e.eta).sum()),
            "n_below_eta_at_or_below_chance": int(((sub["loss"] < e.eta) & (sub["value"] <= 0.5)).sum()),
            "backtest_default": {"verdict": default_cut.verdict, "cut": r(default_cut.cut, 2)},
            "backtest_at_eta": backtest(sub, eta=e.eta).verdict,
            "without_loss_above_5_5": {"verdict": e_trim.verdict, "n_dropped": int(len(sub) - len(trimmed))},
        },
    }


# ----------------------------------------------------------------------------- what the doc quotes

CATEGORY_LABELS = {  # the verdict, with `inconclusive` split by its reason code (emergence.REASONS)
    "smooth": "smooth: rising, and more than delta above chance at the highest losses",
    "emergent": "emergent: absent above eta, present below it, and Eq. 3 beats every smooth curve (LRT)",
    "not_significant_after_fdr": "inconclusive: passes every test, but not after FDR control (BH q > 0.05)",
    "smooth_alternative_fits": "inconclusive: absent above eta and present below, but a smooth curve fits "
                               "about as well (LRT p >= 0.01)",
    "plateau_not_at_chance": "inconclusive: above eta measurably away from chance (by more than delta)",
    "plateau_too_noisy": "inconclusive: above eta not known to be within delta of chance",
    "rise_too_small": "inconclusive: below eta known to stay within delta of chance",
    "presence_too_noisy": "inconclusive: below eta not known to be more than delta above chance",
    "no_rise": "inconclusive: no significant rise, not known to be at chance",
    "too_few_losses_above_eta": "inconclusive: too few distinct losses above eta",
    "too_few_losses_below_eta": "inconclusive: too few distinct losses below eta",
    "one_run_on_a_side": "inconclusive: every point on one side of eta from one run",
    "no_chance_level": "inconclusive: no chance level",
    "too_few_losses": "inconclusive: too few distinct losses",
    "test_not_run": "inconclusive: emergence test not run (bootstrap 0)",
    "not_emerged": "not_emerged: the lowest-loss models are known to be within delta of chance",
}


def _pm(t: dict) -> str:
    """A covariate's improvement, starred when significant."""
    return f"{t['improvement']:+.3f}{'*' if t['significant'] else ''}"


def doc_snippets(n: dict) -> list[str]:
    """Every number docs/case-studies.md quotes, formatted as the doc writes it (tests check the doc has
    each). Table rows are whole lines."""
    g, o, py, odd = n["gadre"], n["olmo"], n["pythia"], n["oddities"]
    c, sl = g["counts"], g["same_loss"]
    out = [f"emergent {c['emergent']}, smooth {c['smooth']}, not_emerged {c['not_emerged']}, "
           f"inconclusive {c['inconclusive']}",
           f"{len(g['near_chance_at_lowest_losses'])} of the {g['n_tasks']} tasks",
           f"holds for {sl['holds']} of the {g['n_tasks']} tasks",
           f"{sl['rising_holds']} of the {len(g['rising'])} tasks that rise",
           f"{len(g['c4_trained_significant'])} of the {len(g['rising'])} rising tasks",
           f"loss is the better axis for {sl['loss_beats_compute']['all_corpora']} of the {len(g['rising'])}",
           "within one corpus, loss is the better axis for {c4_original}, {rpj} and {rw_original}".format(
               **sl["loss_beats_compute"]),
           "RedPajama +{rpj:.3f}, RefinedWeb +{rw_original:.3f}".format(**g["c4_loss_offset_vs_c4_trained"])]
    for cat, tasks in g["categories"].items():
        out.append(f"| {CATEGORY_LABELS[cat]} | {len(tasks)} | {', '.join(tasks)} |")
    for name, e in g["emergent"].items():
        out.append(f"`{name}` at eta {e['eta']:.2f} [{e['eta_ci'][0]:.2f}, {e['eta_ci'][1]:.2f}]")
    arithmetic = max(g["per_task"][t]["value_range"][1]
                     for t in ("simple_arithmetic_nospaces", "simple_arithmetic_withspaces"))
    out.append(f"never exceed {100 * arithmetic:.1f}% exact match")
    for name in ("squad", "mmlu", "hellaswag", "winogrande", "copa"):
        t = g["per_task"][name]
        out.append(f"`{name}`: Spearman {t['spearman']:.3f}, delta BIC {t['delta_bic']:.1f}, "
                   f"accuracy {t['value_range'][0]:.3f}-{t['value_range'][1]:.3f}")
    for name in sl["fails"]:
        t = g["per_task"][name]
        out.append(f"| {name} | {t['spearman']:+.3f} | {_pm(t['log_params'])} | {_pm(t['log_tokens'])} |")
    for name in g["c4_trained_significant"]:
        t = g["c4_trained_beyond_loss"][name]
        out.append(f"| {name} | {t['improvement']:+.3f} [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}] | "
                   f"{t['coef_points']:+.1f} |")
    for name, t in g["corpus_residual_points"].items():
        out.append(f"| {name} | {t['c4_original']:+.1f} | {t['rpj']:+.1f} | {t['rw_original']:+.1f} |")
    for row in g["reproduction"]:
        out.append(f"{row['loss_rel_error_pct']:.4f}% and {row['error_rel_error_pct']:.4f}%")

    d = o["detail"]
    for task, t in d.items():
        a, b = t["7B-4T"], t["13B-5T"]
        e1 = o["errors"]["1"][task]
        out.append(f"| {task} | {a['accuracy']:.1f} | {a['accuracy_pred']:.1f} | {a['error']:.2f} | "
                   f"{b['accuracy']:.1f} | {b['accuracy_pred']:.1f} | {b['error']:.2f} | "
                   f"{a['error_step2_only']:.2f} / {b['error_step2_only']:.2f} "
                   f"| {e1['7B-4T']:.2f} / {e1['13B-5T']:.2f} |")
    out.append(f"average {o['others_mean_error']['5']:.2f} (last row only: {o['others_mean_error']['1']:.2f})")
    oc = o["counts"]
    out.append(f"emergent {oc['emergent']}, smooth {oc['smooth']}, not_emerged {oc['not_emerged']}, "
               f"inconclusive {oc['inconclusive']}")

    lam, chin = py["lambada"], py["chinchilla"]
    for task in PYTHIA_TASKS:
        a, b = lam["tasks"][f"{task}/acc"], chin["tasks"][f"{task}/acc"]
        out.append(f"| {task} | {a['verdict']} | {a['r2_loss']:.3f} | {a['r2_compute']:.3f} | "
                   f"{1 + a['compute_excess']:.1f}x | "
                   f"{_pm(a['log_params'])} | {_pm(a['log_tokens'])} | {b['verdict']} | {b['r2_loss']:.3f} | "
                   f"{_pm(b['log_params'])} |")
    out += [f"holds for {lam['holds']} of {lam['n_pairs']}", f"holds for {chin['holds']} of {chin['n_pairs']}",
            f"{lam['compute_worse']} of the {lam['n_pairs']}", f"{chin['compute_worse']} of the {chin['n_pairs']}",
            f"LAMBADA NLL of {py['early_lambada_nll_min']:.1f} or more",
            f"{py['final_lambada_nll_range'][0]:.2f}-{py['final_lambada_nll_range'][1]:.2f}"]
    for proxy, name in (("lambada", "arc_challenge/acc"), ("chinchilla", "arc_challenge/acc"), ("lambada", "sciq/acc"),
                        ("lambada", "logiqa/acc_norm"), ("chinchilla", "lambada_openai/acc")):
        t = py[proxy]["tasks"][name]
        out.append(f"eta {t['eta']:.2f} [{t['eta_ci'][0]:.2f}, {t['eta_ci'][1]:.2f}]")

    q = odd["olmo_piqa_ccp"]
    out += [f"eta {q['eta']:.2f} [{q['eta_ci'][0]:.2f}, {q['eta_ci'][1]:.2f}]", f"power p = {q['power']:.2f}",
            f"{q['value_min']:.4f} to {q['value_max']:.4f}", f"{q['n_above_eta']} checkpoints",
            f"all but {q['n_below_eta_at_or_below_chance']} of the {q['n_below_eta']}",
            f"{100 * q['above_eta_fraction_of_run'][0]:.1f}-{100 * q['above_eta_fraction_of_run'][1]:.1f}%",
            f"cut {q['backtest_default']['cut']:.2f}", f"mean {q['acc_norm_above_eta_mean']:.3f}",
            f"dropping the {q['without_loss_above_5_5']['n_dropped']} checkpoints above loss 5.5"]
    return out


# ----------------------------------------------------------------------------- main


def run(data: Path = DATA, out: Path = OUT) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"settings": {"seed": SEED, "bootstrap": BOOTSTRAP, "permutations": PERMUTATIONS,
                            "data": "../shared/data"}}
    for name, step in (("gadre", gadre_case), ("olmo", olmo_case), ("pythia", pythia_case)):
        t0 = time.perf_counter()
        numbers[name] = step(data, out)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    numbers["oddities"] = oddities(data)
    numbers["figures"] = sorted(p.name for p in out.glob("*.png"))
    write_json(out / "numbers.json", jsonable(numbers))
    return numbers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    p.add_argument("--out", type=Path, default=OUT, help="figures and numbers.json (default docs/figures/case-studies)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"case_studies: no data folder {args.data}", file=sys.stderr)
        return 2
    run(args.data, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
