"""The fast paths of mmnas.ops (fused attention, LayerNorm, dropout) against naive references written here from the
spec: same outputs and gradients to fp32 tolerance, with and without padding and relation bias, in evaluation and in
training. Comparisons under dropout use set_dropout_rng("torch") (F.dropout's own draws, so even dropout numbers
agree); the default fast mask stream is checked on its own: rate, seeding, and gradients that use its masks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmnas.models.build import build_network, build_supernet
from mmnas.models.losses import vqa_loss
from mmnas.models.model_config import ModelConfig
from mmnas.nas import supernet as sn
from mmnas.ops import build_op
from mmnas.ops.attention import MultiHeadAttention
from mmnas.ops.layers import (MLP, LayerNorm, _draw_and_mask, dropout, dropout_residual_norm, dropout_rng,
                              fast_paths, fast_paths_enabled, relu_dropout, set_dropout_rng)
from tests.helpers import close, padded_vqa_batch

H, HEADS, D = 128, 2, 64


@pytest.fixture()
def torch_rng():
    """F.dropout's own draws in the fast path, so that dropout numbers can be compared with the naive path."""
    before = dropout_rng()
    set_dropout_rng("torch")
    yield
    set_dropout_rng(before)


# -- references, written from the spec ----------------------------------------------------------------------------
def reference_layernorm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    std = torch.sqrt(((x - mean) ** 2).sum(-1, keepdim=True) / (x.size(-1) - 1))  # unbiased, eps on the std
    return w * (x - mean) / (std + eps) + b


def reference_attention(att: MultiHeadAttention, q_in, kv_in, kv_mask, rel=None, p=0.0):
    """Spec §2: bias-free projections, q·kᵀ/√d (+ log(max(ReLU(Linear(rel)), 1e-6))), −1e9 on padded keys, softmax,
    dropout on the map (one F.dropout over [B,h,Lq,Lk], as the release), values, merge."""
    b, lq, lk = q_in.size(0), q_in.size(1), kv_in.size(1)

    def heads(t, n):
        return t.reshape(b, n, att.heads, att.head_size).permute(0, 2, 1, 3)

    q = heads(q_in @ att.linear_q.weight.T, lq)
    k = heads(kv_in @ att.linear_k.weight.T, lk)
    v = heads(kv_in @ att.linear_v.weight.T, lk)
    logits = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(att.head_size)
    if rel is not None:
        r = torch.relu(rel @ att.linear_rel.weight.T + att.linear_rel.bias)  # [B,N,N,h]
        logits = logits + torch.log(torch.clamp(r, min=1e-6)).permute(0, 3, 1, 2)
    if kv_mask is not None:
        logits = torch.where(kv_mask, torch.full_like(logits, -1e9), logits)
    weights = F.dropout(torch.softmax(logits, -1), p, p > 0)
    out = torch.einsum("bhqk,bhkd->bhqd", weights, v).permute(0, 2, 1, 3).reshape(b, lq, -1)
    return out @ att.linear_merge.weight.T


def make_inputs(pad: bool, seed: int = 0, b: int = 3, ls: int = 7, lo: int = 5):
    g = torch.Generator().manual_seed(seed)
    s, other = torch.randn(b, ls, H, generator=g), torch.randn(b, lo, H, generator=g)
    rel = torch.randn(b, ls, ls, 64, generator=g)
    s_mask = torch.zeros(b, 1, 1, ls, dtype=torch.bool)
    o_mask = torch.zeros(b, 1, 1, lo, dtype=torch.bool)
    if pad:  # different amounts of padding per sample; none fully padded
        for i in range(b):
            s_mask[i, ..., ls - i - 1:] = True
            o_mask[i, ..., lo - i:] = i > 0
    return s, other, rel, s_mask, o_mask


