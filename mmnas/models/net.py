"""MMNasNet (spec §1–§3): text and region encoders, the backbone (fixed or supernet) and a task head; one class for
all three tasks and both stages."""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from mmnas.data.masks import region_mask, text_mask
from mmnas.models.encoders import GeometryEncoder, RegionEncoder, TextEncoder
from mmnas.models.model_config import ModelConfig
from mmnas.nas import supernet as sn
from mmnas.nas.backbone import Backbone
from mmnas.nas.genotype import Genotype


class MMNasNet(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, backbone: Backbone, head: nn.Module,
                 word_vectors=None) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_encoder = TextEncoder(vocab_size, cfg, word_vectors)
        self.region_encoder = RegionEncoder(cfg)
        # The release always has the geometry projection (its checkpoints hold linear_y_rel); it only runs when
        # some op reads it.
        self.geometry = GeometryEncoder(cfg)
        self.backbone = backbone
        self.head = head

    @property
    def is_supernet(self) -> bool:
        return bool(sn.mixed_ops(self.backbone))

    def encode(self, batch: dict[str, torch.Tensor]):
        """Backbone outputs (x' [B,T,H], y' [B,N,H]) and masks [B,1,1,L] (True = padding)."""
        text_ix, img_feat = batch["text_ix"], batch["img_feat"]
        x_mask, y_mask = text_mask(text_ix), region_mask(img_feat)
        x = self.text_encoder(text_ix)
        y = self.region_encoder(img_feat, batch.get("img_box_feat"))
        rel = self.geometry.pairs(batch["img_rel"]) if self.backbone.uses_relation else None
        x, y = self.backbone(x, y, x_mask, y_mask, rel)
        return x, y, x_mask, y_mask

    def forward(self, batch: dict[str, torch.Tensor]):
        x, y, x_mask, y_mask = self.encode(batch)
        return self.head(x, y, x_mask, y_mask)

    # -- search ---------------------------------------------------------------------------------------------
    def sampling(self, mode: str, generator: torch.Generator | None = None) -> contextlib.AbstractContextManager:
        """`with net.sampling("full"): …` — sample a path in every mixed op for that mode, restore on exit."""
        return sn.sampling(self.backbone, mode, generator)

    def genotype(self) -> Genotype:
        return sn.genotype(self.backbone)

    def export_probs(self) -> dict:
        return sn.export_probs(self.backbone)

    def arch_parameters(self) -> list[nn.Parameter]:
        return sn.arch_parameters(self)

    def gate_parameters(self) -> list[nn.Parameter]:
        return sn.gate_parameters(self)

    def weight_parameters(self) -> list[nn.Parameter]:
        return sn.weight_parameters(self)
