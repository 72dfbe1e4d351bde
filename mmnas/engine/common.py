"""Pieces shared by the trainer and the searcher: seeding, data order, optimizer, one evaluation pass, RNG state."""
from __future__ import annotations

import random
import sys
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from mmnas.config import Config, OptimConfig
from mmnas.engine import dist


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def resolve_seed(cfg: Config) -> int:
    """--SEED, else the release's: 888 for search, a random one for training (logged and checkpointed)."""
    if cfg.run.seed >= 0:
        return cfg.run.seed
    return 888 if cfg.stage == "search" else random.SystemRandom().randrange(2 ** 31)


class EpochSampler(Sampler[int]):
    """A fixed list of dataset indices, shuffled by (seed, epoch) only, so a resumed run sees the same order."""

    def __init__(self, indices: Sequence[int], shuffle: bool, seed: int, salt: int = 0) -> None:
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.salt = salt
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(self.indices)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 101 + self.salt)
        return iter([self.indices[i] for i in torch.randperm(len(self.indices), generator=g).tolist()])

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, num_workers: int,
                drop_last: bool = False) -> DataLoader:
    # An explicit generator keeps the DataLoader from drawing its worker seed from the global RNG.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, generator=torch.Generator().manual_seed(0),
                      persistent_workers=False, pin_memory=False)


def build_optimizer(params: Sequence[nn.Parameter], optim: OptimConfig) -> torch.optim.Adam:
    # lr is set before every step by the schedule.
    return torch.optim.Adam(params, lr=0.0, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def progress_bar(iterable, enabled: bool = True, **kw):
    """tqdm with ETA on rank 0; redrawn at most every 30 s when stderr is not a terminal (logs stay readable)."""
    return tqdm(iterable, disable=not (enabled and dist.is_main()), dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0, **kw)


@torch.no_grad()
def run_evaluation(model: nn.Module, evaluator, loader: DataLoader, device: torch.device, progress: bool,
                   desc: str = "eval") -> dict[str, Any]:
    was_training = model.training
    model.eval()
    evaluator.reset()
    for batch in progress_bar(loader, progress, desc=desc, leave=False):
        batch = dist.to_device(batch, device)
        evaluator.process(batch, model(batch))
    model.train(was_training)
    return evaluator.evaluate()


def rng_state(extra: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in (extra or {}).items():
        state[name] = gen.get_state()
    return state


def restore_rng(state: dict[str, Any], extra: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (extra or {}).items():
        if name in state:
            gen.set_state(state[name])


def format_metrics(metrics: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    items = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and (keys is None or k in keys)]
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)
