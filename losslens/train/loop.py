"""The training loop: one run from its config to checkpoints and a run record.

    prepare data -> build model -> (resume) -> for each step: batch(step), forward, backward, clip, AdamW
                 -> at each milestone: held-out loss, checkpoint, run.json

Exact resume: the batch of step s is a pure function of (seed, s), optimizer state and the torch RNG
are checkpointed, so a run killed anywhere and resumed from its newest good checkpoint ends with
bit-identical weights (CPU, fp32, same thread count).

On a GPU the loop never waits for the device inside a step: the loss is summed on the device, batches
are copied from pinned memory without blocking, and the host reads losses and gradient norms once
every `train.log_every` steps (and before each checkpoint), which is also when a non-finite value
stops the run and when the metrics file (losslens.train.metrics) gets its per-step lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from losslens import __version__
from losslens.config import to_dict
from losslens.data import PreparedData, WindowSampler, eval_windows, prepare_data
from losslens.errors import InputError, UserError
from losslens.io import LockHeld, file_lock
from losslens.train import checkpoint as ckpt
from losslens.train.config import RunConfig, TrainConfig, matches_record, resumed_as_recorded
from losslens.train.distributed import Dist, init_distributed, shard_model, shutdown
from losslens.train.metrics import MetricsLog
from losslens.train.mfu import device_name, mfu, peak_flops
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


@dataclass(frozen=True)
class DeviceSettings:
    """What `auto` config values mean on this run's device (recorded in run.json)."""

    device: torch.device
    precision: str        # "fp32" | "bf16"
    compile: bool
    fused_adamw: bool     # one fused kernel for the AdamW update (CUDA); CPU keeps the default for-each
    tf32: bool


def device_settings(tc: TrainConfig, device: torch.device) -> DeviceSettings:
    cuda = device.type == "cuda"
    precision = tc.precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    return DeviceSettings(device=device, precision=precision,
                          compile=cuda if tc.compile is None else tc.compile, fused_adamw=cuda, tf32=cuda and tc.tf32)


@contextlib.contextmanager
def cuda_matmul_precision(tf32: bool):
    """TF32 for fp32 matmuls and convolutions while training; the previous setting afterwards, so an
    evaluation later in the same worker process computes in exact fp32."""
    if not torch.cuda.is_available():
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build_optimizer(model: torch.nn.Module, cfg, fused: bool = False) -> torch.optim.AdamW:
    # Decay matrices and embeddings; not norm gains (1-d), which would be pulled towards zero.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                             **({"fused": True} if fused else {}))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host batch -> device: from pinned memory without blocking the host on CUDA; a no-op on CPU."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def next_token_loss(model, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """Mean cross-entropy in nats/token; the model's fused head + loss never builds the full logits."""
    with autocast(precision, x.device):
        return model(x, y)


@torch.no_grad()
def heldout_loss(model, windows: torch.Tensor, *, batch_size: int, precision: str, d: Dist,
                 same_calls: bool = False) -> float:
    """Mean nats/token over fixed held-out windows, split across ranks and summed exactly once.

    The sum stays on the device (one host read at the end). `same_calls` (FSDP: every forward is a
    collective) makes every rank run the same number of forwards, a rank without windows left
    scoring a window with weight 0."""
    was_training = model.training
    model.eval()
    loss_sum, n_sum = torch.zeros((), dtype=torch.float64, device=d.device), 0
    stride = batch_size * d.world_size
    for start in range(0, windows.size(0), stride):
        i = start + d.rank * batch_size
        w = windows[i:i + batch_size]
        if w.size(0) == 0 and not same_calls:
            continue
        n = w[:, 1:].numel()
        w = to_device(w if n else windows[:1], d.device)
        loss_sum += next_token_loss(model, w[:, :-1], w[:, 1:], precision).double() * n
        n_sum += n
    total = torch.stack((loss_sum, torch.tensor(float(n_sum), dtype=torch.float64, device=d.device)))
    total = d.all_reduce_sum(total)
    model.train(was_training)
    return float(total[0] / total[1])


