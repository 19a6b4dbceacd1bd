"""The model's elementwise pieces, each with a hand-written backward for eager mode.

Profiling a CPU training step showed autograd through the pieces of RMSNorm, the rotary embedding and
the SwiGLU gate costing as much as the attention matmuls: eager CPU has no fast RMSNorm kernel
(`F.rms_norm` and `torch._fused_rms_norm` decompose; re-measured on torch 2.13), and autograd
allocates a fresh tensor per elementwise op and zero-fills gradients for chunk/cat/split. Each
function here computes the same formula with fewer passes over memory, and writes its analytic
gradient straight into one buffer (RMSNorm's backward borrows LayerNorm's fused kernel). docs/model.md
has the measurements. Under torch.compile the plain formula is used instead (the compiler
fuses it better than any hand-written version), and on GPU RMSNorm uses the fused `F.rms_norm`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _plain() -> bool:
    return torch.compiler.is_compiling()


# --- RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight ---------------------------------------------------

def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, autocast_output: bool = False) -> torch.Tensor:
    """RMSNorm over the last dim. With `autocast_output`, under CPU autocast the result comes in the
    autocast dtype: the same values the matmul it feeds would cast it to, one pass over memory less."""
    if _plain() or x.device.type != "cpu":
        return F.rms_norm(x, weight.shape, weight, eps)
    if x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype and torch.is_autocast_enabled("cpu"):
        # under autocast only: plain fp32 keeps `_RMSNorm`, whose gradients the trainer's fp32 runs (and
        # the demo's numbers) were made with; LayerNorm's kernel sums in another order (equal to rounding)
        out_dtype = torch.get_autocast_dtype("cpu") if autocast_output else x.dtype
        return _RMSNormLN.apply(x, weight, eps, out_dtype)
    return _RMSNorm.apply(x, weight, eps)


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    r = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.promote_types(x.dtype, torch.float32))
    return r.square_().div_(x.shape[-1]).add_(eps).rsqrt_()  # 1 / rms, from one reduction pass


class _RMSNormLN(torch.autograd.Function):
    """fp32/fp64 RMSNorm under CPU autocast, whose backward is LayerNorm's fused CPU kernel given mean 0 and rstd 1/rms.

    LayerNorm's input gradient has one term more than RMSNorm's, -rstd * mean(g w) (the mean's own
    gradient); it is added back from one matrix-vector product. Saves x (not x_hat): no extra tensor."""

    @staticmethod
    def forward(ctx, x, weight, eps, out_dtype):
        r = _inv_rms(x, eps)
        ctx.save_for_backward(x, r, weight)
        if out_dtype == x.dtype:
            return (x * r).mul_(weight)
        # computed in x's dtype, rounded once to out_dtype on store: what autocast's cast would give
        return torch.mul(x * r, weight, out=torch.empty(x.shape, dtype=out_dtype, device=x.device))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, r, weight = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_x, grad_weight, _ = torch.ops.aten.native_layer_norm_backward(
            grad, x, [x.shape[-1]], torch.zeros_like(r), r, weight, None, [True, True, False])
        mean_gw = torch.mv(grad.reshape(-1, x.shape[-1]), weight).view(r.shape).div_(x.shape[-1])
        grad_x.addcmul_(r, mean_gw)  # r * (g w - x_hat * mean(g w x_hat))
        return grad_x, grad_weight, None, None


class _RMSNorm(torch.autograd.Function):
    """RMSNorm for low-precision x (a model cast to bf16): x_hat in x's dtype, reductions in fp32."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        r = _inv_rms(x, eps)
        x_hat = (x * r).to(x.dtype)
        ctx.save_for_backward(x_hat, r, weight)
        return x_hat * weight

    @staticmethod
    def backward(ctx, grad):
        x_hat, r, weight = ctx.saved_tensors
        grad_x = grad * weight
        mean_dot = torch.linalg.vecdot(grad_x, x_hat, dim=-1).unsqueeze(-1).div_(x_hat.shape[-1])
        grad_x.addcmul_(x_hat, mean_dot, value=-1).mul_(r)  # r * (g w - x_hat * mean(g w x_hat))
        grad_weight = (grad * x_hat).flatten(0, -2).sum(0)
        return grad_x.to(x_hat.dtype), grad_weight.to(weight.dtype), None


# --- Rotary embedding: HF Llama's x * cos + rotate_half(x) * sin ------------------------------------

