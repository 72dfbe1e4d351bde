"""The encoder-decoder backbone (spec §1): an encoder cell on the text, a decoder cell on the regions, built either
from a genotype (fixed ops, multi-op nodes summed) or as a supernet (one mixed op per node)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch.nn as nn

from mmnas.models.model_config import ModelConfig
from mmnas.nas.genotype import Genotype
from mmnas.nas.mixed_op import MixedOp
from mmnas.ops import SEARCH_SPACE, build_op
from mmnas.ops.layers import fast_paths_enabled
from mmnas.ops.relation import PairGeometry


class OpSum(nn.Module):
    """A fixed node: the sum of its ops' outputs (one op in every published arch)."""

    def __init__(self, names: Sequence[str], cfg: ModelConfig) -> None:
        super().__init__()
        self.names = tuple(names)
        self.ops = nn.ModuleList(build_op(name, cfg) for name in self.names)

    @property
    def uses_relation(self) -> bool:
        return any(getattr(op, "uses_relation", False) for op in self.ops)

    def running_ops(self) -> list[nn.Module]:
        return list(self.ops)

    def forward(self, s, other=None, s_mask=None, other_mask=None, rel=None):
        out = self.ops[0](s, other, s_mask, other_mask, rel)
        for op in self.ops[1:]:
            out = out + op(s, other, s_mask, other_mask, rel)
        return out


class Cell(nn.Module):
    """A chain of nodes; each node maps the stream to a new stream of the same shape."""

    def __init__(self, nodes: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nodes = nn.ModuleList(nodes)

    @property
    def uses_relation(self) -> bool:
        return any(node.uses_relation for node in self.nodes)

    def relation_layers(self) -> list[nn.Linear]:
        """The relation-bias projections of the ops that run in the current sampling mode, in order."""
        return [m.linear_rel for node in self.nodes for op in node.running_ops() for m in op.modules()
                if getattr(m, "linear_rel", None) is not None]

    def forward(self, s, other=None, s_mask=None, other_mask=None, rel=None):
        for node in self.nodes:
            s = node(s, other, s_mask, other_mask, rel)
        return s


class Backbone(nn.Module):
    """x' = encoder(x); y' = decoder(y, x'). Relation ops read the region geometry, in the decoder only."""

    def __init__(self, encoder: Cell, decoder: Cell) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        if encoder.uses_relation:
            raise ValueError("relation self-attention needs region geometry; it can only be used in the decoder cell")

    @classmethod
    def from_genotype(cls, genotype: Genotype, cfg: ModelConfig) -> "Backbone":
        return cls(Cell([OpSum(node, cfg) for node in genotype.enc]),
                   Cell([OpSum(node, cfg) for node in genotype.dec]))

    @classmethod
    def supernet(cls, cfg: ModelConfig, nodes: Mapping[str, int] | None = None,
                 search_space: Mapping[str, Sequence[str]] = SEARCH_SPACE) -> "Backbone":
        nodes = nodes or {"enc": 12, "dec": 18}
        return cls(Cell([MixedOp(search_space["enc"], cfg) for _ in range(nodes["enc"])]),
                   Cell([MixedOp(search_space["dec"], cfg) for _ in range(nodes["dec"])]))

    @property
    def uses_relation(self) -> bool:
        return self.decoder.uses_relation

    def forward(self, x, y, x_mask, y_mask, y_rel):
        if isinstance(y_rel, PairGeometry) and fast_paths_enabled():
            y_rel.prepare(self.decoder.relation_layers())  # every relation bias of this forward in one pass
        x = self.encoder(x, None, x_mask, None, None)
        y = self.decoder(y, x, y_mask, x_mask, y_rel)
        return x, y
