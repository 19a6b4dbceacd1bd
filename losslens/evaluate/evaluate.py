"""Evaluate one model end to end: held-out loss on each corpus, every task, optional lm-eval tasks,
then store everything in one go. All inputs are validated before the first forward pass, so bad
input stores nothing."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from losslens.errors import InputError
from losslens.evaluate.heldout import HeldoutLoss, heldout_loss, read_corpus
from losslens.evaluate.lm import ScoringModel, load_lm
from losslens.evaluate.runner import TaskResult, evaluate_task
from losslens.evaluate.tasks import resolve_tasks


@dataclass
class ModelResult:
    lm: ScoringModel
    run: str
    step: int
    tokens: int | None
    heldout: list[HeldoutLoss]
    tasks: list[TaskResult]
    harness_rows: list = field(default_factory=list)

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
                   step: int | None = None, lm: ScoringModel | None = None) -> ModelResult:
    if harness:  # a typo in a harness task name fails now, not after all the other work
        from losslens.evaluate.harness import check_harness_tasks
        check_harness_tasks(harness, include_path=harness_include)
    lm = lm or load_lm(model, dtype=dtype, device=device, batch_size=batch_size)
    world_dir = str(world) if world else lm.meta.get("world_dir")
    task_list = resolve_tasks(tasks, world_dir)
    corpora = _corpora(heldout, world_dir)
    for name, path in corpora:
        if not path.is_file():
            raise InputError(path, "held-out corpus not found", field="--heldout")
    losses = [heldout_loss(lm, read_corpus(path), corpus=name,
                           max_tokens=heldout_tokens if i == 0 else max(heldout_tokens // 4, 2), bpb=bpb)
              for i, (name, path) in enumerate(corpora)]
    results = [evaluate_task(lm, t, seed=seed, limit=limit) for t in task_list]
    harness_rows = []
    if harness:
        from losslens.evaluate.harness import run_harness
        harness_rows = run_harness(lm.model, lm.tokenizer, harness, include_path=harness_include, scoring_model=lm,
                                   limit=limit, batch_size=batch_size, device=device, seed=seed).rows
    result = ModelResult(lm=lm, run=run or lm.name, step=step if step is not None else lm.meta.get("step", 0),
                         tokens=tokens if tokens is not None else lm.meta.get("tokens"), heldout=losses,
                         tasks=results, harness_rows=harness_rows)
    if db is not None:
        if not result.tokens:
            print(f"warning: {result.run}: training tokens unknown (pass --tokens); stored as 0, which the "
                  "analysis cannot use", file=sys.stderr)
        store_result(db, result)
    return result


def store_result(db: Path, r: ModelResult) -> None:
    from losslens.store import MetricRow, Store

    rows = [MetricRow(t.task, m.name, m.value, stderr=m.stderr if m.stderr == m.stderr else None, n=m.n,
                      chance=m.chance, higher_is_better=m.higher_is_better)
            for t in r.tasks for m in t.metrics if m.value == m.value]
    rows += list(r.harness_rows)
    meta = r.lm.meta
    params = meta.get("params") or r.lm.non_embedding_params()
    with Store(db) as st, st.transaction():
        run_id = st.upsert_run(r.run, params=meta.get("total_params") or int(r.lm.model.num_parameters()),
                               non_embedding_params=params, source=meta.get("source", "hf"))
        ckpt_id = st.upsert_checkpoint(run_id, step=r.step, tokens=r.tokens or 0, loss=r.loss,
                                       path=meta.get("path"),
                                       flops=6.0 * params * r.tokens if r.tokens else None)
        for h in r.heldout:
            st.upsert_heldout(ckpt_id, corpus=h.corpus, nats_per_token=h.nats_per_token,
                              bits_per_byte=h.bits_per_byte, n_tokens=h.n_tokens, n_bytes=h.n_bytes)
        st.upsert_metrics(ckpt_id, rows)


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
            table.add_row(m.name, *[_fmt(t.metrics[i]) for t in group])
        console.print(table)
    if r.harness_rows:
        table = Table("lm-eval task", "metric", "value", "stderr", box=None)
        for row in r.harness_rows:
            table.add_row(row.task, row.metric, f"{row.value:.4f}", "" if row.stderr is None else f"{row.stderr:.4f}")
        console.print(table)


def _fmt(m) -> str:
    return f"{m.value:.3f}±{m.stderr:.3f}" if m.stderr == m.stderr else f"{m.value:.3f}"