def run_attention(att, fn, q_in, kv_in, mask, rel, seed=None):
    """Output and gradients (inputs, then parameters) of fn(att, …) under one seed."""
    q_in = q_in.clone().requires_grad_(True)
    kv_in = q_in if kv_in is None else kv_in.clone().requires_grad_(True)
    rel = None if rel is None else rel.clone().requires_grad_(True)
    att.zero_grad(set_to_none=True)
    if seed is not None:
        torch.manual_seed(seed)
    out = fn(q_in, kv_in, mask, rel)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    grads = [t.grad for t in (q_in, kv_in, rel) if t is not None and t.grad is not None]
    grads += [p.grad for p in att.parameters()]
    return out.detach(), grads


@pytest.mark.parametrize("kind", ["self", "guided", "relation"])
@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("regime", ["eval", "train_p0", "train_dropout"])
def test_attention_fast_path_equals_reference(kind, pad, regime, torch_rng):
    torch.manual_seed(0)
    p = 0.1 if regime == "train_dropout" else 0.0
    att = MultiHeadAttention(H, D, p, rel_size=64 if kind == "relation" else None)
    att.train(regime != "eval")
    s, other, rel, s_mask, o_mask = make_inputs(pad)
    kv, mask = (other, o_mask) if kind == "guided" else (None, s_mask)
    rel = rel if kind == "relation" else None
    assert fast_paths_enabled()
    fast = run_attention(att, lambda q, k, m, r: att(q, k, m, r), s, kv, mask, rel, seed=7)
    ref = run_attention(att, lambda q, k, m, r: reference_attention(att, q, k, m, r, p), s, kv, mask, rel, seed=7)
    close(fast[0], ref[0])
    assert len(fast[1]) == len(ref[1])
    for a, b in zip(fast[1], ref[1]):
        close(a, b, 5e-5)


@pytest.mark.parametrize("kind", ["self", "guided", "relation"])
def test_attention_with_frozen_weights_gives_the_reference_input_gradients(kind, torch_rng):
    """As in an arch step: the weights take no gradient (the merge's input is then not rebuilt), the inputs do."""
    torch.manual_seed(0)
    att = MultiHeadAttention(H, D, 0.1, rel_size=64 if kind == "relation" else None).train()
    for p in att.parameters():
        p.requires_grad_(False)
    s, other, rel, s_mask, o_mask = make_inputs(True)
    kv, mask = (other, o_mask) if kind == "guided" else (None, s_mask)
    rel = rel if kind == "relation" else None
    fast = run_attention(att, lambda q, k, m, r: att(q, k, m, r), s, kv, mask, rel, seed=3)
    ref = run_attention(att, lambda q, k, m, r: reference_attention(att, q, k, m, r, 0.1), s, kv, mask, rel, seed=3)
    close(fast[0], ref[0])
    assert all(p.grad is None for p in att.parameters())
    inputs = [(a, b) for a, b in zip(fast[1], ref[1]) if a is not None or b is not None]
    assert len(inputs) == (3 if kind == "relation" else 2)  # run_attention lists q_in twice for a self-attention
    for a, b in inputs:
        close(a, b, 5e-5)


@pytest.mark.parametrize("kind", ["self", "guided", "relation"])
def test_attention_training_gradients_pass_finite_differences(kind):
    """The training function (dropout on, masks fixed by reseeding before every call) in float64 against central
    finite differences: inputs, q/k/v/merge weights and the relation projection."""
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 4, 0.2, rel_size=4 if kind == "relation" else None).double().train()
    with torch.no_grad():
        for p in att.parameters():
            p.mul_(3.0)  # logits of order 1: the softmax's gradient is not negligible next to the values' path
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    other = torch.randn(2, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    rel = torch.rand(2, 5, 5, 4, generator=g, dtype=torch.float64) + 0.5
    mask = torch.zeros(2, 1, 1, 5, dtype=torch.bool)
    mask[1, ..., 4:] = True
    names = [n for n, _ in att.named_parameters()]
    called = []
    hook = att.register_forward_hook(lambda m, i, o: called.append(o.grad_fn.name()))

    def run(s_, other_, *params):
        torch.manual_seed(5)
        args = (s_, other_, None) if kind == "guided" else (s_, s_, mask, rel if kind == "relation" else None)
        return torch.func.functional_call(att, dict(zip(names, params)), args)

    inputs = (s, other, *att.parameters())
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)
    hook.remove()
    assert called and all(name == "_AttentionFunctionBackward" for name in called), set(called)


