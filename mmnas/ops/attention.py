"""Attention ops of the search space (spec §2): self, guided and relation self-attention, with the release's numerics.

Fast path (on by default; `mmnas.ops.layers.use_fast_paths(False)` gives the naive formulas):

* one matrix product for q, k and v of a self-attention (k and v of a guided one), with the weights concatenated on
  the fly, so parameters and checkpoints keep the release's separate `linear_q/k/v`;
* padding as an additive float mask (0 / −1e9) folded with the relation bias. For a row with at least one unpadded key
  this gives exactly the masked_fill(−1e9) numbers: the padded keys' weights are exp(−1e9 − max) = 0 either way.
  A row whose keys are *all* padding (the release gives it uniform weights) takes the naive path on CPU, where the
  check is free; on other devices it keeps the uniform weights whenever its logits are below 32 in magnitude
  (−1e9 + x rounds back to −1e9 in fp32);
* when no dropout is active (evaluation, or model.dropout = 0) and the bias needs no gradient:
  `F.scaled_dot_product_attention` (a fused kernel that never writes the [B,h,L,L] map to memory);
* in training with dropout on CPU, one autograd function from q/k/v to the merge projection's output
  (`_AttentionFunction`, which keeps neither the dropped map nor the merge's input; `linear_merge` is applied through
  its weight there, so module hooks on it do not run); matmul → softmax → dropout → matmul written out, the
  attention-map dropout being `mmnas.ops.layers.dropout` (1-byte mask; by default the fast mask stream described
  there — with `set_dropout_rng("torch")` the very draws of the naive path's F.dropout, and then the same numbers).
  SDPA's own dropout is not used: its masks could match neither.
* the relation bias from the raw pair geometry, shared by the relation ops of a forward (`mmnas.ops.relation`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmnas.models.model_config import ModelConfig
from mmnas.ops.base import ResidualOp
from mmnas.ops.layers import NEG_INF, Dropout, _draw_and_mask, _keep_scale, _mask_mul, dropout, fast_paths_enabled
from mmnas.ops.relation import relation_bias


def _has_fully_padded_row(kv_mask: torch.Tensor | None) -> bool:
    """Whether some query sees only padded keys (checked on CPU only, where it costs no device sync)."""
    return kv_mask is not None and kv_mask.device.type == "cpu" and bool(kv_mask.all(-1).any())


class MultiHeadAttention(nn.Module):
    """Bias-free q/k/v/merge projections, logits q·kᵀ/√d (+ optional per-head relation bias), −1e9 on padded keys,
    softmax, dropout on the map."""

    def __init__(self, hidden_size: int, head_size: int, dropout: float, inner_size: int | None = None,
                 rel_size: int | None = None) -> None:
        super().__init__()
        inner = inner_size or hidden_size
        if inner % head_size:
            raise ValueError(f"attention width {inner} is not a multiple of the head size {head_size}")
        self.head_size = head_size
        self.heads = inner // head_size
        self.inner = inner
        self.linear_q = nn.Linear(hidden_size, inner, bias=False)
        self.linear_k = nn.Linear(hidden_size, inner, bias=False)
        self.linear_v = nn.Linear(hidden_size, inner, bias=False)
        self.linear_merge = nn.Linear(inner, hidden_size, bias=False)
        # The relation bias is the only biased projection of the op (release: linear_r, bias=True).
        self.linear_rel = nn.Linear(rel_size, self.heads) if rel_size else None
        self.dropout = Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_size).transpose(1, 2)  # [B,h,L,d]

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor, kv_mask: torch.Tensor | None,
                rel: torch.Tensor | None = None) -> torch.Tensor:
        if self.linear_rel is not None and rel is None:
            raise ValueError("a relation attention op needs the pair geometry `rel` (a PairGeometry or the projected "
                             "[B,N,N,rel_size] tensor)")
        if fast_paths_enabled() and not _has_fully_padded_row(kv_mask):
            return self._forward_fast(q_in, kv_in, kv_mask, rel)
        return self._forward_naive(q_in, kv_in, kv_mask, rel)

    def _forward_naive(self, q_in, kv_in, kv_mask, rel):
        """The formula as the spec writes it (the reference of the fast path)."""
        q = self._split(self.linear_q(q_in))
        k = self._split(self.linear_k(kv_in))
        v = self._split(self.linear_v(kv_in))
        logits = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_size)  # [B,h,Lq,Lk]
        if self.linear_rel is not None:
            logits = logits + relation_bias(rel, self.linear_rel, fast=False)  # [B,h,N,N]
        if kv_mask is not None:
            logits = logits.masked_fill(kv_mask, NEG_INF)
        att = F.dropout(torch.softmax(logits, dim=-1), self.dropout.p, self.training)
        out = torch.matmul(att, v).transpose(1, 2).reshape(q_in.size(0), -1, self.inner)
        return self.linear_merge(out)

    def _products(self, q_in: torch.Tensor, kv_in: torch.Tensor):
        """One matrix product per input stream, with the weights concatenated on the fly: (qkv [B,L,3,h,d], None)
        for a self-attention, (q [B,Lq,h,d], kv [B,Lk,2,h,d]) otherwise."""
        b, h, d = q_in.size(0), self.heads, self.head_size
        if q_in is kv_in:
            weight = torch.cat([self.linear_q.weight, self.linear_k.weight, self.linear_v.weight])
            return F.linear(q_in, weight).view(b, q_in.size(1), 3, h, d), None
        kv = F.linear(kv_in, torch.cat([self.linear_k.weight, self.linear_v.weight]))
        return self.linear_q(q_in).view(b, q_in.size(1), h, d), kv.view(b, kv_in.size(1), 2, h, d)

    def _project(self, q_in: torch.Tensor, kv_in: torch.Tensor):
        """q, k, v [B,h,L,d] as strided views of the products."""
        q, kv = self._products(q_in, kv_in)
        q, k, v = q.unbind(2) if kv is None else (q, *kv.unbind(2))
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def _project_packed(self, q_in: torch.Tensor, kv_in: torch.Tensor):
        """Head-major copies that the batched products read without copying q, k and v again: (qkv [3,B,h,L,d],
        None) for a self-attention, (q [B,h,Lq,d], kv [2,B,h,Lk,d]) otherwise. One tensor per product, so that the
        backward hands back one gradient per product (autograd would stack three)."""
        q, kv = self._products(q_in, kv_in)
        if kv is None:
            return q.permute(2, 0, 3, 1, 4).contiguous(), None
        return q.transpose(1, 2).contiguous(), kv.permute(2, 0, 3, 1, 4).contiguous()

    def _forward_fast(self, q_in, kv_in, kv_mask, rel):
        mask = None
        if kv_mask is not None:  # [B,1,1,Lk]: 0 for keys, −1e9 for padding
            mask = torch.zeros(kv_mask.shape, dtype=q_in.dtype, device=q_in.device).masked_fill_(kv_mask, NEG_INF)
        bias = None
        if self.linear_rel is not None:
            bias = relation_bias(rel, self.linear_rel, fast=True)  # [B,h,N,N]
        p = self.dropout.p if self.training else 0.0
        root_d = math.sqrt(self.head_size)
        if p == 0.0 and not (bias is not None and bias.requires_grad):
            q, k, v = self._project(q_in, kv_in)
            attn_mask = mask if bias is None else (bias if mask is None else bias + mask)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0 / root_d)
            return self.linear_merge(_heads_to_tokens(out))
        q, kv = self._project_packed(q_in, kv_in)
        if _AttentionFunction.applies(q, kv, bias, mask, p):
            # The merge inside: its [B,L,h·d] input is not kept but rebuilt in the backward.
            merge = self.linear_merge.weight if q.dtype == self.linear_merge.weight.dtype else None
            out = _AttentionFunction.apply(q, kv, bias, mask, merge, p, root_d)
            return out if merge is not None else self.linear_merge(_heads_to_tokens(out))
        out = attention_core(*_unpack(q, kv), bias, mask, p, root_d)
        return self.linear_merge(_heads_to_tokens(out))


def _heads_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[B,h,L,d] → [B,L,h·d] (a copy: the merge's input)."""
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


