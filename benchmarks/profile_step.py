"""Where a step's time goes: torch.profiler's table of the ops of one step of a benchmark mode (by self CPU time,
optionally grouped by input shapes), to decide what to optimise; `--summary` adds the step's self CPU time by kind
of work (matrix products, layout copies, the fused functions with their NumPy mask passes, the optimizer, the rest).

    python -m benchmarks.profile_step --mode train --batch 16 --threads 1 [--shapes] [--naive] [--summary]
"""
from __future__ import annotations

import argparse
import contextlib

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import vqa_batch
from benchmarks.steps import MODES, _fast, build_bench, prepare_process

CATEGORIES = ("matrix products", "layout copies", "fused functions", "optimizer", "other")
_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::addmv_", "aten::mv",
             "aten::dot", "aten::matmul", "aten::linear"}
_COPIES = {"aten::copy_", "aten::clone", "aten::cat", "aten::stack", "aten::contiguous", "aten::_to_copy"}


def category(name: str) -> str:
    """The kind of work of one profiler event, by its name (an optimizer step is recognised by its caller)."""
    if name in _PRODUCTS:
        return "matrix products"
    if name in _COPIES:
        return "layout copies"
    if name.startswith("Optimizer."):
        return "optimizer"
    if not name.startswith(("aten::", "autograd::", "torch::", "detach", "[")) and "Function" in name \
            or name.startswith("_Fused"):
        return "fused functions"  # our autograd functions: their self time includes the NumPy passes they run
    return "other"


def time_by_category(events) -> dict[str, float]:
    """Self CPU seconds per category over a profile's event trees: everything under an optimizer step counts as the
    optimizer; every other event by its own name. The values sum to the profile's self CPU total."""
    out = dict.fromkeys(CATEGORIES, 0.0)

    def visit(ev, inherited: str | None) -> None:
        cat = inherited or ("optimizer" if category(ev.name) == "optimizer" else None)
        out[cat or category(ev.name)] += ev.self_cpu_time_total / 1e6
        for child in ev.cpu_children:
            visit(child, cat)

    for ev in events:
        if ev.cpu_parent is None:
            visit(ev, None)
    return out


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
    p.add_argument("--summary", action="store_true", help="also the self CPU time by kind of work")
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
    if a.summary:
        parts = time_by_category(prof.events())
        total = sum(parts.values())
        for name, seconds in parts.items():
            print(f"{name:>16}: {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
        print(f"{'self CPU total':>16}: {total:6.2f} s")


if __name__ == "__main__":
    main()
