"""Processes and devices (DESIGN "Processes and devices"): the process layout of a run (one process, one per GPU,
k CPU processes, or what torchrun set up), rank and device placement, and the few collectives the engine uses."""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException, ProcessExitedException

from mmnas.errors import UserError

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# A peer that died is seen by gloo/NCCL at once; the timeout only bounds a peer that hangs.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


# -- who am I -----------------------------------------------------------------------------------------------------
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    """The process's index on its machine (one machine: its rank)."""
    return _LOCAL_RANK if is_distributed() else 0


_LOCAL_RANK = 0
_USE_CUDA: bool | None = None


def default_device(gpu: str = "") -> torch.device:
    """This process's device: its GPU in a multi-GPU run, CUDA device 0 (or the one --GPU names) in a one-process
    run when CUDA is available and not turned off with --GPU cpu; the CPU otherwise."""
    use_cuda = _USE_CUDA if _USE_CUDA is not None else (gpu.strip().lower() != "cpu" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if is_distributed():
        return torch.device("cuda", _LOCAL_RANK)
    ids = parse_gpu_ids(gpu)
    return torch.device("cuda", ids[0] if ids else 0)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# -- the process layout -------------------------------------------------------------------------------------------
def parse_gpu_ids(gpu: str) -> list[int]:
    text = gpu.strip().lower()
    if text in ("", "cpu"):
        return []
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise UserError(f"--GPU {gpu!r} is not a list of GPU ids; pass e.g. --GPU 0 or --GPU '0, 1, 2, 3', or "
                        f"--GPU cpu.") from None


@dataclass
class ProcessPlan:
    """How a run is laid out: `nprocs` processes to spawn here (1 = run in this process), their backend, and
    whether torchrun already started this process as one of several."""
    nprocs: int = 1
    backend: str = "gloo"
    cuda: bool = False
    gpu_ids: list[int] = field(default_factory=list)
    from_env: bool = False

    @property
    def spawn(self) -> bool:
        return self.nprocs > 1 and not self.from_env


def under_torchrun() -> bool:
    return all(k in os.environ for k in TORCHRUN_KEYS) and int(os.environ["WORLD_SIZE"]) > 1


def plan_processes(gpu: str, nproc: int) -> ProcessPlan:
    """--GPU / --NPROC / the torchrun environment → the process layout (no process is started here)."""
    ids = parse_gpu_ids(gpu)
    wants_cpu = gpu.strip().lower() == "cpu"
    cuda = not wants_cpu and torch.cuda.is_available()
    if under_torchrun():
        return ProcessPlan(int(os.environ["WORLD_SIZE"]), "nccl" if cuda else "gloo", cuda, ids, from_env=True)
    if cuda and len(ids) > 1:
        if nproc > 1 and nproc != len(ids):
            raise UserError(f"--NPROC {nproc} disagrees with --GPU {gpu!r} ({len(ids)} GPUs): a GPU run takes one "
                            f"process per listed GPU; drop --NPROC.")
        missing = [i for i in ids if i >= torch.cuda.device_count()]
        if missing:
            raise UserError(f"--GPU {gpu!r} names GPU {missing[0]}, but this machine has "
                            f"{torch.cuda.device_count()} visible GPUs (ids 0–{torch.cuda.device_count() - 1}).")
        return ProcessPlan(len(ids), "nccl", True, ids)
    if not cuda and len(ids) > 1:
        print(f"warning: --GPU {gpu!r} lists {len(ids)} GPUs but CUDA is not available: running on the CPU "
              f"with --NPROC {nproc}.", file=sys.stderr)
    if cuda and nproc > 1:
        raise UserError(f"--NPROC {nproc} starts CPU processes, but this run would use CUDA: list one GPU per "
                        f"process with --GPU '0, 1', or pass --GPU cpu to run {nproc} CPU processes.")
    return ProcessPlan(nproc, "gloo", cuda, ids[:1])


@contextlib.contextmanager
def process_group(plan: ProcessPlan, local_rank: int = 0) -> Iterator[None]:
    """Join the run's process group for the body (nothing to join when the run is one process)."""
    global _LOCAL_RANK, _USE_CUDA
    _USE_CUDA = plan.cuda
    if plan.nprocs <= 1:
        try:
            yield
        finally:
            _USE_CUDA = None
        return
    if plan.from_env:
        local_rank, global_rank = int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"])
    else:
        global_rank = local_rank
    _LOCAL_RANK = local_rank
    if plan.cuda:
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:
        # k CPU processes share the cores instead of each spinning one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // plan.nprocs))
    if plan.from_env:
        dist.init_process_group(plan.backend, init_method="env://", rank=global_rank, world_size=plan.nprocs,
                                timeout=COLLECTIVE_TIMEOUT)
    else:  # spawned by `spawn`, whose process already serves the rendezvous store: every rank is its client
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=COLLECTIVE_TIMEOUT)
        dist.init_process_group(plan.backend, store=store, rank=global_rank, world_size=plan.nprocs,
                                timeout=COLLECTIVE_TIMEOUT)
    if global_rank != 0:
        # Every process reads the same data and builds the same network: rank 0 alone says so.
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
    try:
        yield
    finally:
        dist.destroy_process_group()
        _LOCAL_RANK, _USE_CUDA = 0, None