def _unpack(q: torch.Tensor, kv: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(q.unbind(0)) if kv is None else (q, *kv.unbind(0))


def _logits(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, mask: torch.Tensor | None,
            root_d: float) -> torch.Tensor:
    """q·kᵀ/√d + bias + mask [B,h,Lq,Lk]. matmul's result is fresh and its backward does not read it: scaled and
    masked in place."""
    logits = torch.matmul(q, k.transpose(-2, -1)).div_(root_d)
    if bias is not None:
        logits = logits.add_(bias)
    if mask is not None:
        logits = logits.add_(mask)
    return logits


def _bmm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """a·b of [..., m, k]·[..., k, n] batches written into `out` (contiguous [..., m, n])."""
    return torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), out=out.view(-1, *out.shape[-2:]))


class _AttentionFunction(torch.autograd.Function):
    """softmax(q·kᵀ/√d + bias + mask) → dropout → ·v, then (given `merge`) the merge projection, in training on CPU.

    Inputs as `_project_packed` gives them: q [3,B,h,L,d] holding q, k and v when kv is None, else q [B,h,Lq,d] and
    kv [2,B,h,Lk,d]; the backward returns one gradient per packed tensor. Saves q/k/v, the softmax output and the
    1-byte mask: the dropped map ([B,h,Lq,Lk], which autograd would keep beside the softmax output) and the merge's
    input ([B,Lq,h·d], which the merge Linear would keep) are rebuilt in the backward, at the cost of one
    [Lq,Lk]·[Lk,d] product per head and a copy. Every step is the kernel autograd would run (same numbers given the
    mask)."""

    @staticmethod
    def applies(q, kv, bias, mask, p: float) -> bool:
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, kv, bias))
        return grad and p > 0.0 and q.device.type == "cpu" and (mask is None or not mask.requires_grad)

    @staticmethod
    def forward(ctx, q, kv, bias, mask, merge, p: float, root_d: float):
        qq, k, v = _unpack(q, kv)
        y = torch.softmax(_logits(qq, k, bias, mask, root_d), dim=-1)
        scale = _keep_scale(p, y.dtype)
        dropped, keep = _draw_and_mask(y, p, scale)
        out = torch.matmul(dropped, v)
        del dropped
        ctx.root_d = root_d
        ctx.save_for_backward(q, kv, y, keep, scale, merge)
        return out if merge is None else F.linear(_heads_to_tokens(out), merge)

    @staticmethod
    def backward(ctx, grad):
        q, kv, y, keep, scale, merge = ctx.saved_tensors
        qq, k, v = _unpack(q, kv)
        need_q, need_kv, need_bias, _, need_merge = ctx.needs_input_grad[:5]
        dropped = _mask_mul(y, keep, scale)
        grad_merge = None
        if merge is not None:
            g2 = grad.reshape(-1, grad.size(-1))
            if need_merge:
                merged_in = _heads_to_tokens(torch.matmul(dropped, v))  # the forward's product, recomputed
                grad_merge = g2.t().mm(merged_in.view(-1, merged_in.size(-1)))
                del merged_in
            grad = g2.mm(merge).view(qq.size(0), qq.size(2), qq.size(1), qq.size(3)).transpose(1, 2)
        # Both products below would copy the transposed gradient: once here.
        grad = grad.contiguous()
        grad_pack = torch.empty_like(q) if need_q and kv is None else None
        grad_kv = torch.empty_like(kv) if need_kv else None
        grad_v_out = grad_pack[2] if grad_pack is not None else (grad_kv[1] if grad_kv is not None else None)
        if grad_v_out is not None:
            _bmm_into(dropped.transpose(-2, -1), grad, grad_v_out)
        del dropped
        grad_y = torch.matmul(grad, v.transpose(-2, -1))
        grad_y = _mask_mul(grad_y, keep, scale, out=grad_y)
        # In place: the kernel reads each row's Σ grad·y before it writes the row (equal to the out-of-place result,
        # tests), so the step holds one [B,h,Lq,Lk] gradient fewer.
        grad_logits = torch.ops.aten._softmax_backward_data.out(grad_y, y, -1, y.dtype, grad_input=grad_y)
        del grad_y
        grad_bias = grad_logits if need_bias else None
        grad_scores = grad_logits / ctx.root_d if grad_bias is not None else grad_logits.div_(ctx.root_d)
        grad_q = None
        if grad_pack is not None:
            _bmm_into(grad_scores, k, grad_pack[0])
            _bmm_into(grad_scores.transpose(-2, -1), qq, grad_pack[1])
            grad_q = grad_pack
        else:
            if need_q:
                grad_q = torch.matmul(grad_scores, k)
            if grad_kv is not None:
                _bmm_into(grad_scores.transpose(-2, -1), qq, grad_kv[0])
        return grad_q, grad_kv, grad_bias, None, grad_merge, None, None


