"""Evaluate one model end to end: held-out loss on each corpus, every task, optional lm-eval tasks,
then store everything in one go. All inputs are validated before the first forward pass, so bad
input stores nothing."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from losslens.errors import InputError
from losslens.evaluate.heldout import HeldoutLoss, heldout_loss, read_corpus
from losslens.evaluate.identity import hub_commit, weights_sha256
from losslens.evaluate.lm import ScoringModel, load_lm
from losslens.evaluate.runner import TaskResult, evaluate_task
from losslens.evaluate.tasks import resolve_tasks
from losslens.fmt import plus_minus


@dataclass
class ModelResult:
    lm: ScoringModel
    run: str
    step: int
    tokens: int | None
    heldout: list[HeldoutLoss]
    tasks: list[TaskResult]
    harness_rows: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # what the metrics depend on (seed, limit, dtype)
    harness_samples: dict = field(default_factory=dict)  # lm-eval task -> its per-item SampleRows

    @property
    def loss(self) -> float | None:
        return self.heldout[0].nats_per_token if self.heldout else None


def _corpora(heldout: list[Path] | None, world_dir: str | None) -> list[tuple[str, Path]]:
    """(name, path) of each held-out corpus; the first one is the checkpoint's pre-training loss."""
    if heldout:
        return [(p.stem, p) for p in heldout]
    if world_dir is None:
        return []
    world = Path(world_dir)
    genres = sorted((world / "val").glob("*.txt"))
    return [("val", world / "val.txt")] + [(f"val:{p.stem}", p) for p in genres]