def message_and_code(e: BaseException) -> tuple[str, int]:
    """How the scripts report a known error: 'error: …' and exit code 2, or (a run stopped on request, which has
    an `exit_code`) 'stopped: …' and 128 + the signal's number."""
    code = getattr(e, "exit_code", 2)
    return f"{'error' if code == 2 else 'stopped'}: {e}", code


def _worker(local_rank: int, fn: Callable[..., Any], args: tuple, plan: ProcessPlan, error_dir: str,
            known_errors: tuple[type[BaseException], ...]) -> None:
    # Out of the terminal's process group: Ctrl-C reaches the parent alone, which passes it on exactly once.
    os.setpgrp()
    with process_group(plan, local_rank):
        try:
            fn(*args)
        except known_errors as e:
            # The parent prints one message for the whole run (the lowest failing rank's), not one per process.
            message, code = message_and_code(e)
            Path(error_dir, f"rank{local_rank}.txt").write_text(f"{code}\n{message}", encoding="utf-8")
            sys.exit(code)


def spawn(fn: Callable[..., Any], args: tuple, plan: ProcessPlan,
          known_errors: tuple[type[BaseException], ...] = (UserError,)) -> int:
    """Run `fn(*args)` in `plan.nprocs` new processes of one process group on this machine and wait for all.

    A failure anywhere stops every process within seconds and is reported once here: a known error by its message
    and code, a crash by its traceback or signal (exit code 1). SIGTERM / SIGINT sent to this process are passed
    to the processes once (they finish their step and checkpoint); a second one stops them at once."""
    # The rendezvous store is served from here, on a port the system picks as it binds: a port chosen first and
    # bound later by rank 0 (the env:// way) can be taken in between by anything else on the machine.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=COLLECTIVE_TIMEOUT)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(store.port)   # a str: the release put an int here and crashed
    if plan.cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, plan.gpu_ids))
    with tempfile.TemporaryDirectory(prefix="mmnas-errors-") as error_dir:
        context = mp.start_processes(_worker, args=(fn, args, plan, error_dir, known_errors), nprocs=plan.nprocs,
                                     join=False, start_method="spawn")
        forwarded: list[int] = []

        def forward(signum: int, frame: Any) -> None:
            forwarded.append(signum)
            for proc in context.processes:
                if proc.is_alive():
                    os.kill(proc.pid, signum if len(forwarded) == 1 else signal.SIGKILL)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not context.join(grace_period=3):
                pass
        except ProcessException as e:
            messages = sorted(Path(error_dir).glob("rank*.txt"))
            if messages:
                code, message = messages[0].read_text(encoding="utf-8").split("\n", 1)
                print(message, file=sys.stderr)
                return int(code)
            if isinstance(e, ProcessExitedException) and e.signal_name:
                print(f"error: process {e.error_index} of {plan.nprocs} (pid {e.error_pid}) was killed by "
                      f"{e.signal_name}; the other processes were stopped. Every checkpoint written before is "
                      f"intact: continue with --RESUME.", file=sys.stderr)
            else:
                print(f"error: process {e.error_index} of {plan.nprocs} failed and the others were stopped.{e}",
                      file=sys.stderr)
            return 1
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    return 0


# -- collectives (no-ops in a one-process run) --------------------------------------------------------------------
def _comm_device() -> torch.device:
    return torch.device("cuda", _LOCAL_RANK) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def any_flags(flags: list[bool]) -> list[bool]:
    """Each flag, true on every process when it is true on at least one (one all-reduce for all)."""
    if world_size() == 1:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def sum_arrays(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of every process's array (each fills its own rows, zeros elsewhere)."""
    if world_size() == 1:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array)).to(_comm_device())
    dist.all_reduce(t)
    return t.cpu().numpy()


def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients that exist over the processes, in one flat all-reduce.

    The searcher's mechanism for unused parameters: every process samples the same path (a shared generator),
    so the same parameters hold a gradient on every process and the others (None) are left alone; DDP's reducer
    instead assumes one fixed set of trainable parameters (arch steps freeze the weights)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def check_identical(tensors: Sequence[torch.Tensor], what: str) -> None:
    """Stop the run when a quantity that every process must hold identically (α) differs between processes."""
    if world_size() == 1:
        return
    local = torch.cat([t.detach().reshape(-1).float() for t in tensors]).to(_comm_device())
    lo, hi = local.clone(), local.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"{what} differs between processes (max difference {float((hi - lo).max()):.3g}); "
                           f"the processes no longer run the same search.")