@pytest.mark.parametrize("kind", ["self", "guided"])
def test_attention_in_training_keeps_neither_the_dropped_map_nor_the_merge_input(kind):
    """What a training forward saves beyond its inputs and weights: q/k/v (one head-major tensor per product), the
    softmax output and the 1-byte mask — not the dropped map nor the [B,L,h·d] input of the merge (rebuilt in the
    backward)."""
    torch.manual_seed(0)
    att = MultiHeadAttention(H, D, 0.1).train()
    s, other, _, s_mask, o_mask = make_inputs(True)
    s.requires_grad_(True)
    kv, mask = (other, o_mask) if kind == "guided" else (s, s_mask)
    known = {t.untyped_storage().data_ptr() for t in (s, other, *att.parameters())}
    saved = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in known:
            saved.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = att(s, kv, mask)
    b, ls, lo = s.size(0), s.size(1), other.size(1)
    lk = lo if kind == "guided" else ls
    packed = [(b, HEADS, ls, D), (2, b, HEADS, lo, D)] if kind == "guided" else [(3, b, HEADS, ls, D)]
    maps = [(b, HEADS, ls, lk)]
    # The weights concatenated for the q/k/v product are saved by it (for the input gradient; parameter-sized).
    weight_cats = [] if kind == "guided" else [(H, 3 * H)]  # saved transposed
    assert sorted(shape for shape, dt in saved if dt == torch.float32 and shape != ()) == \
        sorted(packed + maps + weight_cats)
    assert [shape for shape, dt in saved if dt == torch.bool] == maps
    out.backward(torch.ones_like(out))
    assert s.grad is not None and all(p.grad is not None for p in att.parameters())


def test_fully_padded_rows_keep_the_release_uniform_weights():
    """A sample whose keys are all padding: masked_fill(−1e9) gives uniform weights; the fast path must too."""
    torch.manual_seed(0)
    att = MultiHeadAttention(H, D, 0.0).eval()
    s, other, _, _, o_mask = make_inputs(False)
    o_mask[1] = True
    with torch.no_grad():
        out = att(s, other, o_mask)
        ref = reference_attention(att, s, other, o_mask)
        with fast_paths(False):
            naive = att(s, other, o_mask)
    close(out, ref)
    close(out, naive)
    v = other[1] @ att.linear_v.weight.T
    close(out[1], (v.mean(0) @ att.linear_merge.weight.T).expand_as(out[1]))


def test_layernorm_fast_path_equals_formula_with_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 96, generator=g) * 3 + 1
    w, b = torch.randn(96, generator=g), torch.randn(96, generator=g)
    grad = torch.randn(4, 6, 96, generator=g)
    ln = LayerNorm(96)
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(b)
    xs = x.clone().requires_grad_(True)
    out = ln(xs)
    out.backward(grad)
    # The reference in float64: both fp32 paths must be within fp32 rounding of it.
    x64, w64, b64 = (t.double().requires_grad_(True) for t in (x, w, b))
    ref = reference_layernorm(x64, w64, b64)
    ref.backward(grad.double())
    close(out.double(), ref.detach(), 1e-6)
    for ours, theirs in ((xs.grad, x64.grad), (ln.weight.grad, w64.grad), (ln.bias.grad, b64.grad)):
        close(ours.double(), theirs, 1e-5)
    # No-grad and frozen-weight calls take the same formula.
    with torch.no_grad():
        close(ln(x), out.detach(), 1e-6)
    ln.requires_grad_(False)
    xs.grad = None
    ln(xs).backward(grad)
    close(xs.grad.double(), x64.grad, 1e-5)


