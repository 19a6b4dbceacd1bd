"""The study: a ladder's results store, analysed on two loss axes, and the paper's claims decided
from the data.

Axis 1 is the held-out loss on the whole validation corpus (the paper's pre-training loss). Axis 2
guards against circularity: text of a task's own genre is part of the corpus, so when an ability
appears the corpus loss falls *because* that genre got easier. The second axis is each checkpoint's
loss on the validation text of every *other* genre, so a threshold found there cannot come from the
task's own text.

`decide_claims(report, other)` turns both analyses into the five claims of `summary.json`
(docs/demo.md), each a `Claim` whose status is "holds", "fails" or "not testable here" (with the
reason: e.g. no emergent task to backtest, or a same-loss test too weak to decide):

    (a) smooth       at least one world task is smooth
    (b) emergent     one task is emergent under its discontinuous metric AND a continuous one
    (c) same_loss    for every smooth task the same-loss test could decide, performance at equal loss is
                     shown equivalent across sizes and token counts; compute as the x-axis leaves the
                     runs apart for most of them
    (d) backtest     the paper's claim 3: the emergent task is not predictable from the checkpoints above
                     its eta; a smooth one is predictable from its higher-loss checkpoints
    (e) other_genres the emergent verdict of (b) also holds on the other-genres axis

Nothing here is tuned to the demo: thresholds and labels all come from the analysis functions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from losslens.analysis.pipeline import AnalysisReport, analyze
from losslens.analysis.table import TidyTable, read_db, validate
from losslens.errors import InputError
from losslens.fmt import num
from losslens.io import jsonable, write_json

# Which metrics count as discontinuous (all-or-nothing per item) and which as continuous, by task type.
DISCONTINUOUS = {"multiple_choice": ("acc",), "generation": ("exact_match",)}
CONTINUOUS = {"multiple_choice": ("correct_choice_prob", "brier_sum", "brier_mean"),
              "generation": ("target_logprob", "token_edit_distance")}
OTHER_AXIS_LABEL = "held-out loss on the other genres (nats/token)"


@dataclasses.dataclass
class Study:
    table: TidyTable                  # x = held-out loss on the whole validation corpus
    report: AnalysisReport
    other_table: TidyTable | None     # x = held-out loss on the genres other than each task's own
    other_report: AnalysisReport | None
    summary: dict                     # summary.json: the claims (a)-(e) with their evidence (docs/demo.md)
    claims: list[Claim] | None = None  # the same claims, typed; from `summary` when not given

    def __post_init__(self):
        if self.claims is None:
            self.claims = claims_from_summary(self.summary)

    def write_summary(self, path) -> None:
        write_json(path, self.summary)


# ---------------------------------------------------------------- the other-genres axis


def task_genres(world_dir: Path) -> dict[str, str]:
    """task name -> the genre whose documents teach it, from the world manifest."""
    path = Path(world_dir) / "world.json"
    try:
        manifest = json.loads(path.read_text())
        return {t["name"]: t["genre"] for t in manifest["tasks"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"not a readable world manifest ({err})", field="tasks") from None


def genre_weights(world_dir: Path, heldout: pd.DataFrame) -> dict[str, float]:
    """Each genre's share of the validation text, in tokens: its file size in bytes times the tokens
    per byte measured on its scored sample, so that the other-genres loss is the loss on the validation
    corpus with one genre removed, not an unweighted mean over genres."""
    per_byte = heldout.assign(r=heldout["n_tokens"] / heldout["n_bytes"]).groupby("genre")["r"].mean()
    weights = {}
    for genre, rate in per_byte.items():
        path = Path(world_dir) / "val" / f"{genre}.txt"
        if not path.is_file():
            raise InputError(path, f"the store has held-out losses on val:{genre} but the world has no such "
                                   "validation file", field="world")
        weights[genre] = path.stat().st_size * float(rate)
    return weights


def other_genre_losses(heldout: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Per (model, step, excluded genre): the weighted mean loss of all the other genres."""
    h = heldout.assign(w=heldout["genre"].map(weights))
    h = h.assign(wl=h["w"] * h["nats_per_token"])
    total = h.groupby(["model", "step"])[["w", "wl"]].sum().rename(columns={"w": "w_all", "wl": "wl_all"})
    out = h.merge(total, left_on=["model", "step"], right_index=True)
    out["other_loss"] = (out["wl_all"] - out["wl"]) / (out["w_all"] - out["w"])
    return out[["model", "step", "genre", "other_loss"]]


