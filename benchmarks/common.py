"""Shared pieces of the speed and memory benchmarks: thread setup, the machine's fp32 matmul rate, FLOP counting,
peak memory, robust timing statistics and synthetic VQA batches of the release's shapes."""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# The release's VQA sizes (spec §5): 100 regions of 2048 features, 14 tokens, 3,129 answers, a ~20k-word vocabulary.
VQA_SHAPES = {"regions": 100, "feat": 2048, "tokens": 14, "answers": 3129, "vocab": 20000}
# Synthetic text fills 10 of 14 tokens and images 80 of 100 regions, so both masks have padding to handle.
TEXT_LEN, REGION_COUNT = 10, 80


def set_threads(threads: int) -> int:
    """Intra-op threads for torch (OMP/MKL follow the environment the runner sets before the process starts)."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def matmul_rate(size: int = 2048, reps: int = 3, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a square `size` matmul on this machine now (median of `reps`, after one warm-up): the reference
    rate of the FLOP floor. Measured in the same process, with the same threads, right before each timed step, so
    that other load on a shared machine slows both alike."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(reps + 1):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return 2.0 * size ** 3 / statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """The products of one recurrent layer over a sequence (the CPU LSTM's `mkldnn_rnn_layer`): every step multiplies
    its input by W_ih [G, I] and its previous hidden state by W_hh [G, H], G = 4H for an LSTM."""
    steps = math.prod(input_shape[:-1])  # T·B, whichever of them comes first
    return 2 * steps * w_ih_shape[0] * (w_ih_shape[1] + w_hh_shape[1])


def _rnn_layer_backward_flops(*args, out_shape=None, **kwargs) -> int:
    """The layer's backward computes the gradients of its input, hidden states and both weights: twice the forward."""
    return 2 * _rnn_layer_flops(*args)


# torch's counter has no formula for the CPU LSTM kernels and would count the text encoder's LSTM as nothing.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten.mkldnn_rnn_layer: _rnn_layer_flops,
                        torch.ops.aten.mkldnn_rnn_layer_backward: _rnn_layer_backward_flops}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix products `fn` runs (torch.utils.flop_counter: mm, bmm, addmm, attention, convolutions;
    and the CPU LSTM's, counted here)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def minor_faults() -> int:
    """Minor page faults of this process so far: every first touch of a freshly mapped page (a tensor the C library
    mapped on its own) is one, at about a microsecond each."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def machine_load() -> dict[str, Any]:
    """What else runs on the machine: the 1/5/15-minute load averages and the CPU count."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"loadavg": load, "cpus": os.cpu_count()}


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cuda": torch.cuda.is_available(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), **machine_load()}


def vqa_batch(batch: int, seed: int = 0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A VQA batch of the release's shapes (random values, real padding): text_ix [B,14], img_feat [B,100,2048],
    img_rel [B,100,100,4], target [B,3129] soft scores."""
    g = torch.Generator().manual_seed(seed)
    s = VQA_SHAPES
    text = torch.randint(3, s["vocab"], (batch, s["tokens"]), generator=g)
    text[:, TEXT_LEN:] = 0
    feat = torch.rand(batch, s["regions"], s["feat"], generator=g)
    feat[:, REGION_COUNT:] = 0
    rel = torch.randn(batch, s["regions"], s["regions"], 4, generator=g)
    rel[:, REGION_COUNT:] = 0
    rel[:, :, REGION_COUNT:] = 0
    target = torch.zeros(batch, s["answers"])
    hot = torch.randint(0, s["answers"], (batch, 3), generator=g)
    target.scatter_(1, hot, torch.tensor([1.0, 0.6, 0.3]).expand(batch, 3))
    out = {"index": torch.arange(batch), "text_ix": text, "img_feat": feat, "img_rel": rel, "target": target}
    return {k: v.to(device) for k, v in out.items()}


def write_json(path: str, record: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)


def gib(n: float) -> float:
    return round(n / 2 ** 30, 3)