def test_layernorm_constant_rows_give_the_bias_and_finite_gradients():
    ln = LayerNorm(8)
    with torch.no_grad():
        ln.bias.uniform_(-1, 1)
    x = torch.full((2, 8), 3.0, requires_grad=True)
    out = ln(x)
    torch.testing.assert_close(out, ln.bias.detach().expand(2, 8))  # (x − mean) = 0: the release's formula gives b
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_dropout_draws_the_same_masks_as_f_dropout(torch_rng):
    x = torch.randn(4, 50, 33, requires_grad=True)
    torch.manual_seed(3)
    ref = F.dropout(x, 0.1, True)
    ref.backward(torch.ones_like(ref))
    ref_grad, x.grad = x.grad, None
    torch.manual_seed(3)
    out = dropout(x, 0.1, True)
    out.backward(torch.ones_like(out))
    assert torch.equal(out, ref) and torch.equal(x.grad, ref_grad)
    assert dropout(x, 0.1, False) is x and dropout(x, 0.0, True) is x


def test_relu_dropout_equals_relu_then_dropout(torch_rng):
    h = torch.randn(6, 40, 64, requires_grad=True)
    upstream = torch.randn(6, 40, 64)
    torch.manual_seed(5)
    ref = F.dropout(F.relu(h), 0.1, True)
    ref.backward(upstream)
    ref_grad, h.grad = h.grad, None
    torch.manual_seed(5)
    out = relu_dropout(h, 0.1, True)
    out.backward(upstream)
    assert torch.equal(out, ref) and torch.equal(h.grad, ref_grad)