def other_genre_table(table: TidyTable, heldout: pd.DataFrame, genres: dict[str, str],
                      weights: dict[str, float]) -> TidyTable | None:
    """The tidy table with each row's loss replaced by its checkpoint's loss on the other genres."""
    df = table.df.assign(genre=table.df["task"].map(genres))
    df = df[df["genre"].notna()]
    if df.empty:
        return None
    other = other_genre_losses(heldout, weights)
    before = len(df)
    df = df.merge(other, on=["model", "step", "genre"], how="inner")
    df = df.assign(loss=df["other_loss"]).drop(columns=["genre", "other_loss"])
    notes = ["each task's x is the loss on the genres other than its own"]
    if len(df) < before:
        notes.append(f"{before - len(df)} rows left out: no held-out loss on their task's genre (val:<genre>)")
    return TidyTable(validate(df, table.path), source=table.source, path=table.path,
                     x_label=OTHER_AXIS_LABEL, notes=notes)


def genre_losses(heldout: pd.DataFrame) -> pd.DataFrame:
    """The per-genre rows (corpora named `val:<genre>`) of the store's held-out losses, with `genre`."""
    df = heldout[heldout["corpus"].str.startswith("val:")]
    return df.assign(genre=df["corpus"].str.removeprefix("val:"))


# ---------------------------------------------------------------- the claims


def task_kind(metrics) -> str:
    return "multiple_choice" if "acc" in set(metrics) else "generation"


def _covariate(c) -> dict | None:
    """A same-loss covariate test, short: significance and the equivalence test of its effect."""
    if c is None:
        return None
    return {"improvement": c.improvement, "p": c.p_value, "significant": c.significant,
            "effect_per_doubling": c.effect, "effect_ci": list(c.effect_ci) if c.effect_ci else None,
            "margin": c.margin, "equivalent": c.equivalent, "power": c.power}


def _brief(t) -> dict:
    """The evidence of one (task, metric) verdict, short enough to read in summary.json."""
    e, s, b = t.emergence, t.same_loss, t.backtest
    size = s.test("loss", "log_params")
    tokens = s.test("loss", "log_tokens")
    return jsonable({
        "task": t.task, "metric": t.metric, "verdict": e.verdict,
        "eta": e.eta if e.verdict == "emergent" else None,
        "eta_ci": list(e.eta_ci) if e.verdict == "emergent" and e.eta_ci else None,
        "threshold_fit": e.threshold_fit, "delta_bic": e.delta_bic, "best_smooth": e.best_smooth,
        "rival": e.rival, "rival_delta_bic": e.rival_delta_bic, "spearman": s.spearman, "pearson": s.pearson,
        "same_loss_holds": s.holds,
        "size_beyond_loss": _covariate(size), "tokens_beyond_loss": _covariate(tokens),
        "compute_collapses": s.compute_collapses, "compute_excess": s.compute_excess,
        "backtest": None if b is None else {"verdict": b.verdict, "mae": b.mae, "tolerance": b.tolerance,
                                            "cut": b.cut},
        "reasons": list(e.reasons),
    })


HOLDS, FAILS, UNTESTABLE = "holds", "fails", "not testable here"
STATUSES = (HOLDS, FAILS, UNTESTABLE)
CLAIMS = (  # key in summary.json, label, what it claims (docs/demo.md)
    ("a_smooth", "(a) smooth", "at least one task improves smoothly as the loss falls"),
    ("b_emergent", "(b) emergent",
     "one task is emergent under its discontinuous metric and under a continuous one"),
    ("c_same_loss", "(c) same loss",
     "for the smooth tasks, neither model size nor tokens add beyond loss, and compute does not collapse the runs"),
    ("d_backtest", "(d) backtest",
     "the emergent task is not predictable from the checkpoints above its eta; a smooth one is"),
    ("e_other_genres", "(e) other genres",
     "the emergent verdict of (b) also holds with the loss on the other genres as the x-axis"),
)
CLAIM_TEXT = {key: (label, text) for key, label, text in CLAIMS}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's claims, decided from the data. `status` is "holds", "fails" or "not testable
    here" (the data cannot decide it, e.g. no emergent task to backtest: never "fails"); `evidence`
    is the short lines every renderer shows (report, demo), `reason` why it fails or cannot be tested,
    `details` the machine-readable evidence of summary.json."""

    key: str
    label: str
    status: str
    evidence: tuple[str, ...] = ()
    reason: str = ""
    text: str = ""
    details: dict = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"claim status must be one of {STATUSES}, not {self.status!r}")

    @property
    def holds(self) -> bool:
        return self.status == HOLDS

    def to_dict(self) -> dict:
        """summary.json's entry: `holds` stays a bool (true only when the claim holds), `status` says more."""
        return jsonable({"holds": self.holds, "status": self.status, "label": self.label,
                         "evidence": list(self.evidence), "reason": self.reason, **self.details})

    @classmethod
    def from_dict(cls, key: str, d: dict) -> Claim:
        """A claim back from summary.json (an older summary without `status` maps holds true/false)."""
        label, text = CLAIM_TEXT.get(key, (key, ""))
        status = d.get("status")
        if status not in STATUSES:
            status = {True: HOLDS, False: FAILS}.get(d.get("holds"), UNTESTABLE)
        details = {k: v for k, v in d.items() if k not in ("holds", "status", "label", "evidence", "reason")}
        return cls(key, d.get("label") or label, status, tuple(map(str, d.get("evidence") or ())),
                   str(d.get("reason") or ""), text, details)


