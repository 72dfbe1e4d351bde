"""Pure tensor functions of the architecture step (spec §4): the gated sum of the candidates' outputs, gate→α
gradient, the `two`-mode rescale, the schedule."""
from __future__ import annotations

from typing import Sequence

import torch


class _GatedSum(torch.autograd.Function):
    """Σ_k g_k·o_k over the involved candidates (the active one first) as one function: the sum is built in one
    output tensor (the terms and partial sums of `g·o + g·o + …` would be 2n − 1 tensors), with the same products and
    additions in the same order. Backward: ∂L/∂g_k = Σ ∂L/∂out·o_k for every involved k (0 for the others), and
    ∂L/∂o_active = ∂L/∂out·g_active — what autograd computes for the written-out sum."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, involved: tuple[int, ...], *outputs: torch.Tensor) -> torch.Tensor:
        g = gate.detach()
        out = outputs[0] * g[involved[0]]
        for k, o in zip(involved[1:], outputs[1:]):
            out.addcmul_(o, g[k])  # out + o·g_k
        ctx.involved = involved
        ctx.save_for_backward(gate, *outputs)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, *outputs = ctx.saved_tensors
        grad_gate = None
        if ctx.needs_input_grad[0]:
            grad_gate = torch.zeros_like(gate)
            for k, o in zip(ctx.involved, outputs):
                grad_gate[k] = torch.mul(grad, o).sum()
        grads = [grad * gate[ctx.involved[0]] if ctx.needs_input_grad[2] else None] + [None] * (len(outputs) - 1)
        return grad_gate, None, *grads


def gated_sum(gate: torch.Tensor, involved: Sequence[int], outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ g_k·o_k for k in `involved` (outputs in that order; only the first may carry a graph, as in the `full` and
    `two` arch steps, where the others are computed without one)."""
    return _GatedSum.apply(gate, tuple(involved), *outputs)


def gate_to_alpha_grad(gate_grad: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """∂L/∂α_i = Σ_j ∂L/∂g_j · p_j · (δ_ij − p_i) = p_i·(∂L/∂g_i − Σ_j p_j ∂L/∂g_j)."""
    return probs * (gate_grad - (probs * gate_grad).sum())


def rescale_pair(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Shift the updated logits by a common offset so that Σexp(new) equals Σexp(old) (the `two` mode)."""
    return new - (torch.logsumexp(new, 0) - torch.logsumexp(old, 0))


def arch_step_due(epoch: int, step: int, alpha_start: int, alpha_every: int) -> bool:
    """True after every `alpha_every`-th weight step (1-based) from epoch `alpha_start` (0-based) on."""
    return epoch >= alpha_start and (step + 1) % alpha_every == 0
