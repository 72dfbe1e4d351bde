"""The op contract and its residual/norm wrapper (spec §2: s ← LayerNorm(s + Dropout(f(s))))."""
from __future__ import annotations

import torch
import torch.nn as nn

from mmnas.models.model_config import ModelConfig
from mmnas.ops.layers import Dropout, LayerNorm, dropout_residual_norm


class ResidualOp(nn.Module):
    """Subclasses define `transform` (= f); forward applies dropout, the residual and the release LayerNorm
    as OPS_RESIDUAL / OPS_NORM say. Every op maps `s` to a tensor of the same shape."""

    uses_relation = False  # True for ops that read the projected geometry

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.residual = cfg.ops_residual
        self.dropout = Dropout(cfg.dropout)  # the cheap mask stream of layers.dropout (same distribution)
        self.norm = LayerNorm(cfg.hidden_size) if cfg.ops_norm else None

    def transform(self, s: torch.Tensor, other: torch.Tensor | None, s_mask: torch.Tensor | None,
                  other_mask: torch.Tensor | None, rel: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, s: torch.Tensor, other: torch.Tensor | None = None, s_mask: torch.Tensor | None = None,
                other_mask: torch.Tensor | None = None, rel: torch.Tensor | None = None) -> torch.Tensor:
        out = self.transform(s, other, s_mask, other_mask, rel)
        if self.residual and self.norm is not None:
            # One fused dropout → residual → LayerNorm (transform outputs are fresh Linear outputs: overwritable).
            return dropout_residual_norm(s, out, self.dropout.p, self.training, self.norm)
        out = self.dropout(out)
        if self.residual:
            out = s + out
        if self.norm is not None:
            out = self.norm(out)
        return out


class Zero(nn.Module):
    """The `none` op: zero (s·0 as in the release, so NaNs would still propagate)."""

    uses_relation = False

    def forward(self, s, other=None, s_mask=None, other_mask=None, rel=None):
        return s * 0.0


class Identity(nn.Module):
    """The `skip_connect` op."""

    uses_relation = False

    def forward(self, s, other=None, s_mask=None, other_mask=None, rel=None):
        return s