def claims_from_summary(summary: dict) -> list[Claim]:
    """The claims of a summary.json, in (a)-(e) order, then any others it holds."""
    summary = summary if isinstance(summary, dict) else {}
    out = [Claim.from_dict(key, summary[key]) for key, _, _ in CLAIMS if isinstance(summary.get(key), dict)]
    out += [Claim.from_dict(k, v) for k, v in summary.items()
            if k not in CLAIM_TEXT and k not in ("all_hold", "verdicts") and isinstance(v, dict)]
    return out


def _claim(key: str, status: str, evidence, reason: str = "", **details) -> Claim:
    """A claim; one that has no evidence lines (nothing to test it on) shows its reason as evidence."""
    label, text = CLAIM_TEXT[key]
    return Claim(key, label, status, tuple(evidence) or ((reason,) if reason else ()), reason, text, details)




def _eta_line(t) -> str:
    e = t.emergence
    line = f"{t.task}/{t.metric}: {e.verdict}"
    if e.verdict == "emergent" and e.eta is not None:
        ci = f" [{num(e.eta_ci[0], '.4g')}, {num(e.eta_ci[1], '.4g')}]" if e.eta_ci else ""
        line += f", eta {num(e.eta, '.4g')}{ci}"
    if e.delta_bic is not None:
        line += f", delta BIC {num(e.delta_bic, '.1f')}"
    return line


def _same_loss_line(t) -> str:
    s = t.same_loss
    parts = [f"{t.task}/{t.metric}: same loss {'holds' if s.holds else 'fails' if s.holds is False else 'not shown'}"]
    for name, short in (("log_params", "N"), ("log_tokens", "D")):
        c = s.test("loss", name)
        if c is not None and c.effect is not None:
            ci = f" [{num(c.effect_ci[0], '+.3f')}, {num(c.effect_ci[1], '+.3f')}]" if c.effect_ci else ""
            parts.append(f"{short} {num(c.effect, '+.3f')}{ci}/doubling")
    parts.append(f"compute collapses: {'yes' if s.compute_collapses else 'no'}")
    return ", ".join(parts)


def _backtest_line(t) -> str:
    b = t.backtest
    if b is None:
        return f"{t.task}/{t.metric}: no backtest"
    if b.mae is None:
        return f"{t.task}/{t.metric}: {b.verdict} ({b.reason})"
    return (f"{t.task}/{t.metric}: {b.verdict}, MAE {num(b.mae)} vs tolerance {num(b.tolerance)} "
            f"(fit above {num(b.cut, '.4g')}, {b.cut_rule})")