def attention_core(q, k, v, bias: torch.Tensor | None, mask: torch.Tensor | None, p: float,
                   root_d: float) -> torch.Tensor:
    """dropout(softmax(q·kᵀ/√d + bias + mask))·v [B,h,Lq,d] without a graph (in-place steps) or through autograd;
    bias [B,h,Lq,Lk] and mask (additive, broadcastable) optional. (Training steps on CPU take `_AttentionFunction`.)"""
    return torch.matmul(dropout(torch.softmax(_logits(q, k, bias, mask, root_d), dim=-1), p, True, overwrite=True), v)


class SelfAttention(ResidualOp):
    """q = k = v = s, masked by the stream's own padding."""

    def __init__(self, cfg: ModelConfig, head_size: int = 64, width_factor: float = 1.0) -> None:
        super().__init__(cfg)
        self.attention = MultiHeadAttention(cfg.hidden_size, head_size, cfg.dropout,
                                            int(cfg.hidden_size * width_factor))

    def transform(self, s, other, s_mask, other_mask, rel):
        return self.attention(s, s, s_mask)


class GuidedAttention(ResidualOp):
    """q = s, k = v = the other modality, masked by the other's padding."""

    def __init__(self, cfg: ModelConfig, head_size: int = 64, width_factor: float = 1.0) -> None:
        super().__init__(cfg)
        self.attention = MultiHeadAttention(cfg.hidden_size, head_size, cfg.dropout,
                                            int(cfg.hidden_size * width_factor))

    def transform(self, s, other, s_mask, other_mask, rel):
        if other is None:
            raise ValueError("guided attention needs the other modality; it cannot be used in the encoder cell")
        return self.attention(s, other, other_mask)


class RelationSelfAttention(ResidualOp):
    """Self-attention whose logits get + log(max(ReLU(Linear(rel_size→h))(rel), 1e-6)) per head."""

    uses_relation = True

    def __init__(self, cfg: ModelConfig, head_size: int = 64, width_factor: float = 1.0) -> None:
        super().__init__(cfg)
        self.attention = MultiHeadAttention(cfg.hidden_size, head_size, cfg.dropout,
                                            int(cfg.hidden_size * width_factor), rel_size=cfg.rel_size)

    def transform(self, s, other, s_mask, other_mask, rel):
        return self.attention(s, s, s_mask, rel)
