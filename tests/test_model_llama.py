"""The LlamaLM forward pass, its fused loss, and the hand-written backwards in losslens/model/ops.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslens.model import LlamaLM, ModelConfig, ops


def tiny(**overrides) -> LlamaLM:
    cfg = ModelConfig(**{**dict(vocab_size=211, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                max_seq_len=48), **overrides})
    torch.manual_seed(0)
    return LlamaLM(cfg)


def tokens(b: int, t: int, vocab: int = 211, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def assert_close_grads(a: dict, b: dict, rtol: float):
    for name in a:
        scale = a[name].abs().max().clamp(min=1e-12)
        assert ((a[name] - b[name]).abs().max() / scale).item() < rtol, name


def test_logits_shape_and_causality():
    model = tiny().eval()
    idx = tokens(2, 40)
    with torch.no_grad():
        logits = model(idx)
        changed = idx.clone()
        changed[:, 30:] = (changed[:, 30:] + 1) % 211
        logits2 = model(changed)
    assert logits.shape == (2, 40, 211) and logits.dtype == torch.float32
    assert torch.equal(logits[:, :30], logits2[:, :30])  # the future never leaks backwards
    assert not torch.allclose(logits[:, 30:], logits2[:, 30:])
    with pytest.raises(ValueError, match="max_seq_len"):
        model(tokens(1, 49))


@pytest.mark.parametrize("gradcheck_case", ["rms_norm", "rms_norm_autocast_path", "rope", "swiglu", "qkv_rope"])
def test_hand_written_backwards_pass_gradcheck(gradcheck_case):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    if gradcheck_case == "rms_norm":
        fn, args = (lambda x, w: ops.rms_norm(x, w, 1e-6)), (rand(2, 3, 8), rand(8))
    elif gradcheck_case == "rope":
        cos, sin = (t.double() for t in ops_tables(8, 5))
        fn, args = (lambda x: ops._RoPE.apply(x, cos[..., :4], sin[..., :4])), (rand(2, 5, 3, 8),)
    elif gradcheck_case == "swiglu":
        fn, args = ops._SwiGLU.apply, (rand(2, 3, 10),)
    elif gradcheck_case == "rms_norm_autocast_path":  # the backward through LayerNorm's kernel
        fn, args = (lambda x, w: ops._RMSNormLN.apply(x, w, 1e-6, torch.float64)), (rand(2, 3, 8), rand(8))
    else:  # qkv_rope: 3 query heads, 1 kv head; each output alone too (the others' gradients absent)
        cos, sin = (t.double() for t in ops_tables(8, 5))
        x = rand(2, 5, 5, 8)
        for i in range(3):
            assert torch.autograd.gradcheck(lambda x, i=i: ops.qkv_rope(x, cos, sin, 3, 1)[i], (x,))
        fn, args = (lambda x: ops.qkv_rope(x, cos, sin, 3, 1)), (x,)
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_ops_give_the_plain_ops_values(dtype):
    """qkv_rope equals rope on q and k (bitwise), the SwiGLU ops equal autograd's silu(gate) * up."""
    g = torch.Generator().manual_seed(0)
    cos, sin = ops_tables(8, 16)
    qkv = torch.randn(4, 16, 5, 8, generator=g).to(dtype).requires_grad_()
    q, k, v = ops.qkv_rope(qkv, cos, sin, 3, 1)
    grads_out = [torch.randn(t.shape, generator=g).to(dtype) for t in (q, k, v)]
    torch.autograd.backward([q, k, v], grads_out)
    fused_grad, qkv.grad = qkv.grad, None
    qk, v2 = qkv.split((4, 1), dim=2)
    q2, k2 = ops.rope(qk, cos, sin).split((3, 1), dim=2)
    torch.autograd.backward([q2, k2, v2], grads_out)
    assert torch.equal(q, q2) and torch.equal(k, k2) and torch.equal(v, v2)
    assert torch.equal(fused_grad, qkv.grad)
    gate_up = torch.randn(4, 16, 12, generator=g).to(dtype).requires_grad_()
    grad_out = torch.randn(4, 16, 6, generator=g).to(dtype)
    results = []
    for fn in (ops.swiglu, lambda t: F.silu(t.chunk(2, -1)[0]) * t.chunk(2, -1)[1]):
        y = fn(gate_up)
        y.backward(grad_out)
        results.append((y, gate_up.grad))
        gate_up.grad = None
    (y, grad), (y_plain, grad_plain) = results
    assert torch.equal(y, y_plain) and torch.equal(grad, grad_plain)


