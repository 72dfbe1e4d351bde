"""The relation bias computed from the raw pair geometry (mmnas.ops.relation): several ops' biases in one chunked
pass, against the spec's formula written here in float64 — values and the gradients of both projections, with the
ReLU/clamp boundaries exercised, ops that run without a gradient, ops that were not prepared, and several chunks."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import mmnas.ops.relation as relation
from mmnas.ops.relation import PairGeometry, relation_bias


# log and 1/z amplify fp32 rounding of a z near the 1e-6 floor: values are compared to 1e-3 absolute, gradients
# relative to their largest entry.
def reference_bias(g, lin, op):
    """log(max(ReLU(Linear_op(ReLU(Linear(g)))), 1e-6)) in float64, as [B,h,N,N]."""
    rel = torch.relu(g.double() @ lin.weight.double().T + lin.bias.double())
    z = torch.relu(rel @ op.weight.double().T + op.bias.double())
    return torch.log(torch.clamp(z, min=1e-6)).permute(0, 3, 1, 2)


def make(b=3, n=7, rel_size=16, heads=(4, 2, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(b, n, n, 4, generator=gen)
    lin = nn.Linear(4, rel_size)
    ops = [nn.Linear(rel_size, h) for h in heads]
    with torch.no_grad():
        for p in [lin.weight, lin.bias] + [p for op in ops for p in op.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        ops[1].bias.fill_(-0.3)  # many z ≤ 0: the ReLU/clamp boundary carries weight in the test
    return g, lin, ops


def grads_of(params, loss):
    for p in params:
        p.grad = None
    loss.backward()
    return [None if p.grad is None else p.grad.clone() for p in params]


def test_prepared_biases_equal_the_formula_with_gradients(monkeypatch):
    monkeypatch.setattr(relation, "_CHUNK_VALUES", 200)  # several chunks of one image each
    g, lin, ops = make()
    params = [lin.weight, lin.bias] + [p for op in ops for p in (op.weight, op.bias)]
    weights = [torch.randn(1, h, 7, 7, generator=torch.Generator().manual_seed(h)) for h in (4, 2, 4)]

    pg = PairGeometry(g, lin)
    pg.prepare(ops)
    fast = [pg.take(op) for op in ops]
    ref = [reference_bias(g, lin, op) for op in ops]
    for a, b in zip(fast, ref):
        assert a.shape == b.shape and a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-3)
    assert any(bool((r == torch.log(torch.tensor(1e-6, dtype=torch.float64))).any()) for r in ref)

    got = grads_of(params, sum((f * w).sum() for f, w in zip(fast, weights)))
    want = grads_of(params, sum((r * w.double()).sum() for r, w in zip(ref, weights)))
    for name, a, b in zip(["w1", "b1", "w", "b", "w", "b", "w", "b"], got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()), msg=name)


def test_an_op_without_gradient_is_skipped_and_an_unprepared_op_is_computed_alone():
    g, lin, ops = make()
    pg = PairGeometry(g, lin)
    pg.prepare(ops[:2])                      # ops[2] was not announced
    first = pg.take(ops[0])
    with torch.no_grad():
        second = pg.take(ops[1])             # runs without a graph (an inactive candidate of the arch step)
    third = pg.take(ops[2])
    torch.testing.assert_close(third.double(), reference_bias(g, lin, ops[2]), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(second.double(), reference_bias(g, lin, ops[1]), rtol=1e-4, atol=1e-3)
    params = [lin.weight, lin.bias] + [p for op in ops for p in (op.weight, op.bias)]
    got = grads_of(params, first.sum() + 2 * third.sum())
    want = grads_of(params, reference_bias(g, lin, ops[0]).sum() + 2 * reference_bias(g, lin, ops[2]).sum())
    assert got[4] is None and got[5] is None  # ops[1] gave its bias no gradient: as if it had run alone
    for i in (0, 1, 2, 3, 6, 7):
        torch.testing.assert_close(got[i], want[i], rtol=1e-4, atol=1e-4 * float(want[i].abs().max()))


def test_a_taken_bias_is_handed_over_once_and_the_naive_path_reads_the_projection():
    g, lin, ops = make()
    pg = PairGeometry(g, lin)
    pg.prepare(ops)
    a = pg.take(ops[0])
    b = pg.take(ops[0])                      # computed again, not the same tensor
    assert a is not b and torch.equal(a, b)
    naive = relation_bias(pg, ops[0], fast=False)
    torch.testing.assert_close(naive, a, rtol=1e-4, atol=1e-3)
    assert pg.projected() is pg.projected()  # one projection per forward on the naive path


@pytest.mark.parametrize("why", ["raw requires grad", "autocast"])
def test_inputs_the_fused_pass_does_not_take_fall_back_to_the_projection(why):
    g, lin, ops = make()
    if why == "raw requires grad":
        g.requires_grad_(True)
        pg = PairGeometry(g, lin)
        out = pg.take(ops[0])
        out.sum().backward()
        assert g.grad is not None and g.grad.shape == g.shape
        torch.testing.assert_close(out.double(), reference_bias(g.detach(), lin, ops[0]), rtol=1e-4, atol=1e-3)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = PairGeometry(g, lin).take(ops[0])
        assert out.dtype == torch.bfloat16
        # bf16 z: compared as z (the log of a z near 0 magnifies bf16 rounding without bound)
        torch.testing.assert_close(out.double().exp(), reference_bias(g, lin, ops[0]).exp(), rtol=0.02, atol=0.02)
