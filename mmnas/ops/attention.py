"""Attention ops of the search space (spec §2): self, guided and relation self-attention, with the release's numerics."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmnas.models.model_config import ModelConfig
from mmnas.ops.base import ResidualOp
from mmnas.ops.layers import NEG_INF


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
        self.dropout = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_size).transpose(1, 2)  # [B,h,L,d]

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor, kv_mask: torch.Tensor | None,
                rel: torch.Tensor | None = None) -> torch.Tensor:
        q = self._split(self.linear_q(q_in))
        k = self._split(self.linear_k(kv_in))
        v = self._split(self.linear_v(kv_in))
        logits = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_size)  # [B,h,Lq,Lk]
        if self.linear_rel is not None:
            if rel is None:
                raise ValueError("a relation attention op needs the projected geometry `rel` [B,N,N,rel_size]")
            bias = F.relu(self.linear_rel(rel)).permute(0, 3, 1, 2)  # [B,h,N,N]
            logits = logits + torch.log(torch.clamp(bias, min=1e-6))
        if kv_mask is not None:
            logits = logits.masked_fill(kv_mask, NEG_INF)
        att = self.dropout(torch.softmax(logits, dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(q_in.size(0), -1, self.inner)
        return self.linear_merge(out)


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
