"""The training loop: one run from its config to checkpoints and a run record.

    prepare data -> build model -> (resume) -> for each step: batch(step), forward, backward, clip, AdamW
                 -> at each milestone: held-out loss, checkpoint, run.json

Exact resume: the batch of step s is a pure function of (seed, s), optimizer state and the torch RNG
are checkpointed, so a run killed anywhere and resumed from its newest good checkpoint ends with
bit-identical weights (CPU, fp32, same thread count).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from losslens import __version__
from losslens.config import to_dict
from losslens.data import PreparedData, WindowSampler, eval_windows, prepare_data
from losslens.errors import InputError, UserError
from losslens.train import checkpoint as ckpt
from losslens.train.config import RunConfig
from losslens.train.distributed import Dist, init_distributed, shutdown
from losslens.train.progress import TrainProgress
from losslens.train.record import RunRecord, load_record
from losslens.train.schedule import lr_at


class TrainingDiverged(UserError):
    """A non-finite loss: the run stops and nothing after the last good checkpoint is recorded."""

    exit_code = 3


@dataclass
class TrainResult:
    run_dir: Path
    record: RunRecord
    already_complete: bool = False


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    # Decay matrices and embeddings; not norm gains (1-d), which would be pulled towards zero.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def next_token_loss(model, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """Mean cross-entropy in nats/token; the model's fused head + loss never builds the full logits."""
    with autocast(precision, x.device):
        return model(x, y)


@torch.no_grad()
def heldout_loss(model, windows: torch.Tensor, *, batch_size: int, precision: str, d: Dist) -> float:
    """Mean nats/token over fixed held-out windows, split across ranks and summed exactly once."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for i in range(d.rank * batch_size, windows.size(0), batch_size * d.world_size):
        w = windows[i:i + batch_size].to(d.device)
        n = w[:, 1:].numel()
        total += torch.tensor([float(next_token_loss(model, w[:, :-1], w[:, 1:], precision)) * n, n],
                              dtype=torch.float64)
    d.all_reduce_sum(total)
    model.train(was_training)
    return float(total[0] / total[1])


def train(cfg: RunConfig, run_dir: str | Path, *, config_source: str | None = None,
          quiet: bool = False, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train (or resume, or report complete) the run described by `cfg` in `run_dir`.

    `on_step(step, train_loss)` is called on rank 0 after every optimizer step (the ladder's
    progress channel); it must be cheap."""
    from losslens.model import ModelConfig, flops_per_token, param_counts

    run_dir = Path(run_dir).resolve()  # records hold absolute paths: usable from any directory
    tc = cfg.train
    d = init_distributed()
    try:
        if tc.batch_size % d.world_size:
            raise InputError(config_source, f"batch_size {tc.batch_size} is not divisible by "
                                            f"{d.world_size} data-parallel processes", field="train.batch_size")
        if tc.threads:
            torch.set_num_threads(tc.threads)
        record = load_record(run_dir)
        config_dict = to_dict(cfg)
        if record is not None and record.config != config_dict:
            raise InputError(run_dir / "run.json", "this run dir holds a run with a different config; "
                                                   "use another --out", field="config")
        if record is not None and record.status == "complete":
            return TrainResult(run_dir, record, already_complete=True)

        data = prepare_data(cfg.data, Path(cfg.data.dir) if cfg.data.dir else run_dir / "data")
        for split, shard in (("training", data.train), ("held-out", data.val)):
            if shard.n_tokens < tc.seq_len + 2:
                raise InputError(config_source, f"the {split} text has {shard.n_tokens} tokens, fewer than one "
                                                f"window of seq_len + 1 = {tc.seq_len + 1}", field="data")
        model_cfg = ModelConfig.from_dict({"max_seq_len": tc.seq_len, **cfg.model,
                                           "vocab_size": data.tokenizer.vocab_size}, source=config_source)
        total_params, non_embedding = param_counts(model_cfg)
        if record is None:
            record = RunRecord(
                name=cfg.name, config=config_dict, model_config=to_dict(model_cfg), params=total_params,
                non_embedding_params=non_embedding, flops_per_token=flops_per_token(model_cfg, tc.seq_len),
                tokenizer=str(data.tokenizer.path), tokenizer_hash=data.tokenizer.hash,
                data_dir=str(data.dir), tokens_per_step=tc.tokens_per_step, total_steps=tc.total_steps,
                world_size=d.world_size, losslens_version=__version__)
        with _exclusive(run_dir, d):
            return _run(cfg, run_dir, data, model_cfg, record, d, quiet=quiet, on_step=on_step)
    finally:
        shutdown(d)


@contextlib.contextmanager
def _exclusive(run_dir: Path, d: Dist):
    """One trainer per run dir: a second one (say, a re-run while a killed ladder's orphaned worker
    still trains) stops with one line instead of racing it on checkpoints and run.json."""
    if not d.is_main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(run_dir, "another process is training this run right now; stop it or wait",
                             field="run dir") from None
        yield


def _resume_point(run_dir: Path, record: RunRecord, quiet: bool, d: Dist):
    """Newest (step, model payload, state payload) whose files both verify; None to start fresh."""
    states = dict(ckpt.list_checkpoints(run_dir, "state"))
    models = dict(ckpt.list_checkpoints(run_dir, "ckpt"))
    for tokens in sorted(states, reverse=True):
        if tokens not in models:
            continue
        try:
            state, model = ckpt.load(states[tokens]), ckpt.load(models[tokens])
        except ckpt.CorruptCheckpoint as err:
            if d.is_main and not quiet:
                print(f"warning: {err}; falling back to the previous checkpoint", file=sys.stderr)
            continue
        if record.checkpoint_at(state["step"]) is None:
            continue  # written, but the run died before recording it: redo from an earlier one
        return state["step"], model, state
    return None


