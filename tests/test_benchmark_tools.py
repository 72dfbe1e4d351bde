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
