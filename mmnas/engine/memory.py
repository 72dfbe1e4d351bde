"""Host-memory policy of a run (`run.host_memory`): how the C library serves the tensors of a CPU step.

glibc hands out blocks below a threshold from its heap, which keeps freed memory for reuse, and maps larger blocks
on their own (mmap), unmapping them when they are freed. The threshold moves up by itself to at most 32 MB, so at the
release's VQA sizes every [6400, 2048] tensor of an FFN (52 MB) and every q/k/v product (39 MB) is mapped afresh on
each step, and the kernel zero-fills every page on first touch: ~250k page faults per batch-64 train step, up to 20 ms
for a 52 MB tensor (an elementwise op on it takes 4 ms).

* ``system`` (default): the C library's own policy (what plain PyTorch gets).
* ``reuse``: nothing is mapped on its own and the heap's free top is not trimmed, so freed memory is reused by the
  next step (as PyTorch's CUDA caching allocator does) and RSS stays at its peak until the process ends. At batch 64
  the train step then takes ~100 page faults instead of ~250k, ~3% less time, at ~4% more peak RSS.
* ``lean``: blocks of 1 MB and more are mapped on their own, so RSS follows live memory: the train step's peak RSS is
  ~0.5 GB lower, at ~1.3x the step time (every fresh tensor faults its pages in).

benchmarks/README.md has the measurements. Each process of a run sets it (spawned processes do not inherit it);
forked DataLoader workers do.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import warnings

HOST_MEMORY_POLICIES = ("system", "reuse", "lean")

# mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

_LEAN_THRESHOLD = 1 << 20   # 1 MB: nearly every tensor of a step is mapped on its own
_KEEP_TOP = 1 << 30         # free memory at the heap's top kept rather than trimmed (mallopt takes an int)


def _mallopt():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def set_host_memory(policy: str) -> bool:
    """Apply `policy` (one of HOST_MEMORY_POLICIES) to this process. True if a setting took effect; False for
    ``system`` and, with a warning, where the C library is not glibc."""
    if policy not in HOST_MEMORY_POLICIES:
        raise ValueError(f"unknown host memory policy {policy!r}; valid: {', '.join(HOST_MEMORY_POLICIES)}")
    if policy == "system":
        return False
    mallopt = _mallopt()
    if mallopt is None:
        warnings.warn(f"run.host_memory={policy} is a glibc setting and this C library has no mallopt; running with "
                      "the system's memory policy.", stacklevel=2)
        return False
    if policy == "reuse":
        return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _KEEP_TOP))
    return bool(mallopt(M_MMAP_THRESHOLD, _LEAN_THRESHOLD))
