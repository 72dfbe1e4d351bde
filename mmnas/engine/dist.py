"""Processes and devices (DESIGN "Processes and devices"): one place for rank, world size and device placement."""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def default_device(gpu: str = "") -> torch.device:
    """CUDA when available and not turned off with --GPU cpu; the CPU otherwise."""
    if gpu.strip().lower() != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
