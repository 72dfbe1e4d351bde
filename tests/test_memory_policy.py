"""run.host_memory: each glibc policy takes effect in the process (where a 2 MB and a 64 MB block come from after
the C library's moving threshold had risen to 16 MB), and unknown policies are refused by the config check."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from mmnas.config import ConfigError, build_config

PROBE = textwrap.dedent("""
    import ctypes, sys
    from mmnas.engine.memory import set_host_memory
    libc = ctypes.CDLL("libc.so.6")
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(16 << 20))          # glibc's own threshold rises to 16 MB when this block is freed
    took = set_host_memory(sys.argv[1])
    def mapped(size):
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(size)
        grew = libc.mallinfo2().hblkhd - before >= size
        return block, grew
    small, small_mapped = mapped(2 << 20)
    big, big_mapped = mapped(64 << 20)
    libc.free(big)
    kept = libc.mallinfo2().fordblks >= 64 << 20    # the freed 64 MB block stays in the heap for reuse
    print(took, small_mapped, big_mapped, kept)
""")


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="a glibc setting")
@pytest.mark.parametrize("policy, expected", [("system", "False False True False"),
                                              ("reuse", "True False False True"),
                                              ("lean", "True True True False")])
def test_policy_decides_which_blocks_are_mapped_and_kept(policy, expected):
    out = subprocess.run([sys.executable, "-c", PROBE, policy], capture_output=True, text=True, check=True)
    assert out.stdout.split() == expected.split()


def test_default_is_the_c_librarys_policy():
    assert build_config("vqa", "train").run.host_memory == "system"


@pytest.mark.parametrize("value", ["fast", "1"])
def test_unknown_policies_are_refused(value):
    with pytest.raises(ConfigError, match="run.host_memory.*system, reuse, lean"):
        build_config("vqa", "train", overrides=[f"run.host_memory={value}"])
