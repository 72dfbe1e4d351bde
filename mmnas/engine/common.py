"""Pieces shared by the trainer and the searcher: seeding, data order, optimizer, one evaluation pass, RNG state."""
from __future__ import annotations

import contextlib
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
    """A fixed list of dataset indices, shuffled by (seed, epoch) only, so a resumed run sees the same order.

    In a run of k processes, process r takes every k-th index of that order from the r-th. `equal_shards` (training)
    first drops the < k indices of the tail that would give processes unequal step counts, so the k batches of a
    step together are exactly the batch of k × --BS that one process would take; without it (evaluation) every
    index is taken exactly once and shards differ by at most one."""

    def __init__(self, indices: Sequence[int], shuffle: bool, seed: int, salt: int = 0,
                 equal_shards: bool = True) -> None:
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.salt = salt
        self.epoch = 0
        self.start = 0
        self.equal_shards = equal_shards
        self.rank, self.world = dist.rank(), dist.world_size()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch `epoch`'s order, from position `start` of this process's share (a run resumed inside an epoch)."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """The whole epoch's order, before sharding."""
        if not self.shuffle:
            return list(self.indices)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 101 + self.salt)
        return [self.indices[i] for i in torch.randperm(len(self.indices), generator=g).tolist()]

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        if self.world > 1:
            if self.equal_shards:
                order = order[:len(order) // self.world * self.world]
            order = order[self.rank::self.world]
        return iter(order[self.start:])

    def __len__(self) -> int:
        n = len(self.indices)
        if self.world > 1:
            n = n // self.world if self.equal_shards else len(range(self.rank, n, self.world))
        return max(n - self.start, 0)


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, num_workers: int,
                drop_last: bool = False) -> DataLoader:
    # An explicit generator keeps the DataLoader from drawing its worker seed from the global RNG.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, generator=torch.Generator().manual_seed(0),
                      persistent_workers=False, pin_memory=False)


def build_optimizer(params: Sequence[nn.Parameter], optim: OptimConfig) -> torch.optim.Adam:
    # lr is set before every step by the schedule. The default is torch's per-tensor Adam, the release's numbers;
    # optim.fused_adam=true takes the one-kernel Adam, whose arithmetic is ordered differently (~1e-7 per step).
    return torch.optim.Adam(params, lr=0.0, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay,
                            fused=True if optim.fused_adam else None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def progress_bar(iterable, enabled: bool = True, **kw):
    """tqdm with ETA on rank 0; redrawn at most every 30 s when stderr is not a terminal (logs stay readable)."""
    return tqdm(iterable, disable=not (enabled and dist.is_main()), dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0, **kw)


@torch.no_grad()
def run_evaluation(model: nn.Module, evaluator, loader: DataLoader, device: torch.device, progress: bool,
                   desc: str = "eval", amp: str = "off") -> dict[str, Any]:
    was_training = model.training
    model.eval()
    evaluator.reset()
    for batch in progress_bar(loader, progress, desc=desc, leave=False):
        batch = dist.to_device(batch, device)
        with autocast(device, amp):
            output = model(batch)
        evaluator.process(batch, output)
    model.train(was_training)
    if dist.world_size() > 1:
        # Each process scored its own shard; every process then holds every sample's record, keyed by index.
        evaluator.merge(dist.all_gather_objects(evaluator.state()))
    return evaluator.evaluate()


def rng_state(extra: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in (extra or {}).items():
        state[name] = gen.get_state()
    return state


def gather_rng_state(extra: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """For a checkpoint: this process's RNG state under "rng" and, in a multi-process run, every process's under
    "rng_ranks" (a collective: every process calls it)."""
    mine = rng_state(extra)
    if dist.world_size() == 1:
        return {"rng": mine}
    return {"rng": mine, "rng_ranks": dist.all_gather_objects(mine)}


def resume_rng(ckpt: dict[str, Any], seed: int, extra: dict[str, torch.Generator] | None = None) -> str | None:
    """Restore the RNG state a checkpoint saved for this process. When the process count changed since, the
    shared generators (`extra`, identical on every process) are restored and the per-process stream (dropout)
    starts anew from (seed, step, rank): the run continues correctly but not bit for bit; the note says so."""
    ranks = ckpt.get("rng_ranks")
    if (ranks is None and dist.world_size() == 1) or (ranks is not None and len(ranks) == dist.world_size()):
        restore_rng(ckpt["rng"] if ranks is None else ranks[dist.rank()], extra)
        return None
    restore_rng(ckpt["rng"], extra)
    torch.manual_seed(seed * 1_000_003 + ckpt["step"] * 7919 + dist.rank())
    return (f"the checkpoint was written by {len(ranks) if ranks else 1} process(es), this run has "
            f"{dist.world_size()}: data order and α paths continue exactly, dropout draws start anew.")


def diversify_rng(seed: int) -> None:
    """After every process built the same initial network from one seed: give each its own stream (dropout)."""
    if dist.world_size() > 1:
        torch.manual_seed(seed * 1_000_003 + 7919 * (dist.rank() + 1))


def autocast(device: torch.device, amp: str):
    """Mixed precision for a forward pass (--AMP bf16 | fp16); a no-op context when off."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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