def decide_claims(report: AnalysisReport, other: AnalysisReport | None) -> list[Claim]:
    """Decide (a)-(e) from the two analyses; every claim carries the evidence it rests on."""
    by_task: dict[str, dict] = {}
    for t in report.tasks:
        by_task.setdefault(t.task, {})[t.metric] = t
    other_by = {(t.task, t.metric): t for t in (other.tasks if other else [])}
    out = []

    smooth = [t for t in report.tasks if t.verdict == "smooth"]
    names = [f"{t.task}/{t.metric}" for t in smooth]
    if not report.tasks:
        out.append(_claim("a_smooth", UNTESTABLE, [], "no (task, metric) was analysed", smooth=[]))
    else:
        out.append(_claim("a_smooth", HOLDS if smooth else FAILS,
                          [f"smooth: {', '.join(names[:6]) + (' ...' if len(names) > 6 else '') or 'none'}"],
                          "" if smooth else f"none of the {len(report.tasks)} (task, metric) pairs is smooth",
                          smooth=names))

    # (b) + (e): a task emergent under a discontinuous and a continuous metric, on both axes.
    both_kinds = [task for task, metrics in by_task.items()
                  if any(m in metrics for m in DISCONTINUOUS[task_kind(metrics)])
                  and any(m in metrics for m in CONTINUOUS[task_kind(metrics)])]
    candidates = []
    for task, metrics in sorted(by_task.items()):
        kind = task_kind(metrics)
        disc = [metrics[m] for m in DISCONTINUOUS[kind] if m in metrics and metrics[m].verdict == "emergent"]
        cont = [metrics[m] for m in CONTINUOUS[kind] if m in metrics and metrics[m].verdict == "emergent"]
        if disc and cont:
            other_ok = [x for x in disc + cont if (o := other_by.get((x.task, x.metric))) is not None
                        and o.verdict == "emergent"]
            both_axes = any(x.metric in DISCONTINUOUS[kind] for x in other_ok) and \
                any(x.metric in CONTINUOUS[kind] for x in other_ok)
            candidates.append((both_axes, task, disc, cont))
    candidates.sort(key=lambda c: (not c[0], c[1]))
    emergent_pairs = []
    if candidates:
        both_axes, task, disc, cont = candidates[0]
        emergent_pairs = disc + cont
        out.append(_claim("b_emergent", HOLDS, [f"task: {task}", *(_eta_line(x) for x in emergent_pairs)],
                          task=task, discontinuous=_brief(disc[0]), continuous=[_brief(x) for x in cont]))
    elif not both_kinds:
        out.append(_claim("b_emergent", UNTESTABLE, [], "no task has both a discontinuous and a continuous metric",
                          task=None, discontinuous=None, continuous=[]))
    else:
        near = [_eta_line(by_task[task][m]) for task in both_kinds for m in by_task[task]
                if by_task[task][m].verdict == "emergent"]
        out.append(_claim("b_emergent", FAILS, near or ["no emergent metric"],
                          "no task is emergent under both a discontinuous and a continuous metric",
                          task=None, discontinuous=None, continuous=[]))

    # (c): loss explains every smooth (task, metric) the same-loss test could decide (equivalence of
    # performance at equal loss shown: analysis/same_loss.py); compute, as the x-axis, leaves the runs
    # apart in most of them. "Most", not "all": each compute test is a 5% test, and the claim is about
    # the pattern, as in the paper. Pairs the test could not decide (too few runs, underpowered) are
    # listed, not counted as failures.
    tested = [t for t in smooth if t.same_loss.holds is not None]
    loss_explains = [t for t in tested if t.same_loss.holds]
    compute_apart = [t for t in tested if t.same_loss.compute_collapses is False]
    undecided = [t for t in smooth if t.same_loss.holds is None]
    c_details = dict(loss_explains=len(loss_explains), compute_does_not_collapse=len(compute_apart),
                     tested=len(tested), not_decided=[f"{t.task}/{t.metric}" for t in undecided],
                     tasks=[_brief(t) for t in tested])
    c_lines = [f"loss explains {len(loss_explains)}/{len(tested)} decided smooth metrics; compute fails to "
               f"collapse {len(compute_apart)}/{len(tested)}", *(_same_loss_line(t) for t in tested)]
    if undecided:
        c_lines.append(f"not decided: {', '.join(f'{t.task}/{t.metric}' for t in undecided)} "
                       f"({undecided[0].same_loss.reason or 'untested'})")
    if not smooth:
        out.append(_claim("c_same_loss", UNTESTABLE, c_lines, "no smooth task to test", **c_details))
    elif not tested:
        out.append(_claim("c_same_loss", UNTESTABLE, c_lines,
                          f"the same-loss test could decide none of the {len(smooth)} smooth metrics: "
                          f"{undecided[0].same_loss.reason or 'untested'}", **c_details))
    else:
        ok = len(loss_explains) == len(tested) and 2 * len(compute_apart) > len(tested)
        why = "" if ok else ("loss does not explain " + ", ".join(f"{t.task}/{t.metric}" for t in tested
                                                                   if not t.same_loss.holds)
                             if len(loss_explains) < len(tested) else "compute collapses the runs in most of them")
        out.append(_claim("c_same_loss", HOLDS if ok else FAILS, c_lines, why, **c_details))

    # (d) = the paper's claim 3: fitted only above eta (predict.backtest with the emergence threshold),
    # the emergent task's metrics are not predictable; at least one smooth task is.
    emergent_bt = [t.backtest.verdict if t.backtest is not None else None for t in emergent_pairs]
    smooth_predictable = [f"{t.task}/{t.metric}" for t in smooth
                          if t.backtest is not None and t.backtest.verdict == "predictable"]
    smooth_decided = [t for t in smooth if t.backtest is not None and t.backtest.verdict != "inconclusive"]
    d_details = dict(emergent={f"{t.task}/{t.metric}": (t.backtest.to_dict() if t.backtest else None)
                               for t in emergent_pairs}, smooth_predictable=smooth_predictable)
    d_lines = [*(_backtest_line(t) for t in emergent_pairs),
               f"predictable smooth: {len(smooth_predictable)} ({', '.join(smooth_predictable[:4]) or 'none'})"]
    if not emergent_pairs:
        out.append(_claim("d_backtest", UNTESTABLE, d_lines, "no emergent task (claim (b)) to backtest", **d_details))
    elif any(v in (None, "inconclusive") for v in emergent_bt) and "predictable" not in emergent_bt:
        out.append(_claim("d_backtest", UNTESTABLE, d_lines,
                          "the emergent metrics' backtests are inconclusive (too few losses above or below eta)",
                          **d_details))
    elif not smooth_decided:
        out.append(_claim("d_backtest", UNTESTABLE, d_lines, "no smooth task with a conclusive backtest", **d_details))
    else:
        ok = all(v == "not_predictable" for v in emergent_bt) and bool(smooth_predictable)
        why = "" if ok else ("an emergent metric is predictable from above its eta" if "predictable" in emergent_bt
                             else "no smooth task is predictable")
        out.append(_claim("d_backtest", HOLDS if ok else FAILS, d_lines, why, **d_details))

    e_details = dict(axis=OTHER_AXIS_LABEL, discontinuous=None, continuous=[])
    if other is None:
        out.append(_claim("e_other_genres", UNTESTABLE, [], "no other-genres axis (no world or no per-genre "
                          "held-out losses)", **e_details))
    elif not candidates:
        out.append(_claim("e_other_genres", UNTESTABLE, [], "no emergent task from (b) to check", **e_details))
    else:
        both_axes, task, disc, cont = candidates[0]
        od = other_by.get((task, disc[0].metric))
        oc = [other_by[(task, x.metric)] for x in cont if (task, x.metric) in other_by]
        e_details.update(discontinuous=_brief(od) if od is not None else None, continuous=[_brief(x) for x in oc])
        lines = [_eta_line(x) for x in ([od] if od is not None else []) + oc]
        out.append(_claim("e_other_genres", HOLDS if both_axes else FAILS, lines,
                          "" if both_axes else f"{task} is not emergent under both kinds of metric on this axis",
                          **e_details))
    return out


