"""Evaluate every checkpoint a spec lists into the results store, skipping what is already stored.

Each checkpoint is loaded (a local directory through `load_lm`, a hub id through `from_pretrained`
with its revision and the normal Hugging Face cache) and handed to `evaluate_model`, the code behind
`losslens eval`: the same held-out loss, the same task scorer, the same lm-eval bridge, the same
store writes. Checkpoints of one series share a run name, so the store holds one run with a
checkpoint per step, as for our own training runs.

Resuming: a checkpoint is skipped when the store has its held-out loss on every corpus and a metric
of every task (losslens tasks by name, lm-eval tasks by the name given). Otherwise it is evaluated
again on the held-out corpora (the checkpoint's loss must come from the first one) and on the tasks
still missing. Settings (limit, seed, ...) are not part of the key: use a new store to change them.
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass
from pathlib import Path

from losslens.errors import InputError
from losslens.external.spec import Entry, Spec
from losslens.fmt import num


@dataclass
class Work:
    """One checkpoint and what is still missing from the store for it."""

    entry: Entry
    tasks: list[str]        # task specs (files, world:...) with a task not stored
    harness: list[str]      # lm-eval tasks not stored
    heldout: bool           # some held-out corpus not stored
    status: str = "to do"   # then "evaluated" or "skipped"
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        return not (self.tasks or self.harness or self.heldout)


@dataclass
class Stored:
    """What the store holds for one checkpoint, for the summary."""

    params: int | None
    loss: float | None
    bits_per_byte: float | None
    tasks: int


def load_entry(entry: Entry, spec: Spec, device: str):
    """The checkpoint as a `ScoringModel` in fp32 (bf16 is autocast at scoring time), with its N in `meta`."""
    import torch

    from losslens.evaluate.lm import ScoringModel, check_finite, load_lm, non_embedding_params, quiet_hf_loading

    if entry.path is not None:
        lm = load_lm(entry.path, dtype=spec.dtype, device=device, batch_size=spec.batch_size)
    else:
        import huggingface_hub.constants
        import transformers
        from packaging.version import Version
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_hf_loading()
        dtype_key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
        try:  # downloads into (or reads from) the normal HF cache; HF_HUB_OFFLINE=1 reads the cache only
            model = AutoModelForCausalLM.from_pretrained(entry.hub, revision=entry.revision,
                                                         **{dtype_key: torch.float32})
            tokenizer = AutoTokenizer.from_pretrained(entry.hub, revision=entry.revision)
        except Exception as err:  # transformers and huggingface_hub raise many kinds for a missing model
            offline = (" (HF_HUB_OFFLINE is set: the local cache only)"
                       if huggingface_hub.constants.HF_HUB_OFFLINE else "")
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise InputError(spec.path, f"cannot load {entry.source}{offline}: {first}", field=entry.where) from None
        check_finite(model, f"{spec.path}: {entry.where}: {entry.source}")
        lm = ScoringModel(model=model.to(device), tokenizer=tokenizer, name=entry.run, dtype=spec.dtype,
                batch_size=spec.batch_size, meta={"source": "hf"})
    from losslens.evaluate.identity import hub_commit

    lm.meta.update(path=entry.source, params=entry.params or non_embedding_params(lm.model),
                   hub_commit=hub_commit(lm.model, entry.hub, entry.revision) if entry.hub else None,
                   total_params=int(lm.model.num_parameters()))
    return lm


def plan(spec: Spec, db: Path) -> tuple[list[Work], dict[tuple[str, int], Stored]]:
    """What each checkpoint still needs, and what the store already holds. Loads (and so checks)
    every losslens task file; reads the store, never writes it."""
    from losslens.evaluate.tasks import resolve_tasks
    from losslens.store import LM_EVAL, Store

    task_names = {t: [task.name for task in resolve_tasks([t], spec.world)] for t in spec.tasks}
    corpora = [c.stem for c in spec.corpus]
    work, stored = [], {}
    if not db.is_file():
        return [Work(e, list(spec.tasks), list(spec.harness), True) for e in spec.entries], stored
    with Store(db, create=False) as st:
        for e in spec.entries:
            ckpt = st.checkpoint_id(e.run, e.step)
            if ckpt is None:
                work.append(Work(e, list(spec.tasks), list(spec.harness), True))
                continue
            work.append(Work(e, tasks=[t for t, names in task_names.items()
                                       if not all(st.has_task(ckpt, n) for n in names)],
                             harness=[h for h in spec.harness if not st.has_task(ckpt, h, LM_EVAL)],
                             heldout=not all(st.has_heldout(ckpt, c) for c in corpora)))
            stored[e.run, e.step] = _stored(st, ckpt, corpora[0])
    return work, stored


def _stored(st, ckpt: int, corpus: str) -> Stored:
    row = st.con.execute(
        """SELECT COALESCE(r.non_embedding_params, r.params), c.loss, h.bits_per_byte,
                  (SELECT COUNT(*) FROM (SELECT DISTINCT task, source FROM metrics WHERE checkpoint_id = c.id))
           FROM checkpoints c JOIN runs r ON r.id = c.run_id
           LEFT JOIN heldout h ON h.checkpoint_id = c.id AND h.corpus = ?
           WHERE c.id = ?""", (corpus, ckpt)).fetchone()
    return Stored(*row)


def run_external(spec: Spec, *, db: Path | None = None, device: str | None = None, dry_run: bool = False,
                 console=None) -> tuple[list[Work], dict[tuple[str, int], Stored]]:
    """Evaluate what the store lacks; return the work done and the store's rows for every checkpoint."""
    import torch
    from rich.console import Console

    from losslens.evaluate.evaluate import evaluate_model
    from losslens.progress import Steps

    console = console or Console(highlight=False)
    where, field = (None, "--device") if device else (spec.path, "device")
    db, device = Path(db or spec.db), device or spec.device
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise InputError(where, f"unknown device {device!r} (cpu, cuda, cuda:N or mps)", field=field)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(where, f"{device} requested but this torch has no usable CUDA device", field=field)
    work, stored = plan(spec, db)
    todo = [w for w in work if not w.done]
    if any(w.harness for w in todo):  # a typo in an lm-eval task name fails before the first model loads
        from losslens.evaluate.harness import check_harness_tasks
        try:
            check_harness_tasks(spec.harness, spec.harness_include)
        except InputError as err:
            raise InputError(spec.path, err.message, field="harness") from None
    if dry_run:
        return work, stored
    with Steps("external", total=len(todo), console=console) as steps:  # a bar with ETA on a terminal
        for i, w in enumerate(work, start=1):
            e = w.entry
            where = f"[{i}/{len(work)}] {e.run} step {e.step:,}"
            if w.done:
                w.status = "skipped"
                console.print(f"{where}: already in {db}, skipped")
                continue
            start = time.perf_counter()
            steps.start(f"{e.run} step {e.step:,}: loading")
            lm = load_entry(e, spec, device)
            steps.start(f"{e.run} step {e.step:,}: evaluating")
            result = evaluate_model(e.source, tasks=w.tasks, world=spec.world, heldout=spec.corpus,
                                    heldout_tokens=spec.heldout_tokens, dtype=spec.dtype, device=device,
                                    batch_size=spec.batch_size, limit=spec.limit, seed=spec.seed,
                                    harness=w.harness or None, harness_include=spec.harness_include, db=db,
                                    run=e.run, tokens=e.tokens, step=e.step, lm=lm, log_samples=spec.log_samples)
            w.status, w.seconds = "evaluated", time.perf_counter() - start
            h = result.heldout[0]
            n_tasks = len(result.tasks) + len({r.task for r in result.harness_rows})
            console.print(f"{where}: {e.tokens:,} tokens, N={lm.meta['params']:,}: loss {h.nats_per_token:.4f} "
                          f"nats/token, {h.bits_per_byte:.4f} bits/byte, {n_tasks} tasks ({w.seconds:.1f} s)")
            steps.done()
            del lm, result  # one model in memory at a time
            gc.collect()
    _set_families(db, spec.entries)
    if todo:
        _, stored = plan(spec, db)
    return work, stored


