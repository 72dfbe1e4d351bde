"""The relation bias of relation self-attention (spec §2), computed from the raw pair geometry.

Each relation op adds log(max(ReLU(Linear_op(rel)), 1e-6)) to its logits, rel = ReLU(Linear(4→rel_size))(geometry)
being shared by the ops of a forward. Written out, every op reads the [B,N,N,rel_size] projection (164 MB at batch 64,
N = 100, rel_size 64), and in the backward writes a gradient of that size which autograd then sums over the ops; the
[R,8]×[8,64] products of that backward are also among MKL's slowest shapes. At the release's VQA sizes this cost more
than a second of a nine-second training step.

`PairGeometry` is what the network hands to the relation ops instead: the raw geometry [B,N,N,4] and the shared
projection layer. On the fast path the biases [B,h,N,N] of every relation op of the forward are computed together, in
chunks of a few images with everything in cache; only the raw geometry is saved, and the backward recomputes each
chunk, where it produces the gradients of both projections directly: the [B,N,N,rel_size] tensor and its gradient
never exist. Same formula and numbers to fp32
rounding (sums in another order). The projected tensor is still available (`projected()`, computed once per forward
and cached) for the naive path, autocast, and callers that hand ops a projected tensor themselves (ITM scoring).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

REL_MIN = 1e-6  # the relation bias is log(max(ReLU(·), 1e-6))
_CHUNK_VALUES = 1 << 20  # values per chunk temporary (4 MB in fp32)


class PairGeometry:
    """Raw pair geometry [B,N,N,4] and the shared projection ReLU(`linear`), for the relation ops of one forward.

    `prepare(consumers)` computes the biases of the relation ops that will run (their `linear_rel` layers, in any
    order) in one chunked pass that shares the projection; each op then `take`s its own. An op that was not prepared
    gets its bias computed alone, so a wrong consumer list costs time, never correctness."""

    def __init__(self, raw: torch.Tensor, linear: nn.Linear) -> None:
        self.raw = raw
        self.linear = linear
        self._projected: torch.Tensor | None = None
        self._grad_mode: bool | None = None
        self._biases: dict[int, torch.Tensor] = {}

    def projected(self) -> torch.Tensor:
        """ReLU(Linear(4→rel_size))(raw) [B,N,N,rel_size], computed once (per grad mode) and reused."""
        mode = torch.is_grad_enabled()
        if self._projected is None or self._grad_mode != mode:
            self._projected = F.relu(self.linear(self.raw))
            self._grad_mode = mode
        return self._projected

    def fusable(self, linear_rel: nn.Linear) -> bool:
        lin = self.linear
        return (not self.raw.requires_grad and lin.bias is not None and linear_rel.bias is not None
                and self.raw.dtype == lin.weight.dtype == linear_rel.weight.dtype
                and not torch.is_autocast_enabled(self.raw.device.type))

    def prepare(self, consumers: Sequence[nn.Linear]) -> None:
        """Compute, in one pass, the biases of every op in `consumers` (fast path only)."""
        todo = [c for c in dict.fromkeys(consumers) if id(c) not in self._biases and self.fusable(c)]
        if not todo:
            return
        params = [c.weight for c in todo] + [c.bias for c in todo]
        outs = _FusedRelationBiases.apply(self.raw, self.linear.weight, self.linear.bias, *params)
        self._biases.update((id(c), o) for c, o in zip(todo, outs))

    def take(self, linear_rel: nn.Linear) -> torch.Tensor:
        """The op's bias [B,h,N,N]; a prepared one is handed over (and dropped here, so it is freed after use)."""
        if id(linear_rel) not in self._biases:
            if not self.fusable(linear_rel):
                return relation_bias(self.projected(), linear_rel, fast=True)
            self.prepare([linear_rel])
        return self._biases.pop(id(linear_rel))


def log_bias_naive(rel: torch.Tensor, linear_rel: nn.Linear) -> torch.Tensor:
    """log(max(ReLU(Linear(rel)), 1e-6)) permuted to [B,h,N,N]: the spec's formula, term by term."""
    return torch.log(torch.clamp(F.relu(linear_rel(rel)), min=REL_MIN)).permute(0, 3, 1, 2)


