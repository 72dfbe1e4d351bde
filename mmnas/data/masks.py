"""Padding masks ``[B,1,1,L]`` (True = padding) for token ids and region features (spec §1)."""

from __future__ import annotations

import torch

__all__ = ["text_mask", "region_mask"]


def text_mask(ids: torch.Tensor) -> torch.Tensor:
    """``bool [B,1,1,T]``: True where the token id is 0 (PAD)."""
    return (ids == 0).unsqueeze(1).unsqueeze(2)


def region_mask(feat: torch.Tensor) -> torch.Tensor:
    """``bool [B,1,1,N]``: True where a region's features are all zero (the release: sum of |feat| is 0)."""
    if feat.size(-1) == 0:
        return feat.new_ones(feat.shape[:-1], dtype=torch.bool).unsqueeze(1).unsqueeze(2)
    # max = min = 0 ⇔ sum |feat| = 0 (NaN and ±inf rows are not padding either way): two reductions instead of a
    # [B,N,F] |feat| temporary (2.5 ms instead of 26 at the VQA batch of 64 × 100 × 2048).
    return ((feat.amax(dim=-1) == 0) & (feat.amin(dim=-1) == 0)).unsqueeze(1).unsqueeze(2)
