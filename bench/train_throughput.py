"""Training throughput and MFU of the LLaMA-style model against a minimal nanoGPT-style baseline.

    python bench/train_throughput.py                      # CPU, 2 threads, fp32 + bf16, shapes a and b
    python bench/train_throughput.py --compile            # the same under torch.compile (both models)
    python bench/train_throughput.py --device cuda --shapes c,d   # GPU, bf16, ~124M and ~354M params
    python bench/train_throughput.py --write-results      # also update bench/RESULTS.md

A step is forward + cross-entropy + backward + AdamW (the same optimizer settings for both models).
Both models are timed step by step in alternation in one process, so a noisy neighbour slows both
alike. Like timeit, the figures use the best step (the median is shown beside it): on a shared
machine the best step is the stable estimate of what the code can do, and the matmul peak is a best
too. MFU = tokens/s * training FLOPs/token / peak, where the peak is the
best large square matmul this run measures in that precision, and FLOPs/token is the PaLM formula in
losslens/model/counts.py applied to both models alike (6 * matmul params incl. LM head + 12*L*T*d).
On CUDA the MFU column is against the vendor's dense peak from losslens/train/mfu.py when the card is in
that table (what the trainer reports), else against the measured matmul peak; TF32 is on, as in training.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_gpt import GPT  # noqa: E402

from losslens.model import LlamaLM, ModelConfig, flops_per_token  # noqa: E402

VOCAB = 4096
SHAPES = {  # name: (n_layers, n_heads, d_model, seq_len, batch)
    "a": (4, 4, 128, 256, 32),
    "b": (6, 6, 384, 256, 16),
    "c": (12, 12, 768, 1024, 8),    # GPT-2 small scale, ~124M params with a 50k vocab (--vocab 50304)
    "d": (24, 16, 1024, 1024, 8),   # GPT-2 medium scale, ~354M params with a 50k vocab
}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- train_throughput:begin -->", "<!-- train_throughput:end -->"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str, sizes=(2048, 4096), seconds: float = 1.0) -> float:
    """FLOP/s of the fastest large square matmul in `dtype` (the roofline MFU is measured against)."""
    best = 0.0
    for n in sizes if device == "cpu" else (8192,):
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        a @ b
        sync(device)
        start = time.perf_counter()
        for _ in range(1000):
            t = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
            if time.perf_counter() - start > seconds:
                break
    return best


def build(kind: str, shape: str, device: str, vocab: int = VOCAB) -> tuple[torch.nn.Module, int]:
    """(model, training FLOPs per token) for 'ours' or 'baseline' at one of SHAPES."""
    n_layers, n_heads, d, seq, _ = SHAPES[shape]
    torch.manual_seed(0)
    if kind == "ours":  # plain multi-head attention, so the attention shapes match the baseline's
        cfg = ModelConfig(vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=n_heads, max_seq_len=seq)
        return LlamaLM(cfg).to(device), flops_per_token(cfg, seq)
    model = GPT(vocab, d, n_layers, n_heads, seq).to(device)
    return model, 6 * (model.non_embedding_params() + d * vocab) + 12 * n_layers * seq * d


class Trainer:
    """One model, its optimizer and a fixed batch; `step()` runs and times one full training step."""

    def __init__(self, kind: str, shape: str, precision: str, device: str, compile: bool, vocab: int = VOCAB):
        self.model, self.flops = build(kind, shape, device, vocab)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-4, betas=(0.9, 0.95),
                                     weight_decay=0.1, fused=True)
        _, _, _, seq, batch = SHAPES[shape]
        g = torch.Generator().manual_seed(1)
        data = torch.randint(0, vocab, (batch, seq + 1), generator=g).to(device)
        self.x, self.y = data[:, :-1], data[:, 1:]
        self.tokens = batch * seq
        self.device, self.dtype = device, torch.bfloat16 if precision == "bf16" else None
        self.forward = torch.compile(self.model) if compile else self.model
        self.times: list[float] = []

    clock = staticmethod(time.perf_counter)  # --clock cpu: time.process_time (robust to a busy machine)

    def step(self, record: bool = True) -> float:
        sync(self.device)
        start = self.clock()
        with torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.forward(self.x, self.y)  # each model's own loss path
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        sync(self.device)
        elapsed = self.clock() - start
        if record:
            self.times.append(elapsed)
        return elapsed


def measure(shape: str, precision: str, args) -> dict[str, Trainer]:
    trainers = {k: Trainer(k, shape, precision, args.device, args.compile, args.vocab) for k in ("ours", "baseline")}
    for t in trainers.values():
        for _ in range(args.warmup):
            t.step(record=False)
    for _ in range(args.steps):  # alternate step by step, so background load hits both models alike
        for t in trainers.values():
            t.step()
    return trainers


def machine(device: str) -> str:
    if device == "cuda":
        chip = torch.cuda.get_device_name()
    else:
        chip = platform.processor() or "unknown CPU"
        with open("/proc/cpuinfo") as f:
            chip = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), chip)
    return (f"{chip}; {torch.get_num_threads()} threads; torch {torch.__version__}; "
            f"Python {platform.python_version()}; {datetime.date.today().isoformat()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    ap.add_argument("--shapes", default="a,b", help="comma-separated subset of: " + ",".join(SHAPES))
    ap.add_argument("--precisions", default=None, help="fp32,bf16 (CPU default) or bf16 (CUDA default)")
    ap.add_argument("--vocab", type=int, default=VOCAB, help=f"vocabulary size (default {VOCAB})")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: time steps in process CPU time (with --threads 1, robust to other jobs on the machine)")
    ap.add_argument("--write-results", action="store_true", help=f"update the section in {RESULTS.name}")
    args = ap.parse_args(argv)
    if args.clock == "cpu":
        Trainer.clock = staticmethod(time.process_time)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as the trainer does
    precisions = (args.precisions or ("bf16" if args.device == "cuda" else "fp32,bf16")).split(",")
    shapes = args.shapes.split(",")

    def measure_peaks() -> dict[str, float]:
        if args.device == "cuda":
            from losslens.train.mfu import peak_flops
            table = {p: peak_flops(torch.cuda.get_device_name(), p) for p in precisions}
            if all(table.values()):
                return table
        return {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, args.device) for p in precisions}

    peaks = measure_peaks()
    print(machine(args.device))
    print("matmul peak: " + ", ".join(f"{p} {v / 1e9:,.0f} GFLOP/s" for p, v in peaks.items()))

    print("\n" + HEADER)
    results = []  # (shape, precision, kind, trainer, tokens/s)
    for shape in shapes:
        for precision in precisions:
            trainers = measure(shape, precision, args)
            for kind, t in trainers.items():
                results.append((shape, precision, kind, t, t.tokens / min(t.times)))
                print(format_row(*results[-1], trainers, peaks), flush=True)
    # The peak is measured again at the end and the larger kept: background load that depressed one
    # measurement would otherwise inflate MFU.
    peaks = {p: max(v, w) for (p, v), w in zip(peaks.items(), measure_peaks().values())}
    by_case = {}
    for shape, precision, kind, t, _ in results:
        by_case.setdefault((shape, precision), {})[kind] = t
    rows = [format_row(*r, by_case[r[0], r[1]], peaks) for r in results]
    table = "\n".join([HEADER, *rows])
    print("\nmatmul peak (larger of start and end): "
          + ", ".join(f"{p} {v / 1e9:,.0f} GFLOP/s" for p, v in peaks.items()) + "\n" + table)

    if args.write_results:
        cmd = "python bench/train_throughput.py " + " ".join(a for a in (argv or sys.argv[1:]))
        section = (f"{BEGIN}\n## Training throughput (bench/train_throughput.py)\n\n"
                   f"`{cmd.strip()}`: vocab {args.vocab}, {args.device}, {args.clock} clock, "
                   f"{'torch.compile' if args.compile else 'eager'}, {args.warmup} warm-up + {args.steps} timed "
                   f"steps per model, alternating.\n\n"
                   f"Machine: {machine(args.device)}.  \nMatmul peak measured in the same run: "
                   + ", ".join(f"{p} {v / 1e9:,.0f} GFLOP/s" for p, v in peaks.items()) + ".\n\n"
                   f"{table}\n\n{NOTES}\n{END}")
        write_section(section)
        print(f"updated {RESULTS}")
    return 0


HEADER = ("| shape | precision | model | params | MFLOP/token | ms/step best (median) | tokens/s | MFU | "
          "ours/baseline |\n|---|---|---|---|---|---|---|---|---|")


NOTES = """\
*ours* = `losslens.model.LlamaLM` with `n_kv_heads = n_heads` (so its attention shapes equal the
baseline's), loss from `model(x, y)` (chunked LM head + cross-entropy). *baseline* =
`bench/baseline_gpt.py`, a minimal nanoGPT-style GPT (LayerNorm, learned positions, 4x GELU MLP, tied
head), loss = `F.cross_entropy` of its logits. Both: AdamW(fused=True, betas 0.9/0.95, wd 0.1), a
fixed random batch, the PaLM FLOP formula (docs/model.md). A step = forward + loss + backward + AdamW.
tokens/s and MFU use the best timed step (median step time in parentheses); ours/baseline is the
ratio of best step times measured in the same run."""


def format_row(shape, precision, kind, t, speed, trainers, peaks) -> str:
    n_layers, n_heads, d, seq, batch = SHAPES[shape]
    ratio = f"{min(trainers['baseline'].times) / min(t.times):.2f}x" if kind == "ours" else ""
    return (f"| ({shape}) L{n_layers} H{n_heads} d{d} T{seq} B{batch} | {precision} | {kind} | "
            f"{t.params / 1e6:.2f}M | {t.flops / 1e6:.1f} | {1e3 * min(t.times):.0f} "
            f"({1e3 * statistics.median(t.times):.0f}) | {speed:,.0f} | "
            f"{100 * speed * t.flops / peaks[precision]:.0f}% | {ratio} |")


def write_section(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (between markers), leaving others' sections alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