class _LogBiasFunction(torch.autograd.Function):
    """log(max(z, 1e-6)) (= log(max(ReLU(z), 1e-6))); gradient 1/z where z ≥ 1e-6, else 0 — what autograd gives
    through ReLU, clamp and log, saving z only."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return torch.clamp_min(z, REL_MIN).log_()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        return _log_bias_backward(grad, z)


@functools.lru_cache(maxsize=None)
def _below_min(dtype: torch.dtype) -> float:
    """The largest value below 1e-6 in `dtype`: threshold_backward(·, z, t) keeps z > t, i.e. z ≥ 1e-6."""
    return torch.nextafter(torch.tensor(REL_MIN, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item()


def _log_bias_backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # threshold_backward is ReLU's own kernel; torch.where with a scalar is several times slower on CPU.
    return torch.ops.aten.threshold_backward(grad / z, z, _below_min(z.dtype))


def log_bias(z: torch.Tensor) -> torch.Tensor:
    """log(max(ReLU(z), 1e-6)) of an already projected z, saving one tensor for the backward."""
    if torch.is_grad_enabled() and z.requires_grad:
        return _LogBiasFunction.apply(z)
    return torch.clamp_min(z, REL_MIN).log_()


def _chunks(batch: int, pairs: int, heads: int) -> list[tuple[int, int]]:
    """Image ranges whose temporaries ([c,rel_size,P] and [c,Σh,P]) stay around a few MB."""
    step = max(1, _CHUNK_VALUES // max(pairs * max(heads, 64), 1))
    return [(s, min(batch, s + step)) for s in range(0, batch, step)]


def _project_chunk(g_t: torch.Tensor, w1, b1, w2, b2):
    """For a chunk gᵀ [c,4,P]: relᵀ = ReLU(W1·gᵀ + b1) [c,rel,P] and z = W2·relᵀ + b2 [c,Σh,P]."""
    c = g_t.size(0)
    rel_t = torch.baddbmm(b1.view(1, -1, 1), w1.expand(c, -1, -1), g_t).relu_()
    z = torch.baddbmm(b2.view(1, -1, 1), w2.expand(c, -1, -1), rel_t)
    return rel_t, z


class _FusedRelationBiases(torch.autograd.Function):
    """For K ops: [B,h_k,N,N] = log(max(W_k·ReLU(W1·g + b1) + b_k, 1e-6)) from the raw geometry g, in chunks of
    images, with the K projections as one product; saves g only. Inputs: g, W1, b1, W_1…W_K, b_1…b_K."""

    @staticmethod
    def forward(ctx, g, w1, b1, *params):
        k = len(params) // 2
        ws, bs = params[:k], params[k:]
        heads = [w.size(0) for w in ws]
        b, n, m, f = g.shape
        g_t = g.reshape(b, n * m, f).transpose(1, 2)  # [B,4,P]: a strided view, read as a transposed operand
        w_all, b_all = torch.cat(ws), torch.cat(bs)
        outs = [g.new_empty(b, h, n, m) for h in heads]
        flats = [o.view(b, h, n * m) for o, h in zip(outs, heads)]
        for s, e in _chunks(b, n * m, sum(heads)):
            _, z = _project_chunk(g_t[s:e], w1, b1, w_all, b_all)
            for flat, part in zip(flats, z.clamp_min_(REL_MIN).log_().split(heads, dim=1)):
                flat[s:e] = part
        ctx.save_for_backward(g, w1, b1, *params)
        ctx.set_materialize_grads(False)  # ops that ran without a gradient hand back None: they are skipped
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        g, w1, b1, *params = ctx.saved_tensors
        k = len(params) // 2
        ws, bs = params[:k], params[k:]
        live = [i for i, gr in enumerate(grads) if gr is not None]
        none = (None,) * (3 + 2 * k)
        if not live:
            return none
        heads = [ws[i].size(0) for i in live]
        b, n, m, f = g.shape
        g_t = g.reshape(b, n * m, f).transpose(1, 2)
        w_all, b_all = torch.cat([ws[i] for i in live]), torch.cat([bs[i] for i in live])
        grads_flat = [grads[i].reshape(b, h, n * m) for i, h in zip(live, heads)]
        gw1, gb1 = torch.zeros_like(w1), torch.zeros_like(b1)
        gw, gb = torch.zeros_like(w_all), torch.zeros_like(b_all)
        for s, e in _chunks(b, n * m, sum(heads)):
            rel_t, z = _project_chunk(g_t[s:e], w1, b1, w_all, b_all)
            upstream = grads_flat[0][s:e] if len(live) == 1 else torch.cat([gr[s:e] for gr in grads_flat], dim=1)
            dz = _log_bias_backward(upstream, z)                           # [c,Σh,P]
            gb += dz.sum((0, 2))
            gw += torch.bmm(dz, rel_t.transpose(1, 2)).sum(0)              # [Σh,rel]
            d_pre = torch.bmm(w_all.t().expand(e - s, -1, -1), dz)         # [c,rel,P]
            d_pre = torch.ops.aten.threshold_backward(d_pre, rel_t, 0)     # ReLU passed where rel > 0
            gb1 += d_pre.sum((0, 2))
            gw1 += torch.bmm(d_pre, g_t[s:e].transpose(1, 2)).sum(0)       # [rel,4]
        out = list(none)
        out[1], out[2] = gw1, gb1
        for i, gwi, gbi in zip(live, gw.split(heads), gb.split(heads)):
            out[3 + i], out[3 + k + i] = gwi, gbi
        return tuple(out)


def relation_bias(rel: torch.Tensor | PairGeometry, linear_rel: nn.Linear, fast: bool) -> torch.Tensor:
    """The relation bias [B,h,N,N] of one op, from a `PairGeometry` or an already projected [B,N,N,rel_size]."""
    if not fast:
        return log_bias_naive(rel.projected() if isinstance(rel, PairGeometry) else rel, linear_rel)
    if isinstance(rel, PairGeometry):
        return rel.take(linear_rel)
    return log_bias(linear_rel(rel)).permute(0, 3, 1, 2)
