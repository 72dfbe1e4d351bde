"""The op registry under the release's op names (spec §2), and the search spaces of the release (`*_safe`)."""
from __future__ import annotations

from functools import partial

import torch.nn as nn

from mmnas.models.model_config import ModelConfig
from mmnas.ops.attention import GuidedAttention, RelationSelfAttention, SelfAttention
from mmnas.ops.base import Identity, ResidualOp, Zero
from mmnas.ops.feedforward import FeedForward
from mmnas.registry import Registry

OPS = Registry("op")

OPS.register("none")(lambda cfg: Zero())
OPS.register("skip_connect")(lambda cfg: Identity())
for _size in (16, 32, 64, 128, 256):
    OPS.register(f"self_att_{_size}")(partial(SelfAttention, head_size=_size))
    OPS.register(f"guided_att_{_size}")(partial(GuidedAttention, head_size=_size))
    OPS.register(f"rel_self_att_{_size}")(partial(RelationSelfAttention, head_size=_size))
# `_2`: attention computed at twice the hidden width inside the op (release hsize_k=2).
OPS.register("self_att_64_2")(partial(SelfAttention, head_size=64, width_factor=2))
OPS.register("guided_att_64_2")(partial(GuidedAttention, head_size=64, width_factor=2))
OPS.register("feed_forward")(FeedForward)
for _k in (2, 8, 16, 32):
    OPS.register(f"feed_forward_{_k}")(partial(FeedForward, width_factor=_k))

# Candidate lists of the release's search (its `enc_safe` / `dec_safe`); the order fixes α's layout.
SEARCH_SPACE: dict[str, tuple[str, ...]] = {
    "enc": ("self_att_64", "feed_forward"),
    "dec": ("self_att_64", "rel_self_att_64", "guided_att_64", "feed_forward"),
}


def build_op(name: str, cfg: ModelConfig) -> nn.Module:
    """Construct the op registered as `name` for the model settings `cfg`."""
    return OPS.get(name)(cfg)


__all__ = ["OPS", "SEARCH_SPACE", "build_op", "ResidualOp", "SelfAttention", "GuidedAttention",
           "RelationSelfAttention", "FeedForward", "Zero", "Identity"]