def evaluate_model(model: str | Path, *, tasks: list[str], world: Path | None = None,
                   heldout: list[Path] | None = None, heldout_tokens: int = 65536, bpb: str = "losslens",
                   dtype: str = "fp32",
                   device: str = "cpu", batch_size: int = 32, limit: int | None = None, seed: int = 0,
                   harness: list[str] | None = None, harness_include: Path | None = None,
                   db: Path | None = None, run: str | None = None, tokens: int | None = None,
                   step: int | None = None, lm: ScoringModel | None = None, progress=None,
                   log_samples: bool = False) -> ModelResult:
    """Held-out loss on each corpus and every task's metrics, and with `db`, store them; `log_samples`
    also stores every item's record (docs/store.md). `progress` (a `losslens.progress.Steps`) is told
    each corpus and task as it starts and ends."""
    if harness:  # a typo in a harness task name fails now, not after all the other work
        from losslens.evaluate.harness import check_harness_tasks
        check_harness_tasks(harness, include_path=harness_include)
    if db is not None:
        _check_writable(Path(db))
    steps = progress or _NoProgress()
    if lm is None:
        steps.start(f"loading {model}")
        lm = load_lm(model, dtype=dtype, device=device, batch_size=batch_size)
    # Identity first (the ladder drops the weights before storing): docs/external.md#identity.
    lm.meta.setdefault("weights_sha256", weights_sha256(lm.model))
    lm.meta.setdefault("hub_commit", hub_commit(lm.model))
    run, step = run or lm.name, step if step is not None else lm.meta.get("step", 0)
    if db is not None and Path(db).is_file():  # the same weights under another checkpoint: fail before the work
        from losslens.store import Store
        with Store(db) as st:
            st.check_identity(lm.meta["weights_sha256"], run=run, step=step, path=lm.meta.get("path"))
    world_dir = str(world) if world else lm.meta.get("world_dir")
    task_list = resolve_tasks(tasks, world_dir)
    corpora = _corpora(heldout, world_dir)
    for _name, path in corpora:
        if not path.is_file():
            raise InputError(path, "held-out corpus not found", field="--heldout")
    steps.update(0, len(corpora) + len(task_list) + bool(harness))
    losses = []
    for i, (name, path) in enumerate(corpora):
        steps.start(f"held-out {name}")
        losses.append(heldout_loss(lm, read_corpus(path), corpus=name,
                                   max_tokens=heldout_tokens if i == 0 else max(heldout_tokens // 4, 2), bpb=bpb))
        steps.done()
    results = []
    for t in task_list:
        steps.start(f"task {t.name}")
        results.append(evaluate_task(lm, t, seed=seed, limit=limit))
        steps.done()
    harness_rows, harness_samples = [], {}
    if harness:
        from losslens.evaluate.harness import run_harness
        steps.start(f"lm-eval {','.join(harness)}")
        h = run_harness(lm.model, lm.tokenizer, harness, include_path=harness_include, scoring_model=lm,
                        limit=limit, batch_size=batch_size, device=device, seed=seed)
        harness_rows, harness_samples = h.rows, lm_eval_samples(h.raw)
        steps.done()
    result = ModelResult(lm=lm, run=run, step=step,
                         tokens=tokens if tokens is not None else lm.meta.get("tokens"), heldout=losses,
                         tasks=results, harness_rows=harness_rows,
                         settings={"seed": seed, "limit": limit, "dtype": dtype},
                         harness_samples=harness_samples)
    if db is not None:
        if not result.tokens:
            print(f"warning: {result.run}: training tokens unknown (pass --tokens); stored as 0, which the "
                  "analysis cannot use", file=sys.stderr)
        store_result(db, result, log_samples=log_samples)
    return result


def _check_writable(db: Path) -> None:
    """Fail before any work when the results store cannot be written (read-only dir, no permission)."""
    target = db if db.exists() else next(p for p in db.absolute().parents if p.exists())
    if not os.access(target, os.W_OK) or (db.exists() and not os.access(db.parent, os.W_OK)):
        raise InputError(db, f"cannot write the results store: {target} is read-only or not writable by you",
                         field="--db")


class _NoProgress:
    def update(self, *args, **kwargs): pass
    def start(self, what): pass
    def done(self, n=1): pass


def task_samples(t: TaskResult) -> list:
    """Our scorer's per-item records of one task as `SampleRow`s (the choice is acc's: the argmax)."""
    from losslens.store import SampleRow

    if t.type == "multiple_choice":
        rows = []
        for i, s in enumerate(t.samples):
            choice = max(range(len(s["logprobs"])), key=s["logprobs"].__getitem__)
            rows.append(SampleRow(i, item=str(s["id"]), gold=int(s["gold"]), choice=choice,
                                  logprobs=tuple(s["logprobs"]), correct=choice == s["gold"]))
        return rows
    return [SampleRow(i, item=str(s["id"]), logprobs=(s["target_logprob"],), generation=s["output"],
                      answer=s["answer"], reference=s["reference"], correct=bool(s["exact"]))
            for i, s in enumerate(t.samples)]


def lm_eval_samples(raw: dict) -> dict:
    """lm-eval's logged samples (`log_samples=True`) as `SampleRow`s per task: a multiple-choice
    document's per-choice log-likelihoods and argmax, else its (filtered) generation and target."""
    from losslens.store import SampleRow

    out = {}
    for task, samples in raw.get("samples", {}).items():
        mc = raw.get("configs", {}).get(task, {}).get("output_type") == "multiple_choice"
        rows = []
        for i, s in enumerate(sorted(samples, key=lambda s: s["doc_id"])):
            target = s.get("target")
            if mc:
                lls = [float(r[0]) for r in s["filtered_resps"]]
                choice = max(range(len(lls)), key=lls.__getitem__)
                gold = target if isinstance(target, int) else None
                rows.append(SampleRow(i, item=str(s["doc_id"]), gold=gold, choice=choice, logprobs=tuple(lls),
                                      correct=None if gold is None else choice == gold))
            else:
                resp = s.get("filtered_resps") or [None]
                text = resp[0] if isinstance(resp[0], str) else None
                em = s.get("exact_match")
                rows.append(SampleRow(i, item=str(s["doc_id"]), generation=text, answer=text,
                                      reference=None if target is None else str(target),
                                      correct=None if em is None else bool(em)))
        out[task] = rows
    return out


def store_result(db: Path, r: ModelResult, *, log_samples: bool = False) -> None:
    from losslens.store import LM_EVAL, MetricRow, Store

    rows = [MetricRow(t.task, m.name, m.value, stderr=m.stderr if m.stderr == m.stderr else None, n=m.n,
                      chance=m.chance, higher_is_better=m.higher_is_better)
            for t in r.tasks for m in t.metrics if m.value == m.value]
    rows += [dataclasses.replace(h, source=LM_EVAL) for h in r.harness_rows]
    from losslens.evaluate.identity import weights_sha256

    meta = r.lm.meta
    params = meta.get("params") or r.lm.non_embedding_params()
    sha = meta.get("weights_sha256") or (weights_sha256(r.lm.model) if r.lm.model is not None else None)
    with Store(db) as st, st.transaction():
        run_id = st.upsert_run(r.run, params=meta.get("total_params") or int(r.lm.model.num_parameters()),
                               non_embedding_params=params, source=meta.get("source", "hf"))
        ckpt_id = st.upsert_checkpoint(run_id, step=r.step, tokens=r.tokens or 0, loss=r.loss,
                                       path=meta.get("path"),
                                       flops=6.0 * params * r.tokens if r.tokens else None,
                                       weights_sha256=sha, hub_commit=meta.get("hub_commit"))
        for h in r.heldout:
            st.upsert_heldout(ckpt_id, corpus=h.corpus, nats_per_token=h.nats_per_token,
                              bits_per_byte=h.bits_per_byte, n_tokens=h.n_tokens, n_bytes=h.n_bytes)
        st.upsert_metrics(ckpt_id, rows, settings=r.settings or None)
        if log_samples:
            for t in r.tasks:
                st.upsert_samples(ckpt_id, t.task, task_samples(t), settings=r.settings or None)
            for task, samples in r.harness_samples.items():
                st.upsert_samples(ckpt_id, task, samples, source=LM_EVAL, settings=r.settings or None)


def print_results(r: ModelResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    where = f"step {r.step}" + (f", {r.tokens:,} tokens" if r.tokens else "")
    console.print(f"[bold]{r.run}[/] ({where})")
    if r.heldout:
        t = Table("held-out corpus", "nats/token", "bits/byte", "tokens", box=None)
        for h in r.heldout:
            t.add_row(h.corpus, f"{h.nats_per_token:.4f}", f"{h.bits_per_byte:.4f}", f"{h.n_tokens:,}")
        console.print(t)
    for kind in ("multiple_choice", "generation"):  # one column per task, one row per metric
        group = [t for t in r.tasks if t.type == kind]
        if not group:
            continue
        table = Table(kind.replace("_", " "), *[t.task for t in group], box=None)
        table.add_row("n items", *[str(t.metrics[0].n) for t in group])
        table.add_row("chance", *[f"{t.chance:.2f}" for t in group])
        for i, m in enumerate(group[0].metrics):
            table.add_row(m.name, *[plus_minus(t.metrics[i].value, t.metrics[i].stderr, ".3f") for t in group])
        console.print(table)
    if r.harness_rows:
        table = Table("lm-eval task", "metric", "value", "stderr", box=None)
        for row in r.harness_rows:
            table.add_row(row.task, row.metric, f"{row.value:.4f}", "" if row.stderr is None else f"{row.stderr:.4f}")
        console.print(table)