def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, heads, head_dim) by position; cos/sin are (T, 1, head_dim) with equal halves.

    Non-interleaved: dim i pairs with dim i + head_dim/2. The rotation's transpose is the rotation by
    -angle, which is the backward."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 under autocast, as HF does
    if _plain():
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin
    half = x.shape[-1] // 2
    return _RoPE.apply(x, cos[..., :half], sin[..., :half])


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), written in place into one new tensor."""
    x1, x2 = x.chunk(2, dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out2).addcmul_(x1, sin)
    return out


class _RoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos_half, sin_half):
        ctx.save_for_backward(cos_half, sin_half)
        return _rotate(x, cos_half, sin_half)

    @staticmethod
    def backward(ctx, grad):
        cos_half, sin_half = ctx.saved_tensors
        return _rotate(grad, cos_half, -sin_half), None, None


def qkv_rope(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_heads: int,
             n_kv_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the fused projection qkv (B, T, heads, head_dim), heads = n_heads + 2 n_kv_heads, into
    rope(q), rope(k), v, each (B, T, heads', head_dim).

    Same values as `rope` on q and k; the backward writes the three gradients straight into one
    buffer of qkv's shape (autograd through split would zero-fill and concatenate them: two copies)."""
    if _plain():
        qk, v = qkv.split((n_heads + n_kv_heads, n_kv_heads), dim=2)
        q, k = rope(qk, cos, sin).split((n_heads, n_kv_heads), dim=2)
        return q, k, v
    cos, sin = cos.to(qkv.dtype), sin.to(qkv.dtype)  # bf16 under autocast, as HF does
    return _QKVRoPE.apply(qkv, cos, sin[..., :qkv.shape[-1] // 2], n_heads, n_kv_heads)


def _rotate_full(x: torch.Tensor, cos: torch.Tensor, sin_half: torch.Tensor, sign: int,
                 out: torch.Tensor) -> torch.Tensor:
    """`_rotate` by sign * angle into `out`, with x * cos as one full-width pass (the halves' strided
    passes are the slow ones). Same values: the same products and sums per element."""
    x1, x2 = x.chunk(2, dim=-1)
    out1, out2 = torch.mul(x, cos, out=out).chunk(2, dim=-1)
    out1.addcmul_(x2, sin_half, value=-sign)
    out2.addcmul_(x1, sin_half, value=sign)
    return out


class _QKVRoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, cos, sin_half, n_heads, n_kv_heads):
        ctx.save_for_backward(cos, sin_half)
        ctx.heads = (n_heads, n_kv_heads)
        qk, v = qkv.split((n_heads + n_kv_heads, n_kv_heads), dim=2)
        rotated = _rotate_full(qk, cos, sin_half, 1, torch.empty(qk.shape, dtype=qk.dtype, device=qk.device))
        q, k = rotated.split((n_heads, n_kv_heads), dim=2)
        return q, k, v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_q, grad_k, grad_v):
        cos, sin_half = ctx.saved_tensors
        n_heads, n_kv_heads = ctx.heads
        ref = next(g for g in (grad_q, grad_k, grad_v) if g is not None)
        B, T, _, D = ref.shape
        grad = torch.empty((B, T, n_heads + 2 * n_kv_heads, D), dtype=ref.dtype, device=ref.device)
        out_q, out_k, out_v = grad.split((n_heads, n_kv_heads, n_kv_heads), dim=2)
        for g, out in ((grad_q, out_q), (grad_k, out_k)):
            if g is None:
                out.zero_()
            else:
                _rotate_full(g, cos, sin_half, -1, out)  # the rotation's transpose: rotate by -angle
        if grad_v is None:
            out_v.zero_()
        else:
            out_v.copy_(grad_v)
        return grad, None, None, None, None


# --- SwiGLU gate: silu(gate) * up, from one [gate | up] tensor ---------------------------------------

def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    if _plain():
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
    return _SwiGLU.apply(gate_up)


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up; the backward writes both gradients into one buffer (autograd through chunk
    would zero-fill and concatenate them). Each kernel is the one autograd runs, in the same order, so
    the values equal the plain formula's in fp32 and bf16 alike."""

    @staticmethod
    def forward(ctx, gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        s = F.silu(gate)
        ctx.save_for_backward(gate_up, s)
        return s * up

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        gate_up, s = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        grad_in = torch.empty(gate_up.shape, dtype=grad.dtype, device=grad.device)
        grad_gate, grad_up = grad_in.chunk(2, dim=-1)
        torch.mul(grad, s, out=grad_up)  # g silu(gate)
        torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=grad_gate)  # g up silu'(gate)
        return grad_in