def test_rms_norm_autocast_output_is_the_cast_of_the_fp32_output():
    x = torch.randn(3, 7, 16, requires_grad=True)
    w = (1 + 0.1 * torch.randn(16)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.rms_norm(x, w, 1e-5)
        y_bf16 = ops.rms_norm(x, w, 1e-5, autocast_output=True)
    assert y.dtype == torch.float32  # only where asked
    assert torch.equal(y, ops.rms_norm(x, w, 1e-5))  # the same forward values as plain fp32
    assert y_bf16.dtype == torch.bfloat16 and torch.equal(y_bf16, y.to(torch.bfloat16))
    g = torch.randn(3, 7, 16).to(torch.bfloat16)
    y_bf16.backward(g)
    grads_bf16 = x.grad, w.grad
    x.grad = w.grad = None
    y.backward(g.float())  # the same upstream gradient, as autocast's cast would pass it back
    assert torch.equal(grads_bf16[0], x.grad) and torch.equal(grads_bf16[1], w.grad)


def ops_tables(head_dim: int, t: int):
    from losslens.model.llama import rope_tables

    cos, sin = rope_tables(head_dim, t, 100.0)
    return cos[:, None, :], sin[:, None, :]


def test_fast_ops_equal_the_plain_formulas(monkeypatch):
    """The eager fast path and the plain path torch.compile traces give the same loss and gradients."""
    model = tiny(tie_embeddings=False)
    idx, targets = tokens(3, 48), tokens(3, 48, seed=1)
    fast = model(idx, targets)
    fast.backward()
    fast_grads = grads(model)
    monkeypatch.setattr(ops, "_plain", lambda: True)
    plain = model(idx, targets)
    plain.backward()
    assert abs(fast.item() - plain.item()) < 1e-6
    assert_close_grads(fast_grads, grads(model), rtol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_fused_loss_equals_cross_entropy_of_logits(tie):
    # vocab 4096 -> 512-row chunks; 3 x 200 = 600 rows exercise a full and a partial chunk.
    model = tiny(vocab_size=4096, tie_embeddings=tie, max_seq_len=200)
    idx, targets = tokens(3, 200, 4096), tokens(3, 200, 4096, seed=1)
    targets[0, :17] = -100  # ignored positions, as F.cross_entropy's default ignore_index
    reference = F.cross_entropy(model(idx).reshape(-1, 4096), targets.reshape(-1))
    reference.backward()
    reference_grads = grads(model)
    fused = model(idx, targets)
    (fused * 0.25).backward()  # a scaled loss, as gradient accumulation uses, scales the gradients
    assert abs(fused.item() - reference.item()) < 1e-5
    assert_close_grads({n: g * 0.25 for n, g in reference_grads.items()}, grads(model), rtol=1e-4)
    with torch.no_grad():  # the evaluation path computes no gradients and agrees too
        assert abs(model(idx, targets).item() - reference.item()) < 1e-5


def test_bf16_autocast_trains_and_stays_close_to_fp32():
    model = tiny()
    idx, targets = tokens(4, 48), tokens(4, 48, seed=1)
    fp32 = model(idx, targets)
    fp32.backward()
    fp32_grads = grads(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(idx).dtype == torch.bfloat16
        bf16 = model(idx, targets)
    bf16.backward()
    bf16_grads = grads(model)
    assert abs(bf16.item() - fp32.item()) < 0.02
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in bf16_grads.values())
    assert_close_grads(fp32_grads, bf16_grads, rtol=0.1)


def test_a_few_steps_of_training_reduce_the_loss():
    model = tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = tokens(8, 48)
    x, y = idx[:, :-1], idx[:, 1:]  # memorise one fixed batch
    losses = []
    for _ in range(30):
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
