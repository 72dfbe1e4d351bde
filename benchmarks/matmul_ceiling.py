"""How close to the FLOP floor a step could get if everything but its matrix products took no time.

Records every matrix product of one step of a benchmark mode (aten mm/addmm/bmm/baddbmm with their shapes and strides,
forward and backward, through a dispatch mode), then times each distinct product on its own, on fresh tensors of
the same layout, with a fresh output (what the step does) and into a preallocated one; each product is also timed
where it ran, inside that step. Prints their sums against the floor (FLOPs / the 2048³ rate measured in the same
process, before and after the timings): the "ceiling" is the fraction of the floor the step would reach with its
products alone. On a shared machine it moves by ±15 % from run to run, as the rate does.

    python -m benchmarks.matmul_ceiling --mode train --batch 64 --threads 2 [--json out.json]

`python -m benchmarks` runs it for the train, search weight and search arch steps and states, next to each speed
target, the best fraction of the floor those products leave possible.
"""
from __future__ import annotations

import argparse
import collections
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.common import matmul_rate, median, vqa_batch, write_json
from benchmarks.steps import MODES, build_bench, prepare_process

aten = torch.ops.aten
PRODUCTS = {aten.mm.default: "mm", aten.addmm.default: "addmm", aten.bmm.default: "bmm",
            aten.baddbmm.default: "baddbmm"}


class _Recorder(TorchDispatchMode):
    """Counts the step's products by (kind, layout, dtype) and times each where it runs, inside the step (with the
    caches and memory the step leaves it: the time the products really take there)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter = collections.Counter()
        self.in_step_s: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in PRODUCTS:
            return func(*args, **kwargs)
        layout = tuple((tuple(a.shape), tuple(a.stride())) for a in args if isinstance(a, torch.Tensor))
        key = (PRODUCTS[func], layout, args[0].dtype)
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        self.in_step_s[key] += time.perf_counter() - t0
        self.calls[key] += 1
        return out


def _like(shape: tuple, stride: tuple, dtype: torch.dtype) -> torch.Tensor:
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride) if n > 0)
    return torch.randn(size).to(dtype).as_strided(shape, stride)


def _flops(kind: str, layout: tuple) -> int:
    shapes = [s for s, _ in layout]
    a, b = shapes[-2], shapes[-1]
    if kind in ("mm", "addmm"):
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


def _time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def measure(mode: str, batch_size: int, threads: int, reps: int = 5) -> dict[str, Any]:
    prepare_process(threads)
    bench = build_bench(mode, torch.device("cpu"))
    batch = vqa_batch(batch_size, seed=1)
    bench.step(batch)
    recorder = _Recorder()
    with recorder:
        bench.step(batch)
    rates = [matmul_rate()]
    rows, flops, fresh_s, prealloc_s = [], 0, 0.0, 0.0
    in_step_s = sum(recorder.in_step_s.values())
    for (kind, layout, dtype), count in recorder.calls.items():
        tensors = [_like(s, st, dtype) for s, st in layout]
        fn = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm, "baddbmm": torch.baddbmm}[kind]
        out = fn(*tensors)
        t_fresh = _time(lambda: fn(*tensors), reps)
        t_pre = _time(lambda: fn(*tensors, out=out), reps)
        f = _flops(kind, layout)
        flops += f * count
        fresh_s += t_fresh * count
        prealloc_s += t_pre * count
        rows.append((t_fresh * count, kind, [list(s) for s, _ in layout], count, f / t_fresh / 1e9,
                     f / t_pre / 1e9, f * count / recorder.in_step_s[(kind, layout, dtype)] / 1e9))
    rates.append(matmul_rate())
    rate = sum(rates) / 2   # before and after the timings: machine load slows both alike
    floor = flops / rate
    return {"mode": mode, "batch": batch_size, "threads": threads, "rate": rate, "rates": rates, "flops": flops,
            "floor_s": floor,
            "products_fresh_s": fresh_s, "products_prealloc_s": prealloc_s, "products_in_step_s": in_step_s,
            "ceiling_fresh": floor / fresh_s, "ceiling_prealloc": floor / prealloc_s, "in_step": floor / in_step_s,
            "rows": sorted(rows, key=lambda r: -r[0])}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="train")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--reps", type=int, default=5, help="timings per distinct product (median)")
    p.add_argument("--json", help="write the record here")
    a = p.parse_args(argv)
    r = measure(a.mode, a.batch, a.threads, a.reps)
    if a.json:
        write_json(a.json, r)
    print(f"{r['mode']} bs {r['batch']}: {r['flops'] / 1e9:.0f} GFLOP in products; 2048³ rate "
          f"{r['rate'] / 1e9:.0f} GFLOP/s → floor {r['floor_s']:.2f} s")
    print(f"products alone: {r['products_fresh_s']:.2f} s with fresh outputs (ceiling {r['ceiling_fresh']:.0%} of "
          f"the floor), {r['products_prealloc_s']:.2f} s into preallocated outputs ({r['ceiling_prealloc']:.0%})")
    print(f"the same products inside a step: {r['products_in_step_s']:.2f} s ({r['in_step']:.0%} of the floor)")
    print("largest: s alone | op | shapes | calls | GFLOP/s alone, fresh | preallocated | inside the step")
    for total, kind, shapes, count, g_fresh, g_pre, g_step in r["rows"][:a.rows]:
        print(f"  {total:6.3f} | {kind} | {shapes} | {count} | {g_fresh:.0f} | {g_pre:.0f} | {g_step:.0f}")


if __name__ == "__main__":
    main()
