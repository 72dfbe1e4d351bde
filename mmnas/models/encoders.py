"""Input encoders (spec §1): GloVe-initialised embedding + LSTM for text, a linear projection for regions, and the
pair-geometry projection ReLU(Linear(4→rel_size))."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmnas.models.model_config import ModelConfig
from mmnas.ops.relation import PairGeometry


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, word_vectors: np.ndarray | torch.Tensor | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.word_embed_size)
        if word_vectors is not None:
            vectors = torch.as_tensor(np.asarray(word_vectors), dtype=torch.float32)
            if tuple(vectors.shape) != (vocab_size, cfg.word_embed_size):
                raise ValueError(f"word vectors have shape {tuple(vectors.shape)}, expected "
                                 f"({vocab_size}, {cfg.word_embed_size})")
            with torch.no_grad():
                self.embedding.weight.copy_(vectors)
        self.lstm = nn.LSTM(cfg.word_embed_size, cfg.hidden_size, num_layers=1, batch_first=True)

    def forward(self, text_ix: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(text_ix))
        return out  # [B,T,H]


class RegionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        in_size = cfg.feat_size
        self.box_linear = None
        if cfg.use_box_feature:
            self.box_linear = nn.Linear(5, cfg.box_feat_size)
            in_size += cfg.box_feat_size
        self.feat_linear = nn.Linear(in_size, cfg.hidden_size)

    def forward(self, img_feat: torch.Tensor, img_box_feat: torch.Tensor | None = None) -> torch.Tensor:
        if self.box_linear is not None:
            if img_box_feat is None:
                raise ValueError("model.use_box_feature is on but the batch has no 'img_box_feat' [B,N,5]")
            img_feat = torch.cat([img_feat, self.box_linear(img_box_feat)], dim=-1)
        return self.feat_linear(img_feat)  # [B,N,H]


class GeometryEncoder(nn.Module):
    """ReLU(Linear(4→rel_size)) of the raw pair geometry [B,N,N,4], shared by every relation op. `pairs` hands the ops
    the raw geometry with this layer (`mmnas.ops.relation.PairGeometry`), so that the fast path never materialises
    the projection; `forward` is the projection itself."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(4, cfg.rel_size)

    def forward(self, img_rel: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(img_rel))  # [B,N,N,rel_size]

    def pairs(self, img_rel: torch.Tensor) -> PairGeometry:
        return PairGeometry(img_rel, self.linear)
