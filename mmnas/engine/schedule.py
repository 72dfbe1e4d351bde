"""The release's learning-rate schedule (spec §5) as a pure function of the step, so resume restores it exactly."""
from __future__ import annotations

from typing import Sequence


def learning_rate(step: int, epoch: int, steps_per_epoch: int, lr_base: float, warmup: bool = True,
                  decay_rate: float = 0.2, decay_epochs: Sequence[int] = ()) -> float:
    """LR of optimizer step `step` (1-based, counted over the whole run) taken in `epoch` (0-based).

    Warm-up: ¼, ½, ¾ of the base while step ≤ 1, 2, 3 epochs' worth of steps; then the base. Decay: the base is
    multiplied by `decay_rate` at the start of every epoch listed in `decay_epochs` (the release's `decay()`)."""
    base = lr_base * decay_rate ** sum(1 for e in decay_epochs if e <= epoch)
    if warmup:
        for k in (1, 2, 3):
            if step <= steps_per_epoch * k:
                return base * k / 4.0
    return base