def claims(report: AnalysisReport, other: AnalysisReport | None) -> dict:
    """summary.json: the claims (a)-(e), `all_hold`, and every (task, metric) verdict's evidence."""
    decided = decide_claims(report, other)
    return summary_of(decided, report)


def summary_of(decided: list[Claim], report: AnalysisReport) -> dict:
    return jsonable({"all_hold": all(c.holds for c in decided), **{c.key: c.to_dict() for c in decided},
                      "verdicts": [_brief(t) for t in report.tasks]})


def run_study(db: str | Path, *, world_dir: str | Path | None = None, runs: list[str] | None = None,
              **analysis) -> Study:
    """Analyse a ladder's store on the validation-loss axis and (with the world) the other-genres axis;
    `runs` restricts both to those runs (a ladder's own, when the store also holds others). `analysis`:
    keyword arguments of `analyze` (seed, bootstrap, permutations, the configs: `AnalysisConfig.analyze_kwargs()`)."""
    from losslens.store import Store

    db = Path(db)
    with Store(db, create=False) as store:
        heldout = store.heldout()
    table = read_db(db, loss_corpus="val" if (heldout["corpus"] == "val").any() else None)
    if runs is not None:
        keep = table.df["model"].isin(runs)
        if not keep.all():
            table.notes.append(f"{int((~keep).sum())} rows of runs outside this ladder left out")
            table.df = validate(table.df[keep], db)
    report = analyze(table, **analysis)
    other_table = other_report = None
    if world_dir is not None:
        heldout = genre_losses(heldout)
        if runs is not None:
            heldout = heldout[heldout["model"].isin(runs)]
        if not heldout.empty:
            other_table = other_genre_table(table, heldout, task_genres(Path(world_dir)),
                                            genre_weights(Path(world_dir), heldout))
            if other_table is not None:
                other_report = analyze(other_table, **{**analysis, "scaling_law": False})
    decided = decide_claims(report, other_report)
    return Study(table, report, other_table, other_report, summary_of(decided, report), decided)