def _set_families(db: Path, entries: list[Entry]) -> None:
    """Record each run's `family`, where the spec gives one and the store has another (or none)."""
    from losslens.store import Store

    families = {e.run: e.family for e in entries if e.family}
    if not families or not db.is_file():
        return
    with Store(db, create=False) as st:
        stored = dict(st.con.execute("SELECT name, family FROM runs").fetchall())
        changed = {run: f for run, f in families.items() if run in stored and stored[run] != f}
        with st.transaction():
            for run, family in changed.items():
                st.upsert_run(run, params=None, family=family, source="hf")


def print_summary(spec: Spec, db: Path, work: list[Work], stored: dict, console, *, dry_run: bool = False) -> None:
    from rich.table import Table

    table = Table(title=f"{spec.name} -> {db}", box=None)
    for col in ("run", "step", "tokens", "N", "loss", "bits/byte", "tasks", "status"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    for w in work:
        e, s = w.entry, stored.get((w.entry.run, w.entry.step))
        status = w.status
        if dry_run and not w.done:
            missing = ((["held-out loss"] if w.heldout else [])
                       + [t if t.startswith("world:") else Path(t).stem for t in w.tasks]
                       + [f"lm-eval:{h}" for h in w.harness])
            status = "to do: " + ", ".join(missing)
        elif dry_run:
            status = "stored"
        table.add_row(e.run, f"{e.step:,}", f"{e.tokens:,}", num(s and s.params, ",d"), num(s and s.loss, ".4f"),
                      num(s and s.bits_per_byte, ".4f"), "-" if s is None else str(s.tasks), status)
    console.print(table)
    if not dry_run:
        n_eval = sum(w.status == "evaluated" for w in work)
        console.print(f"evaluated {n_eval}, skipped {len(work) - n_eval} of {len(work)} checkpoints; store: {db}")


