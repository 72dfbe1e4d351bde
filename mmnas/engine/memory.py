"""Host-memory policy of a run: where the C library maps large blocks (`run.mmap_threshold_mb`).

glibc serves blocks below a threshold from its heap, which keeps freed memory for reuse, and maps larger ones on their
own, returning them to the system when freed. Its threshold moves up by itself (to at most 32 MB) as large blocks are
freed, so a training step's tensors of a few MB end up on the heap, where holes left between longer-lived blocks are
never returned: at the release's VQA sizes the train step's peak RSS is ~0.7 GB above what is live. A fixed threshold
of 1 MB maps nearly every tensor on its own: RSS follows live memory (3.4 instead of 4.2 GB at batch 64), and every
fresh tensor costs page faults (~1.3x the step time on the project's machine). benchmarks/README.md has the figures.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import warnings

M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


def set_mmap_threshold(mb: int) -> bool:
    """Map blocks of at least `mb` MB on their own (0: leave the C library's policy alone). True if it took effect;
    a warning, and False, where the C library is not glibc."""
    if mb <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        warnings.warn("run.mmap_threshold_mb is set, but this C library has no mallopt (it is a glibc setting); "
                      "running with the system's memory policy.", stacklevel=2)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mb) << 20))