def _run(cfg: RunConfig, run_dir: Path, data: PreparedData, model_cfg, record: RunRecord, d: Dist,
         *, quiet: bool, on_step=None) -> TrainResult:
    from losslens.model import LlamaLM

    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = LlamaLM(model_cfg).to(d.device)
    optimizer = build_optimizer(model, tc)
    milestones = tc.milestone_steps()
    start_step = 0
    resume = _resume_point(run_dir, record, quiet, d)
    if resume is not None:
        start_step, model_payload, state = resume
        model.load_state_dict(model_payload["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        record.truncate_after(start_step)
        if d.is_main and not quiet:
            print(f"resuming {run_dir} from step {start_step} ({start_step * tc.tokens_per_step:,} tokens)")
    elif record.checkpoints:
        record.truncate_after(0)
    record.status, record.error = "running", None
    if d.is_main:
        record.save(run_dir)

    forward_model = torch.compile(model) if tc.compile else model
    if d.enabled:
        forward_model = torch.nn.parallel.DistributedDataParallel(forward_model)
    sampler = WindowSampler(data.train.tokens, tc.seq_len, tc.batch_size, tc.seed)
    val = eval_windows(data.val.tokens, tc.seq_len, tc.eval_tokens)
    rows_per_rank = tc.batch_size // d.world_size
    micro = min(tc.micro_batch_size or rows_per_rank, rows_per_rank)
    min_lr = tc.lr * tc.min_lr_ratio
    warmup_steps = min(round(tc.warmup_fraction * tc.total_steps), tc.total_steps - 1)

    progress = TrainProgress(total_steps=tc.total_steps, start_step=start_step,
                             tokens_per_step=tc.tokens_per_step, enabled=d.is_main and not quiet)
    model.train()
    with progress:
        for step in range(start_step, tc.total_steps):
            lr = lr_at(step, total_steps=tc.total_steps, max_lr=tc.lr, min_lr=min_lr, warmup_steps=warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sampler.batch(step, slice(d.rank * rows_per_rank, (d.rank + 1) * rows_per_rank))
            step_loss = torch.zeros((), dtype=torch.float64)
            for i in range(0, rows_per_rank, micro):
                xb, yb = x[i:i + micro].to(d.device), y[i:i + micro].to(d.device)
                # Only the last micro-batch all-reduces gradients under DDP.
                sync = contextlib.nullcontext() if (not d.enabled or i + micro >= rows_per_rank) \
                    else forward_model.no_sync()
                with sync:
                    loss = next_token_loss(forward_model, xb, yb, tc.precision) * (xb.size(0) / rows_per_rank)
                    loss.backward()
                step_loss += loss.detach().double().cpu()
            train_loss = float(d.all_reduce_sum(step_loss) / d.world_size)
            grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                         if tc.grad_clip > 0 else torch.zeros(()))
            if not math.isfinite(train_loss):
                _diverged(record, run_dir, d, f"non-finite training loss ({train_loss}) at step {step + 1}")
            if not math.isfinite(float(grad_norm)):
                _diverged(record, run_dir, d, f"non-finite gradient norm at step {step + 1}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            progress.update(done, train_loss)
            if on_step is not None and d.is_main:
                on_step(done, train_loss)
            if done in milestones:
                val_loss = heldout_loss(model, val, batch_size=micro, precision=tc.precision, d=d)
                if not math.isfinite(val_loss):
                    _diverged(record, run_dir, d, f"non-finite held-out loss ({val_loss}) at step {done}")
                entry = _save_checkpoint(run_dir, model, optimizer, model_cfg, record, done, tc, val_loss,
                                         train_loss, lr, data, d)
                if entry is not None:
                    progress.milestone(entry)
        record.status = "complete"
        if d.is_main:
            record.save(run_dir)
    d.barrier()
    return TrainResult(run_dir, record)


def _diverged(record: RunRecord, run_dir: Path, d: Dist, what: str):
    """Record the failure (nothing after the last checkpoint is kept) and stop the run."""
    message = f"{what}; stopping the run"
    record.status, record.error = "failed", message
    if d.is_main:
        record.save(run_dir)
    raise TrainingDiverged(message)


def _save_checkpoint(run_dir, model, optimizer, model_cfg, record, step, tc, val_loss, train_loss, lr,
                     data: PreparedData, d: Dist):
    """Rank 0 writes weights, optimizer state and the record entry; the others wait for it."""
    tokens = step * tc.tokens_per_step
    entry = None
    if d.is_main:
        meta = {"format": "losslens-checkpoint/1", "run": record.name, "step": step, "tokens": tokens,
                "val_loss": val_loss, "model_config": to_dict(model_cfg), "tokenizer": record.tokenizer,
                "tokenizer_hash": record.tokenizer_hash}
        path = ckpt.ckpt_path(run_dir, tokens)
        sha = ckpt.save(path, {**meta, "model": model.state_dict()})
        ckpt.save(ckpt.ckpt_path(run_dir, tokens, "state"),
                  {"step": step, "tokens": tokens, "optimizer": optimizer.state_dict(),
                   "torch_rng": torch.get_rng_state()})
        val_bpb = val_loss / math.log(2) / data.val.bytes_per_token
        entry = record.add_checkpoint(step=step, tokens=tokens, val_loss=val_loss, val_bpb=val_bpb,
                                      train_loss=train_loss, lr=lr, path=str(path.relative_to(run_dir)),
                                      sha256=sha)
        record.save(run_dir)
        for _tokens, old in ckpt.list_checkpoints(run_dir, "state")[:-tc.keep_states]:
            old.unlink(missing_ok=True)
    d.barrier()
    return entry
