"""What stops a run between two steps (DESIGN "Runs and checkpoints"): SIGTERM / SIGINT (finish the step, write a
checkpoint, exit) and non-finite losses or gradients (stop before the bad step is applied), agreed by every process."""
from __future__ import annotations

import math
import signal
import threading
from typing import Any, Iterable

import torch

from mmnas.engine import dist
from mmnas.errors import UserError

HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunStopped(UserError):
    """A run stopped on request after writing a checkpoint; the scripts exit with 128 + the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteError(UserError):
    """The loss or the gradient of a step was NaN or infinite; that step was not applied."""


class NonFiniteStep(Exception):
    """Internal: raised inside a step (on every process at once), turned into NonFiniteError by the loop."""


class StopSignals:
    """Turns the first SIGTERM / SIGINT into a request the training loop honours at the end of the step (a second
    one interrupts at once). Handlers are only installed from the main thread and are restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            for s, h in self._previous.items():
                signal.signal(s, h)
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def is_finite(x: torch.Tensor | float) -> bool:
    return bool(torch.isfinite(x).all()) if torch.is_tensor(x) else math.isfinite(x)


def grad_norm(params: Iterable[torch.nn.Parameter], clip: float) -> torch.Tensor:
    """The gradients' total norm, clipping them to `clip` when it is > 0 (the release's NET_GRAD_CLIP)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)


def agree(flags: list[bool]) -> list[bool]:
    """Each flag true on every process when it is true on any (one collective for all of them)."""
    if dist.world_size() == 1:
        return flags
    return dist.any_flags(flags)


def sample_ids(batch: dict[str, Any], limit: int = 10) -> str:
    ids = batch.get("index")
    if ids is None:
        return "unknown"
    ids = ids.tolist()
    return ", ".join(map(str, ids[:limit])) + (", …" if len(ids) > limit else "")
