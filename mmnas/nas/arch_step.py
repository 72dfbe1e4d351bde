"""Pure tensor functions of the architecture step (spec §4): gate→α gradient, the `two`-mode rescale, the schedule."""
from __future__ import annotations

import torch


def gate_to_alpha_grad(gate_grad: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """∂L/∂α_i = Σ_j ∂L/∂g_j · p_j · (δ_ij − p_i) = p_i·(∂L/∂g_i − Σ_j p_j ∂L/∂g_j)."""
    return probs * (gate_grad - (probs * gate_grad).sum())


def rescale_pair(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Shift the updated logits by a common offset so that Σexp(new) equals Σexp(old) (the `two` mode)."""
    return new - (torch.logsumexp(new, 0) - torch.logsumexp(old, 0))


def arch_step_due(epoch: int, step: int, alpha_start: int, alpha_every: int) -> bool:
    """True after every `alpha_every`-th weight step (1-based) from epoch `alpha_start` (0-based) on."""
    return epoch >= alpha_start and (step + 1) % alpha_every == 0