# --- LM head + cross-entropy, without materialising all logits ----------------------------------------

def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100) -> torch.Tensor:
    """Mean of -log softmax(h @ weight.T)[target] over tokens whose target != ignore_index.

    Same value as `F.cross_entropy(h @ weight.T, targets)`, computed over row chunks of ~16 MB of
    logits. When a gradient is needed, each chunk's gradient (softmax - onehot) is turned into
    gradients for h and weight right away, so the (tokens x vocab) logits and their gradient never
    exist in full: 40-55% less time than the plain version on CPU at vocab 4096 (measured).
    """
    h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
    if _plain():
        return F.cross_entropy((h @ weight.t()).float(), targets, ignore_index=ignore_index)
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(h, weight, targets, ignore_index)
    return _chunked_cross_entropy(h, weight, targets, ignore_index, with_grad=False)[0]


def _chunked_cross_entropy(h, weight, targets, ignore_index, with_grad):
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    h_c, w_c = h.to(dtype), weight.to(dtype)  # what autocast would feed the matmuls
    valid = targets != ignore_index
    safe_targets = targets.masked_fill(~valid, 0).unsqueeze(1)
    row_weight = valid.to(torch.float32).div_(valid.sum().clamp(min=1)).unsqueeze(1)  # 1/n or 0
    grad_h = torch.empty_like(h) if with_grad else None
    grad_w = torch.zeros_like(weight, dtype=torch.float32) if with_grad else None
    same = dtype == h.dtype == weight.dtype == torch.float32  # fp32: matmuls write in place
    loss = torch.zeros((), dtype=torch.float32, device=h.device)
    # ~16 MB of fp32 logits per chunk. Smaller chunks were faster still on an idle core (8 MB: -20%)
    # but each chunk's ~10 kernels cost a thread sync, which hurts on an oversubscribed CPU.
    rows = min(max(128, 2**22 // weight.shape[0]), max(h.shape[0], 1))
    # The chunk's logits, log-probabilities and their gradient live in buffers reused across chunks:
    # fresh ~16 MB tensors per chunk cost page faults (measured: ~50 ms/step at vocab 4096).
    vocab = weight.shape[0]
    logits_buf = torch.empty((rows, vocab), dtype=dtype, device=h.device)
    logp_buf = logits_buf if dtype == torch.float32 else torch.empty((rows, vocab), dtype=torch.float32,
                                                                       device=h.device)
    grad_buf = logp_buf if dtype == torch.float32 or not with_grad else logits_buf
    with torch.autocast(device, enabled=False):
        for s in range(0, h.shape[0], rows):
            h_s, t_s, w_s = h_c[s:s + rows], safe_targets[s:s + rows], row_weight[s:s + rows]
            n = h_s.shape[0]
            logits = torch.mm(h_s, w_c.t(), out=logits_buf[:n])
            logp = logp_buf[:n]
            if logp_buf is not logits_buf:
                logp.copy_(logits)  # .float()
            torch.log_softmax(logp, dim=-1, out=logp)
            loss -= (logp.gather(1, t_s) * w_s).sum()
            if not with_grad:
                continue
            # d loss / d logits = (softmax - onehot) / n, built in place over the log-probabilities
            grad_logits = logp.exp_().scatter_add_(1, t_s, -torch.ones_like(w_s)).mul_(w_s)
            if grad_logits.dtype != dtype:
                grad_logits = grad_buf[:n].copy_(grad_logits)  # .to(dtype)
            if same:
                torch.mm(grad_logits, w_c, out=grad_h[s:s + rows])
                grad_w.addmm_(grad_logits.t(), h_s)
            elif grad_h.dtype == dtype:
                torch.mm(grad_logits, w_c, out=grad_h[s:s + rows])
                grad_w += grad_logits.t() @ h_s
            else:
                grad_h[s:s + rows] = grad_logits @ w_c
                grad_w += grad_logits.t() @ h_s
    return loss, grad_h, None if grad_w is None else grad_w.to(weight.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index):
        loss, grad_h, grad_w = _chunked_cross_entropy(h, weight, targets, ignore_index, with_grad=True)
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None
