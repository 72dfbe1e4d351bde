"""The feed-forward op (spec §2): Linear(H→kH) · ReLU · Dropout · Linear(kH→H), k = 4 by default."""
from __future__ import annotations

from mmnas.models.model_config import ModelConfig
from mmnas.ops.base import ResidualOp
from mmnas.ops.layers import MLP


class FeedForward(ResidualOp):
    def __init__(self, cfg: ModelConfig, width_factor: int = 4) -> None:
        super().__init__(cfg)
        self.mlp = MLP(cfg.hidden_size, cfg.hidden_size * width_factor, cfg.hidden_size, cfg.dropout)

    def transform(self, s, other, s_mask, other_mask, rel):
        return self.mlp(s)