def train(cfg: RunConfig, run_dir: str | Path, *, config_source: str | None = None,
          quiet: bool = False, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train (or resume, or report complete) the run described by `cfg` in `run_dir`.

    `on_step(step, train_loss)` is called on rank 0 for every optimizer step, in bursts when the
    host reads the losses (every `train.log_every` steps; the ladder's progress channel); it must be cheap."""
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
        if record is not None and not matches_record(record.config, config_dict):
            raise InputError(run_dir / "run.json", "this run dir holds a run with a different config; "
                                                   "use another --out", field="config")
        if record is not None:
            cfg = dataclasses.replace(cfg, train=resumed_as_recorded(tc, record.config))
            tc = cfg.train
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
        ds = device_settings(tc, d.device)
        record.device, record.precision = device_name(d.device), ds.precision
        record.peak_flops = tc.peak_flops or peak_flops(record.device, ds.precision, ds.tf32)
        with _exclusive(run_dir, d), cuda_matmul_precision(ds.tf32):
            return _run(cfg, run_dir, data, model_cfg, record, d, ds, quiet=quiet, on_step=on_step)
    finally:
        shutdown(d)


@contextlib.contextmanager
def _exclusive(run_dir: Path, d: Dist):
    """One trainer per run dir: a second one (say, a re-run while a killed ladder's orphaned worker
    still trains) stops with one line instead of racing it on checkpoints and run.json."""
    if not d.is_main:
        yield
        return
    try:
        with file_lock(run_dir / ".lock", wait=False):
            yield
    except LockHeld:
        raise InputError(run_dir, "another process is training this run right now; stop it or wait",
                         field="run dir") from None


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
         ds: DeviceSettings, *, quiet: bool, on_step=None) -> TrainResult:
    from losslens.model import LlamaLM

    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = LlamaLM(model_cfg).to(d.device)
    fsdp = d.enabled and tc.fsdp
    milestones = tc.milestone_steps()
    start_step, state = 0, None
    resume = _resume_point(run_dir, record, quiet, d)
    if resume is not None:
        start_step, model_payload, state = resume
        model.load_state_dict(model_payload["model"])  # before sharding: every rank loads the full weights
        torch.set_rng_state(state["torch_rng"])
        record.truncate_after(start_step)
        if d.is_main and not quiet:
            print(f"resuming {run_dir} from step {start_step} ({start_step * tc.tokens_per_step:,} tokens)")
    elif record.checkpoints:
        record.truncate_after(0)
    if fsdp:
        shard_model(model)
    optimizer = build_optimizer(model, tc, fused=ds.fused_adamw)
    if state is not None:
        _load_optimizer(model, optimizer, state["optimizer"], fsdp)
    record.status, record.error = "running", None
    if d.is_main:
        record.save(run_dir)

    forward_model = torch.compile(model) if ds.compile else model
    if d.enabled and not fsdp:
        forward_model = torch.nn.parallel.DistributedDataParallel(forward_model)
    sampler = WindowSampler(data.train.tokens, tc.seq_len, tc.batch_size, tc.seed)
    val = eval_windows(data.val.tokens, tc.seq_len, tc.eval_tokens)
    rows_per_rank = tc.batch_size // d.world_size
    micro = min(tc.micro_batch_size or rows_per_rank, rows_per_rank)
    min_lr = tc.lr * tc.min_lr_ratio
    warmup_steps = min(round(tc.warmup_fraction * tc.total_steps), tc.total_steps - 1)

    log = StepLog(record, d, tc, run_dir, start_step, on_step, quiet=quiet)
    model.train()
    with contextlib.closing(log), log.progress:
        for step in range(start_step, tc.total_steps):
            lr = lr_at(step, total_steps=tc.total_steps, max_lr=tc.lr, min_lr=min_lr, warmup_steps=warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sampler.batch(step, slice(d.rank * rows_per_rank, (d.rank + 1) * rows_per_rank))
            x, y = to_device(x, d.device), to_device(y, d.device)
            step_loss = torch.zeros((), dtype=torch.float64, device=d.device)  # summed on the device: no sync
            for i in range(0, rows_per_rank, micro):
                last = i + micro >= rows_per_rank  # only the last micro-batch reduces gradients
                if fsdp:
                    model.set_requires_gradient_sync(last)
                sync = contextlib.nullcontext() if (not d.enabled or fsdp or last) else forward_model.no_sync()
                with sync:
                    loss = next_token_loss(forward_model, x[i:i + micro], y[i:i + micro], ds.precision)
                    loss = loss * (min(micro, rows_per_rank - i) / rows_per_rank)
                    loss.backward()
                step_loss += loss.detach().double()
            if d.enabled:
                step_loss = d.all_reduce_sum(step_loss) / d.world_size
            grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                         if tc.grad_clip > 0 else torch.zeros((), device=d.device))
            if fsdp and hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            log.step(done, lr, step_loss, grad_norm)
            if done % tc.log_every == 0 or done in milestones:
                log.flush()  # the one host sync of these steps; raises TrainingDiverged
            if done in milestones:
                val_loss = heldout_loss(model, val, batch_size=micro, precision=ds.precision, d=d, same_calls=fsdp)
                if not math.isfinite(val_loss):
                    _diverged(record, run_dir, d, f"non-finite held-out loss ({val_loss}) at step {done}")
                entry = _save_checkpoint(run_dir, model, optimizer, model_cfg, record, done, tc, val_loss,
                                         log.last_loss, lr, data, d, fsdp, log.last_speed)
                log.checkpointed(entry)
        record.status = "complete"
        if d.is_main:
            record.save(run_dir)
    d.barrier()
    return TrainResult(run_dir, record)


class StepLog:
    """Per-step loss, lr, grad norm, tokens/s and MFU: kept on the device until `flush`, then checked,
    shown (progress bar, `on_step`) and appended to the metrics file (rank 0)."""

    def __init__(self, record: RunRecord, d: Dist, tc: TrainConfig, run_dir: Path, start_step: int,
                 on_step, *, quiet: bool):
        self.record, self.d, self.run_dir, self.on_step = record, d, run_dir, on_step
        self.tokens_per_step = tc.tokens_per_step
        self.pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self.last_loss, self.last_speed = float("nan"), None
        self.progress = TrainProgress(total_steps=tc.total_steps, start_step=start_step,
                                      tokens_per_step=tc.tokens_per_step, enabled=d.is_main and not quiet)
        self.metrics = MetricsLog(run_dir, start_step=start_step, tensorboard=tc.tensorboard, wandb=tc.wandb,
                                  run_name=record.name, config=record.config) if d.is_main else None
        self.t0 = time.perf_counter()

    def step(self, step: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.pending.append((step, lr, loss, grad_norm))

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack([torch.stack((loss, norm.double())) for _, _, loss, norm in self.pending]).tolist()
        seconds = time.perf_counter() - self.t0  # after the read above: the device has finished these steps
        speed = len(self.pending) * self.tokens_per_step / max(seconds, 1e-9)
        util = mfu(speed, self.record.flops_per_token, self.record.peak_flops, self.d.world_size)
        rows, failure = [], None
        for (step, lr, _, _), (loss, norm) in zip(self.pending, values):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                failure = (f"non-finite training loss ({loss}) at step {step}" if not math.isfinite(loss)
                           else f"non-finite gradient norm at step {step}")
                break
            rows.append({"step": step, "tokens": step * self.tokens_per_step, "loss": loss, "lr": lr,
                         "grad_norm": norm, "tokens_per_s": speed, "mfu": util, "time": time.time()})
            if self.on_step is not None and self.d.is_main:
                self.on_step(step, loss)
        self.pending.clear()
        if self.metrics is not None:
            self.metrics.write(rows)  # the steps before a failure are kept in the log
        if failure:
            _diverged(self.record, self.run_dir, self.d, failure)
        self.last_loss, self.last_speed = rows[-1]["loss"], (speed, util)
        self.progress.update(rows[-1]["step"], self.last_loss, util)
        self.t0 = time.perf_counter()

    def checkpointed(self, entry: dict | None) -> None:
        if entry is not None:
            self.progress.milestone(entry)
        if self.metrics is not None:
            self.metrics.sync()
        self.t0 = time.perf_counter()  # held-out scoring and saving are not training throughput

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


def _load_optimizer(model, optimizer, payload: dict, fsdp: bool) -> None:
    if not fsdp:
        optimizer.load_state_dict(payload)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, payload, options=StateDictOptions(full_state_dict=True))


def _full_state(model, optimizer, fsdp: bool) -> tuple[dict, dict]:
    """Unsharded weights and optimizer state (FSDP: gathered to rank 0 on the CPU; a collective)."""
    if not fsdp:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def _diverged(record: RunRecord, run_dir: Path, d: Dist, what: str):
    """Record the failure (nothing after the last checkpoint is kept) and stop the run."""
    message = f"{what}; stopping the run"
    record.status, record.error = "failed", message
    if d.is_main:
        record.save(run_dir)
    raise TrainingDiverged(message)


def _save_checkpoint(run_dir, model, optimizer, model_cfg, record, step, tc, val_loss, train_loss, lr,
                     data: PreparedData, d: Dist, fsdp: bool = False, speed=None):
    """Rank 0 writes weights, optimizer state and the record entry; the others wait for it."""
    tokens = step * tc.tokens_per_step
    entry = None
    model_state, optimizer_state = _full_state(model, optimizer, fsdp)
    if d.is_main:
        meta = {"format": "losslens-checkpoint/1", "run": record.name, "step": step, "tokens": tokens,
                "val_loss": val_loss, "model_config": to_dict(model_cfg), "tokenizer": record.tokenizer,
                "tokenizer_hash": record.tokenizer_hash}
        path = ckpt.ckpt_path(run_dir, tokens)
        sha = ckpt.save(path, {**meta, "model": model_state})
        ckpt.save(ckpt.ckpt_path(run_dir, tokens, "state"),
                  {"step": step, "tokens": tokens, "optimizer": optimizer_state,
                   "torch_rng": torch.get_rng_state()})
        val_bpb = val_loss / math.log(2) / data.val.bytes_per_token
        entry = record.add_checkpoint(step=step, tokens=tokens, val_loss=val_loss, val_bpb=val_bpb,
                                      train_loss=train_loss, lr=lr, path=str(path.relative_to(run_dir)),
                                      sha256=sha, tokens_per_s=speed and speed[0], mfu=speed and speed[1])
        record.save(run_dir)
        for _tokens, old in ckpt.list_checkpoints(run_dir, "state")[:-tc.keep_states]:
            old.unlink(missing_ok=True)
    d.barrier()
    return entry
