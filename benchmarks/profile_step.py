"""Where a step's time goes: torch.profiler's table of the ops of one step of a benchmark mode (by self CPU time,
optionally grouped by input shapes), to decide what to optimise.

    python -m benchmarks.profile_step --mode train --batch 16 --threads 1 [--shapes] [--naive]
"""
from __future__ import annotations

import argparse
import contextlib

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import vqa_batch
from benchmarks.steps import MODES, _fast, build_bench, prepare_process


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="train")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--shapes", action="store_true", help="group by input shapes")
    p.add_argument("--naive", action="store_true")
    p.add_argument("--amp", choices=["off", "bf16"], default="off")
    p.add_argument("--dropout-rng", choices=["fast", "torch"], help="CPU dropout masks (default: the library's)")
    a = p.parse_args(argv)
    from mmnas.ops.layers import set_dropout_rng
    if a.dropout_rng:
        set_dropout_rng(a.dropout_rng)
    prepare_process(a.threads)
    dev = torch.device("cpu")
    with (_fast(False) if a.naive else contextlib.nullcontext()):
        bench = build_bench(a.mode, dev, a.amp)
        batch = vqa_batch(a.batch, seed=1)
        bench.step(batch)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=a.shapes) as prof:
            bench.step(batch)
    table = prof.key_averages(group_by_input_shape=a.shapes)
    print(table.table(sort_by="self_cpu_time_total", row_limit=a.rows, max_name_column_width=40,
                      max_shapes_column_width=60))


if __name__ == "__main__":
    main()
