"""benchmarks/matmul_ceiling.py: the products it records (forward and backward, with their layouts) and the FLOPs it
credits them with, against torch's own FLOP counter."""
from __future__ import annotations

import torch

from benchmarks.common import count_flops
from benchmarks.matmul_ceiling import _flops, _like, _Recorder


def test_recorder_sees_forward_and_backward_products_with_their_layouts():
    lin = torch.nn.Linear(8, 16)
    x = torch.randn(5, 8, requires_grad=True)
    rec = _Recorder()
    with rec:
        lin(x).sum().backward()
    kinds = sorted(kind for (kind, _, _), n in rec.calls.items() for _ in range(n))
    assert kinds == ["addmm", "mm", "mm"]  # forward addmm; backward: input and weight gradients
    layouts = {layout for (kind, layout, _) in rec.calls if kind == "mm"}
    assert any(stride != (shape[1], 1) for layout in layouts for shape, stride in layout)  # a transposed operand


def test_flops_and_layouts_match_torch():
    cases = [("mm", [((6, 4), (4, 1)), ((4, 3), (1, 4))]),
             ("addmm", [((3,), (1,)), ((6, 4), (4, 1)), ((4, 3), (3, 1))]),
             ("bmm", [((2, 6, 4), (24, 4, 1)), ((2, 4, 3), (12, 3, 1))]),
             ("baddbmm", [((2, 6, 3), (18, 3, 1)), ((2, 6, 4), (24, 4, 1)), ((2, 4, 3), (12, 1, 4))])]
    for kind, layout in cases:
        tensors = [_like(shape, stride, torch.float32) for shape, stride in layout]
        assert [(tuple(t.shape), t.stride()) for t in tensors] == [(s, st) for s, st in layout]
        fn = getattr(torch, kind)
        assert _flops(kind, tuple(layout)) == count_flops(lambda: fn(*tensors)), kind


def test_profile_summary_sorts_a_step_into_kinds_of_work_that_add_up():
    """profile_step --summary: products, copies, our autograd functions and the optimizer's whole step are told apart,
    and the parts sum to the profile's self CPU total."""
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.profile_step import CATEGORIES, category, time_by_category
    from mmnas.ops.layers import relu_dropout

    assert category("aten::addmm") == "matrix products" and category("aten::copy_") == "layout copies"
    assert category("_ReluDropoutFunction") == category("_AttentionFunctionBackward") == "fused functions"
    assert category("Optimizer.step#Adam.step") == "optimizer" and category("aten::softmax") == "other"
    lin = torch.nn.Linear(64, 256)
    opt = torch.optim.Adam(lin.parameters())
    x = torch.randn(32, 64, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = relu_dropout(lin(x), 0.1, True)
        out.t().contiguous().sum().backward()
        opt.step()
    parts = time_by_category(prof.events())
    assert list(parts) == list(CATEGORIES)
    assert all(parts[k] > 0 for k in ("matrix products", "layout copies", "fused functions", "optimizer"))
    total = sum(ev.self_cpu_time_total for ev in prof.events()) / 1e6
    assert abs(sum(parts.values()) - total) <= 1e-9 * max(total, 1.0)
    # The optimizer's part is its whole step, the element-wise ops it runs included.
    step = sum(ev.cpu_time_total for ev in prof.events() if ev.name.startswith("Optimizer.step")) / 1e6
    assert abs(parts["optimizer"] - step) <= 1e-6