def test_mlp_train_mode_equals_naive(torch_rng):
    torch.manual_seed(0)
    mlp = MLP(32, 128, 16, 0.1).train()
    x = torch.randn(3, 9, 32)
    results = []
    for fast in (True, False):
        mlp.zero_grad()
        xs = x.clone().requires_grad_(True)
        torch.manual_seed(11)
        with fast_paths(fast):
            out = mlp(xs)
        out.pow(2).sum().backward()
        results.append((out.detach(), xs.grad, [p.grad for p in mlp.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = results
    assert torch.equal(o1, o2) and torch.equal(g1, g2)
    for a, b in zip(p1, p2):
        close(a, b, 1e-6)


def test_fast_mask_stream_has_the_rate_the_seed_and_the_gradients():
    assert dropout_rng() == "fast"  # the default
    x = (torch.rand(200_000) + 0.5).requires_grad_(True)
    torch.manual_seed(1)
    a = dropout(x, 0.1, True)
    torch.manual_seed(1)
    b = dropout(x.detach(), 0.1, True)  # the no-grad branch draws the same mask
    assert torch.equal(a.detach(), b)
    kept = a != 0
    assert abs(kept.double().mean().item() - 0.9) < 5 * math.sqrt(0.09 / x.numel())
    scale = torch.ones(()).div_(0.9)
    assert torch.equal(a[kept], x[kept] * scale)
    a.backward(torch.ones_like(a))
    assert torch.equal(x.grad, kept * scale)
    # relu_dropout: ReLU then the same kind of mask; the gradient passes where both passed.
    h = torch.randn(50_000, requires_grad=True)
    torch.manual_seed(2)
    out = relu_dropout(h, 0.1, True)
    torch.manual_seed(2)
    mask = dropout(torch.ones(50_000), 0.1, True) != 0
    assert torch.equal(out, torch.where(mask, F.relu(h.detach()), 0.0) * scale)
    out.backward(torch.ones_like(out))
    assert torch.equal(h.grad, (mask & (h.detach() > 0)) * scale)
    with pytest.raises(ValueError, match="valid"):
        set_dropout_rng("philox")


def test_fast_masks_do_not_depend_on_the_thread_count():
    x = torch.randn(3, 50_000)  # large enough for the helper thread
    before = torch.get_num_threads()
    masks, grads = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xs = x.clone().requires_grad_(True)
            torch.manual_seed(8)
            out = dropout(xs, 0.1, True)
            out.backward(x)  # the mask applied to an upstream gradient, in halves on two threads
            masks.append(out.detach())
            grads.append(xs.grad)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*masks) and torch.equal(*grads)
    assert torch.equal(grads[0], (masks[0] != 0) * x * torch.ones(()).div_(0.9))


@pytest.mark.parametrize("name", ["self_att_64", "guided_att_64", "rel_self_att_64", "feed_forward"])
def test_ops_in_training_equal_naive_under_one_seed(name, torch_rng):
    torch.manual_seed(0)
    op = build_op(name, ModelConfig(hidden_size=H)).train()
    s, other, rel, s_mask, o_mask = make_inputs(True)
    results = []
    for fast in (True, False):
        op.zero_grad()
        ss = s.clone().requires_grad_(True)
        torch.manual_seed(9)
        with fast_paths(fast):
            out = op(ss, other, s_mask, o_mask, rel)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append((out.detach(), [ss.grad] + [p.grad for p in op.parameters()]))
    close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        close(a, b, 5e-5)


@pytest.mark.parametrize("train", [False, True])
def test_network_fast_equals_naive(train, torch_rng):
    torch.manual_seed(0)
    net = build_network("vqa", "arch/mmnas_vqa.json", vocab_size=50, answer_size=10, hidden_size=H, feat_size=32,
                        flat_mlp_size=64)
    net.train(train)
    batch = padded_vqa_batch()
    results = []
    for fast in (True, False):
        net.zero_grad()
        torch.manual_seed(4)
        with fast_paths(fast):
            out = net(batch)
        vqa_loss(out, batch["target"]).backward()
        results.append((out.detach(), {n: p.grad for n, p in net.named_parameters()}))
    close(results[0][0], results[1][0])
    grad_scale = max(float(g.abs().max()) for g in results[1][1].values())
    for name, g in results[1][1].items():
        # Relative to the largest gradient: some are pure rounding noise (e.g. the pooling logits' bias, whose
        # gradient is exactly zero in exact arithmetic: a constant added to every logit cancels in the softmax).
        assert float((results[0][1][name] - g).abs().max()) <= 5e-5 * grad_scale, name


def test_arch_step_full_mode_runs_inactive_candidates_without_graph_and_weights_get_no_gradient(torch_rng):
    torch.manual_seed(0)
    net = build_supernet("vqa", vocab_size=50, answer_size=10, hidden_size=H, feat_size=32, flat_mlp_size=64,
                         nodes={"enc": 2, "dec": 3}).train()
    weights = net.weight_parameters()
    batch = padded_vqa_batch()
    seen = []
    hooks = [op.register_forward_hook(lambda m, i, o: seen.append((m, o.requires_grad)))
             for mixed in sn.mixed_ops(net) for op in mixed.candidates]
    gate_grads = []
    for fast in (True, False):
        seen.clear()
        net.zero_grad(set_to_none=True)
        for p in weights:
            p.requires_grad_(False)  # as the searcher's arch step (engine.searcher.frozen)
        torch.manual_seed(2)
        with fast_paths(fast), net.sampling("full", torch.Generator().manual_seed(1)):
            vqa_loss(net(batch), batch["target"]).backward()
            active = {id(m.candidates[m.active]) for m in sn.mixed_ops(net)}
        for p in weights:
            p.requires_grad_(True)
        assert all(p.grad is None for p in weights)
        # Every candidate ran; only sampled ones built an autograd graph (not all of them: with frozen weights, an
        # op that reads nothing downstream of a gate — the first node of each cell — needs no graph either).
        assert len(seen) == sum(len(m.candidates) for m in sn.mixed_ops(net))
        assert not any(req for m, req in seen if id(m) not in active)
        assert any(req for m, req in seen if id(m) in active)
        gate_grads.append([m.gate.grad.clone() for m in sn.mixed_ops(net)])
    for h in hooks:
        h.remove()
    for a, b in zip(*gate_grads):
        close(a, b, 5e-5)


@pytest.mark.parametrize("rng", ["fast", "torch"])
def test_fused_dropout_residual_norm_equals_its_parts_and_overwrites_only_the_op_output(rng):
    before = dropout_rng()
    set_dropout_rng(rng)
    try:
        torch.manual_seed(0)
        norm, lin = LayerNorm(H), torch.nn.Linear(H, H)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
        s = torch.randn(3, 9, H, requires_grad=True)
        weights = torch.randn(3, 9, H)
        results = []
        for fused in (True, False):
            for t in (s, norm.weight, norm.bias, lin.weight, lin.bias):
                t.grad = None
            torch.manual_seed(3)
            f = lin(s)                       # a Linear's 3-D output: a view of its 2-D product
            f_before = f.detach().clone()
            out = dropout_residual_norm(s, f, 0.1, True, norm) if fused else norm(s + dropout(f, 0.1, True))
            (out * weights).sum().backward()
            results.append([out.detach(), s.grad, norm.weight.grad, norm.bias.grad, lin.weight.grad, lin.bias.grad])
            if not fused:
                assert torch.equal(f.detach(), f_before)  # the unfused path leaves f alone
        for a, b in zip(*results):
            close(a, b, 1e-6)
    finally:
        set_dropout_rng(before)
    # In evaluation the sum is built in f's buffer too; s is never touched.
    s0 = s.detach().clone()
    with torch.no_grad():
        out = dropout_residual_norm(s.detach(), lin(s.detach()), 0.1, False, norm)
    close(out, norm(s0 + lin(s0)).detach(), 1e-6)
    assert torch.equal(s.detach(), s0)


@pytest.mark.parametrize("rng", ["fast", "torch"])
def test_residual_added_in_the_mask_pass_equals_the_sum_bit_for_bit(rng):
    """s + dropout(f) built in the mask pass: NumPy blocks (contiguous), torch's kernels (a strided residual, or
    F.dropout's own draws); and the no-grad training step of dropout_residual_norm equals norm(s + dropout(f))."""
    before = dropout_rng()
    set_dropout_rng(rng)
    try:
        g = torch.Generator().manual_seed(0)
        f = torch.randn(700, 400, generator=g)  # 280k elements: two chunks of several blocks
        scale = torch.ones(()).div_(0.9)
        for s in (torch.randn(700, 400, generator=g), torch.randn(400, 700, generator=g).t()):
            torch.manual_seed(4)
            fused = _draw_and_mask(f.clone(), 0.1, scale, out=None, residual=s)[0]
            torch.manual_seed(4)
            assert torch.equal(fused, s + dropout(f, 0.1, True))
        norm = LayerNorm(400)
        s = torch.randn(7, 100, 400, generator=g)
        with torch.no_grad():
            torch.manual_seed(6)
            fused = dropout_residual_norm(s, f.view(7, 100, 400).clone(), 0.1, True, norm)
            torch.manual_seed(6)
            assert torch.equal(fused, norm(s + dropout(f.view(7, 100, 400), 0.1, True)))
    finally:
        set_dropout_rng(before)


def test_relu_dropout_never_overwrites_a_tensor_the_caller_owns():
    h = torch.randn(1000, requires_grad=True)   # a leaf: must stay as it was
    h0 = h.detach().clone()
    relu_dropout(h, 0.5, True).sum().backward()
    assert torch.equal(h.detach(), h0)


def test_no_grad_training_forward_masks_intermediates_in_place_with_the_same_numbers():
    """The inactive candidates of an arch step: train mode without a graph (fast mask stream)."""
    assert dropout_rng() == "fast"
    torch.manual_seed(0)
    mlp = MLP(H, 4 * H, H, 0.1).train()
    x = torch.randn(2, 7, H)
    x0 = x.clone()
    with torch.no_grad():
        torch.manual_seed(5)
        fast = mlp(x)
        torch.manual_seed(5)
        ref = mlp.fc2(dropout(F.relu(mlp.fc1(x)), 0.1, True))
        att = torch.softmax(torch.randn(2, 3, 5, 5), -1)
        torch.manual_seed(6)
        a = dropout(att.clone(), 0.1, True, overwrite=True)
        torch.manual_seed(6)
        b = dropout(att, 0.1, True)
    assert torch.equal(fast, ref) and torch.equal(a, b)
    assert torch.equal(x, x0)


def _reference_keep(seed_draw: int, n: int, p: float) -> torch.Tensor:
    """The fast stream as documented: two PCG64 streams [seed, i] over the halves, 32-bit uniforms ≥ round(p·2³²)."""
    import numpy as np
    threshold = np.uint32(round(p * 2 ** 32))
    halves = [0, n // 2, n]
    parts = [np.random.PCG64([seed_draw, i]).random_raw((halves[i + 1] - halves[i] + 1) // 2).view(np.uint32)
             [:halves[i + 1] - halves[i]] >= threshold for i in range(2)]
    return torch.from_numpy(np.concatenate(parts))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_stream_is_one_stream_per_half_and_masks_like_f_dropout(dtype):
    """Masks are drawn and applied block by block (NumPy for fp32, torch's kernels for bf16): the stream must be
    the documented one whatever the blocks, and a dropped entry is x·0 as F.dropout computes it (NaN and ±inf stay
    NaN, negative entries give −0)."""
    n = 4 * (1 << 18) + 7  # several blocks per half, odd halves
    x = torch.randn(n).to(dtype)
    x[:6] = torch.tensor([float("nan"), float("inf"), -float("inf"), -2.0, 0.0, 3.0]).to(dtype)
    torch.manual_seed(4)
    seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
    keep = _reference_keep(seed, n, 0.1)
    scale = torch.ones((), dtype=dtype).div_(0.9)
    torch.manual_seed(4)
    out = dropout(x.clone(), 0.1, True)
    ref = (x * keep) * scale
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.nan_to_num(), ref.nan_to_num())
    assert torch.equal(out.signbit(), ref.signbit())
    torch.manual_seed(4)
    out = relu_dropout(x.clone().requires_grad_(True), 0.1, True).detach()
    ref = F.relu(x * keep * scale)
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.nan_to_num(), ref.nan_to_num())


def test_an_overwritten_buffer_that_another_op_saved_makes_the_backward_raise():
    """NumPy writes behind autograd's back; the masks bump the version counter so that a function which had saved
    the overwritten Linear output (here sin) refuses to compute wrong gradients."""
    lin = torch.nn.Linear(16, 64)
    h = lin(torch.randn(8000, 16))
    saved_elsewhere = torch.sin(h)  # sin saves its input
    out = relu_dropout(h, 0.1, True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (out.sum() + saved_elsewhere.sum()).backward()


@pytest.mark.parametrize("shape", [(4, 2, 9, 9), (4, 2, 9, 14), (2, 3, 5, 100)])
def test_softmax_backward_into_its_own_gradient_equals_the_out_of_place_kernel(shape):
    """The attention core's backward writes softmax's input gradient over the output gradient; that relies on the
    kernel reading each row's Σ grad·y before writing the row."""
    y = torch.softmax(torch.randn(shape), dim=-1)
    g = torch.randn(shape)
    ref = torch._softmax_backward_data(g, y, -1, y.dtype)
    out = torch.ops.aten._softmax_backward_data.out(g, y, -1, y.dtype, grad_input=g)
    assert out.data_ptr() == g.data_ptr() and torch.equal(out, ref)
