"""run.mmap_threshold_mb: the glibc setting takes effect in the process (a 2 MB block gets its own mapping after the
C library's moving threshold had risen above it), and bad values are refused by the config check."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from mmnas.config import ConfigError, build_config

PROBE = textwrap.dedent("""
    import ctypes, sys
    from mmnas.engine.memory import set_mmap_threshold
    libc = ctypes.CDLL("libc.so.6")
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(16 << 20))          # glibc's own threshold rises to 16 MB when this block is freed
    took = set_mmap_threshold(int(sys.argv[1]))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(2 << 20)
    print(took, libc.mallinfo2().hblkhd - before >= 2 << 20)
""")


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="a glibc setting")
@pytest.mark.parametrize("mb, expected", [(0, "False False"), (1, "True True")])
def test_threshold_maps_blocks_above_it_on_their_own(mb, expected):
    out = subprocess.run([sys.executable, "-c", PROBE, str(mb)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == expected.split()


@pytest.mark.parametrize("value", ["-1", "64"])
def test_out_of_range_thresholds_are_refused(value):
    with pytest.raises(ConfigError, match="run.mmap_threshold_mb"):
        build_config("vqa", "train", overrides=[f"run.mmap_threshold_mb={value}"])
