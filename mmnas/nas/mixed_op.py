"""The mixed op of the supernet (spec §4): candidates, architecture logits α and binary gates, in explicit modes."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mmnas.models.model_config import ModelConfig
from mmnas.nas.arch_step import gate_to_alpha_grad, gated_sum, rescale_pair
from mmnas.ops import build_op

# weight  – one sampled candidate runs (weight step);
# full    – the sampled candidate runs with grad, every other one without, output Σ g_k·o_k (arch step);
# two     – like full over two sampled candidates;
# darts   – continuous relaxation Σ softmax(α)_k·o_k (an extra, non-release mode);
# derived – the argmax candidate runs (evaluation of the derived network).
MODES = ("weight", "full", "two", "darts", "derived")
SAMPLED_MODES = ("weight", "full", "two")


class MixedOp(nn.Module):
    def __init__(self, candidates: Sequence[str], cfg: ModelConfig) -> None:
        super().__init__()
        self.names = tuple(candidates)
        self.candidates = nn.ModuleList(build_op(name, cfg) for name in self.names)
        self.alpha = nn.Parameter(torch.zeros(len(self.names)))  # architecture logits
        self.gate = nn.Parameter(torch.zeros(len(self.names)))   # binary gates; only their gradient is used
        self.mode = "derived"
        self.active: int = 0
        self.involved: tuple[int, ...] = (0,)  # active first, then the candidates that run detached
        self._pair_alpha: torch.Tensor | None = None

    @property
    def uses_relation(self) -> bool:
        return any(getattr(op, "uses_relation", False) for op in self.candidates)

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha.detach(), dim=0)

    def sample(self, mode: str, generator: torch.Generator | None = None) -> None:
        """Choose the active candidate for `mode` (spec §4) and set the gates to its one-hot."""
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode = mode
        p = self.probs()
        n = len(self.names)
        if mode == "derived":
            self.active = int(torch.argmax(p))
            self.involved = (self.active,)
        elif mode == "two":
            pair = torch.multinomial(p, 2, replacement=False, generator=generator)
            pair_p = torch.softmax(self.alpha.detach()[pair], dim=0)
            c = int(torch.multinomial(pair_p, 1, generator=generator))
            self.active = int(pair[c])
            self.involved = (self.active, int(pair[1 - c]))
        elif mode in ("weight", "full"):
            self.active = int(torch.multinomial(p, 1, generator=generator))
            self.involved = (self.active,) if mode == "weight" else \
                (self.active,) + tuple(i for i in range(n) if i != self.active)
        else:  # darts
            self.active = int(torch.argmax(p))
            self.involved = tuple(range(n))
        with torch.no_grad():
            self.gate.zero_()
            self.gate[self.active] = 1.0

    def running_ops(self) -> list[nn.Module]:
        """The candidates the next forward runs (with or without a graph)."""
        return [self.candidates[k] for k in self.involved]

    def forward(self, s, other=None, s_mask=None, other_mask=None, rel=None):
        args = (s, other, s_mask, other_mask, rel)
        if self.mode in ("weight", "derived"):
            return self.candidates[self.active](*args)
        if self.mode == "darts":
            weights = torch.softmax(self.alpha, dim=0)
            return sum(weights[k] * op(*args) for k, op in enumerate(self.candidates))
        # full / two: Σ g_k·o_k with only the active o_k carrying weight gradients. The inactive outputs are
        # computed without autograd (the release detached them after building their graph: same numbers).
        outputs = [self.candidates[self.active](*args)]
        with torch.no_grad():
            outputs += [self.candidates[k](*args) for k in self.involved[1:]]
        return gated_sum(self.gate, self.involved, outputs)

    def set_alpha_grad(self) -> None:
        """Turn the gates' gradient into α's (accumulating, like any .grad), over the involved candidates."""
        if self.gate.grad is None:
            return
        idx = torch.tensor(self.involved) if self.mode == "two" else torch.arange(len(self.names))
        probs = torch.softmax(self.alpha.detach()[idx], dim=0)
        grad = torch.zeros_like(self.alpha)
        grad[idx] = gate_to_alpha_grad(self.gate.grad[idx], probs)
        self.alpha.grad = grad if self.alpha.grad is None else self.alpha.grad + grad
        if self.mode == "two":
            self._pair_alpha = self.alpha.detach()[idx].clone()

    def rescale_after_step(self) -> None:
        """`two` mode: keep Σexp over the sampled pair what it was before the α step."""
        if self.mode != "two" or self._pair_alpha is None:
            return
        idx = torch.tensor(self.involved)
        with torch.no_grad():
            self.alpha[idx] = rescale_pair(self._pair_alpha, self.alpha[idx])
        self._pair_alpha = None
