"""Building blocks shared by ops and heads (spec §2 LayerNorm, §3 AttFlat): the release's LayerNorm, a two-layer MLP, attention pooling."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG_INF = -1e9  # the release masks logits with -1e9, not -inf: a fully padded row stays finite (uniform)


class LayerNorm(nn.Module):
    """a·(x−mean)/(std+eps)+b with the *unbiased* std and eps on the std — the release's, not nn.LayerNorm."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # var_mean in one pass gives the same unbiased variance as x.std()**2.
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=1)
        return self.weight * (x - mean) / (var.sqrt() + self.eps) + self.bias


class MLP(nn.Module):
    """Linear → ReLU → Dropout → Linear (the release's MLP(FC(..., use_relu=True)))."""

    def __init__(self, in_size: int, mid_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_size, mid_size)
        self.fc2 = nn.Linear(mid_size, out_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class AttFlat(nn.Module):
    """Attention pooling: one logit per position (MLP H→mid→1), padding → −1e9, softmax, weighted sum, Linear(H→out)."""

    def __init__(self, hidden_size: int, mid_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.mlp = MLP(hidden_size, mid_size, 1, dropout)
        self.merge = nn.Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        att = self.mlp(x)  # [B,L,1]
        if mask is not None:
            att = att.masked_fill(mask.view(mask.size(0), -1, 1), NEG_INF)
        att = torch.softmax(att, dim=1)
        pooled = (att * x).sum(dim=1)  # [B,H]
        return self.merge(pooled)
