"""Padding masks ``[B,1,1,L]`` (True = padding) for token ids and region features (spec §1)."""

from __future__ import annotations

import torch

__all__ = ["text_mask", "region_mask"]


def text_mask(ids: torch.Tensor) -> torch.Tensor:
    """``bool [B,1,1,T]``: True where the token id is 0 (PAD)."""
    return (ids == 0).unsqueeze(1).unsqueeze(2)


def region_mask(feat: torch.Tensor) -> torch.Tensor:
    """``bool [B,1,1,N]``: True where a region's features are all zero (sum of |feat| is 0)."""
    return (feat.abs().sum(dim=-1) == 0).unsqueeze(1).unsqueeze(2)
