"""The study: a ladder's results store, analysed on two loss axes, and the paper's claims decided
from the data.

Axis 1 is the held-out loss on the whole validation corpus (the paper's pre-training loss). Axis 2
guards against circularity: text of a task's own genre is part of the corpus, so when an ability
appears the corpus loss falls *because* that genre got easier. The second axis is each checkpoint's
loss on the validation text of every *other* genre, so a threshold found there cannot come from the
task's own text.

`claims(study)` turns both analyses into the five verdicts of `summary.json` (docs/demo.md):

    (a) smooth       at least one world task is smooth
    (b) emergent     one task is emergent under its discontinuous metric AND a continuous one
    (c) same_loss    for every smooth task, neither size nor tokens add beyond loss; compute as the
                     x-axis leaves the runs apart for most of them
    (d) backtest     the emergent task is not predictable from the higher-loss checkpoints; a smooth one is
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
    summary: dict                     # the claims (a)-(e) with their evidence: docs/demo.md

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
        "size_beyond_loss": None if size is None else {"improvement": size.improvement, "p": size.p_value,
                                                       "significant": size.significant},
        "tokens_beyond_loss": None if tokens is None else {"improvement": tokens.improvement,
                                                           "p": tokens.p_value, "significant": tokens.significant},
        "compute_collapses": s.compute_collapses, "compute_excess": s.compute_excess,
        "backtest": None if b is None else {"verdict": b.verdict, "mae": b.mae, "tolerance": b.tolerance,
                                            "cut": b.cut},
        "reasons": list(e.reasons),
    })


def claims(report: AnalysisReport, other: AnalysisReport | None) -> dict:
    """Decide (a)-(e) from the two analyses; every verdict carries the evidence it rests on."""
    by_task: dict[str, dict] = {}
    for t in report.tasks:
        by_task.setdefault(t.task, {})[t.metric] = t
    other_by = {(t.task, t.metric): t for t in (other.tasks if other else [])}

    smooth = [t for t in report.tasks if t.verdict == "smooth"]
    a = {"holds": bool(smooth), "smooth": [f"{t.task}/{t.metric}" for t in smooth]}

    # (b) + (e): a task emergent under a discontinuous and a continuous metric, on both axes.
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
    b = {"holds": bool(candidates), "task": None, "discontinuous": None, "continuous": []}
    e = {"holds": False, "axis": OTHER_AXIS_LABEL, "discontinuous": None, "continuous": []}
    emergent_pairs = []
    if candidates:
        both_axes, task, disc, cont = candidates[0]
        b.update(task=task, discontinuous=_brief(disc[0]), continuous=[_brief(x) for x in cont])
        emergent_pairs = disc + cont
        e.update(holds=both_axes,
                 discontinuous=_brief(other_by[(task, disc[0].metric)]) if (task, disc[0].metric) in other_by else None,
                 continuous=[_brief(other_by[(task, x.metric)]) for x in cont if (task, x.metric) in other_by])

    # (c): loss explains every smooth (task, metric) the same-loss test could test (neither log N nor
    # log D adds significantly); compute, as the x-axis, leaves the runs apart in most of them. "Most",
    # not "all": each compute test is a 5% test, and the claim is about the pattern, as in the paper.
    tested = [t for t in smooth if t.same_loss.holds is not None]
    loss_explains = [t for t in tested if t.same_loss.holds]
    compute_apart = [t for t in tested if t.same_loss.compute_collapses is False]
    c = {"holds": bool(tested) and len(loss_explains) == len(tested) and 2 * len(compute_apart) > len(tested),
         "loss_explains": len(loss_explains), "compute_does_not_collapse": len(compute_apart),
         "tested": len(tested), "tasks": [_brief(t) for t in tested]}

    # (d): the emergent task's metrics are not predictable; at least one smooth task is.
    emergent_bt = [t.backtest.verdict if t.backtest is not None else None for t in emergent_pairs]
    smooth_predictable = [f"{t.task}/{t.metric}" for t in smooth
                          if t.backtest is not None and t.backtest.verdict == "predictable"]
    d = {"holds": bool(emergent_bt) and all(v == "not_predictable" for v in emergent_bt) and bool(smooth_predictable),
         "emergent": {f"{t.task}/{t.metric}": (t.backtest.to_dict() if t.backtest else None) for t in emergent_pairs},
         "smooth_predictable": smooth_predictable}

    return jsonable({"all_hold": all(x["holds"] for x in (a, b, c, d, e)),
                      "a_smooth": a, "b_emergent": b, "c_same_loss": c, "d_backtest": d, "e_other_genres": e,
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
    summary = claims(report, other_report)
    return Study(table, report, other_table, other_report, summary)


