"""Task heads of spec §3 on top of (x', y'): VQA answer logits, VGD region scores and box deltas, ITM match score."""
from __future__ import annotations

import torch
import torch.nn as nn

from mmnas.models.model_config import ModelConfig
from mmnas.ops.layers import AttFlat, LayerNorm
from mmnas.registry import Registry

HEADS = Registry("task head")


def _flat(cfg: ModelConfig) -> AttFlat:
    return AttFlat(cfg.hidden_size, cfg.flat_mlp_size, 2 * cfg.hidden_size, cfg.dropout)


@HEADS.register("vqa")
class VQAHead(nn.Module):
    """AttFlat(x') + AttFlat(y') → LayerNorm(2H) → Linear(2H→answers): logits [B,A]."""

    def __init__(self, cfg: ModelConfig, answer_size: int) -> None:
        super().__init__()
        self.flat_text = _flat(cfg)
        self.flat_image = _flat(cfg)
        self.norm = LayerNorm(2 * cfg.hidden_size)
        self.classifier = nn.Linear(2 * cfg.hidden_size, answer_size)

    def forward(self, x, y, x_mask, y_mask):
        return self.classifier(self.norm(self.flat_text(x, x_mask) + self.flat_image(y, y_mask)))


@HEADS.register("vgd")
class VGDHead(nn.Module):
    """AttFlat(x') [B,1,2H] + Linear(H→2H)(y') [B,N,2H] → LayerNorm → scores [B,N] and box deltas [B,N,4].

    Under the `kld` loss the scores are log-softmax over all N regions, padding included (as the release)."""

    def __init__(self, cfg: ModelConfig, answer_size: int | None = None) -> None:
        super().__init__()
        self.log_softmax = cfg.vgd_score_loss == "kld"
        self.flat_text = _flat(cfg)
        self.image_proj = nn.Linear(cfg.hidden_size, 2 * cfg.hidden_size)
        self.norm = LayerNorm(2 * cfg.hidden_size)
        self.score = nn.Linear(2 * cfg.hidden_size, 1)
        self.box = nn.Linear(2 * cfg.hidden_size, 4)

    def forward(self, x, y, x_mask, y_mask):
        fused = self.norm(self.flat_text(x, x_mask).unsqueeze(1) + self.image_proj(y))
        scores = self.score(fused).squeeze(-1)
        if self.log_softmax:
            scores = torch.log_softmax(scores, dim=-1)
        return scores, self.box(fused)


@HEADS.register("itm")
class ITMHead(nn.Module):
    """AttFlat(x') + AttFlat(y') → LayerNorm(2H) → Linear(2H→1) → sigmoid: match scores [B] in (0,1)."""

    def __init__(self, cfg: ModelConfig, answer_size: int | None = None) -> None:
        super().__init__()
        self.flat_text = _flat(cfg)
        self.flat_image = _flat(cfg)
        self.norm = LayerNorm(2 * cfg.hidden_size)
        self.score = nn.Linear(2 * cfg.hidden_size, 1)

    def forward(self, x, y, x_mask, y_mask):
        return torch.sigmoid(self.score(self.norm(self.flat_text(x, x_mask) + self.flat_image(y, y_mask)))).squeeze(-1)
