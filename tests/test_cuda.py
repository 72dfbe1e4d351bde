"""The GPU paths against the naive formulas on the CPU, where a CUDA device is present (`scripts/device_bench.sh` runs
this file first). Without one, the CPU is the device under test, so the checks themselves stay exercised.

On a GPU the network takes other kernels than on the CPU (fused attention through scaled_dot_product_attention,
torch's dropout, cuDNN's LSTM), so the CPU tests do not cover it. Dropout is 0 where two devices are compared:
their mask streams differ by design. TF32 is switched off so that fp32 means fp32.

`MMNAS_TEST_DEVICE=cpu|cuda` chooses the device under test.
"""
from __future__ import annotations

import os

import pytest
import torch

from mmnas.engine.dist import to_device
from mmnas.models.build import build_network, build_supernet
from mmnas.models.losses import vqa_loss
from mmnas.nas import supernet as sn
from mmnas.ops.layers import fast_paths
from tests.helpers import close, padded_vqa_batch

DEVICE = os.environ.get("MMNAS_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
H = 128
SMALL = dict(vocab_size=50, answer_size=10, hidden_size=H, feat_size=32, flat_mlp_size=64)


@pytest.fixture(autouse=True)
def strict_fp32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _step(net, batch, device: str, fast: bool):
    net.zero_grad(set_to_none=True)
    with fast_paths(fast):
        out = net(to_device(batch, torch.device(device)))
        vqa_loss(out, batch["target"].to(device)).backward()
    return out.detach().cpu(), {n: p.grad.detach().cpu() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("train", [False, True])
def test_network_on_the_device_equals_the_naive_formulas_on_the_cpu(train):
    torch.manual_seed(0)
    ref = build_network("vqa", "arch/mmnas_vqa.json", dropout=0.0, **SMALL).train(train)
    net = build_network("vqa", "arch/mmnas_vqa.json", dropout=0.0, **SMALL).train(train)
    net.load_state_dict(ref.state_dict())
    net.to(DEVICE)
    batch = padded_vqa_batch()
    out_ref, grads_ref = _step(ref, batch, "cpu", fast=False)
    out, grads = _step(net, batch, DEVICE, fast=True)
    close(out, out_ref, 5e-5, "output")
    assert grads.keys() == grads_ref.keys()
    scale = max(float(g.abs().max()) for g in grads_ref.values())
    for name, g in grads_ref.items():
        # Relative to the largest gradient, as in tests/test_fast_paths.py (some are rounding noise around zero).
        assert float((grads[name] - g).abs().max()) <= 5e-5 * scale, name


def test_full_arch_step_on_the_device_gives_the_cpu_gate_gradients():
    torch.manual_seed(0)
    kwargs = dict(dropout=0.0, nodes={"enc": 2, "dec": 3}, **SMALL)
    ref, net = build_supernet("vqa", **kwargs).train(), build_supernet("vqa", **kwargs).train()
    net.load_state_dict(ref.state_dict())
    net.to(DEVICE)
    batch = padded_vqa_batch()
    gates = []
    for model, device, fast in ((ref, "cpu", False), (net, DEVICE, True)):
        for p in model.weight_parameters():
            p.requires_grad_(False)   # as the searcher's arch step
        with fast_paths(fast), model.sampling("full", torch.Generator().manual_seed(1)):
            vqa_loss(model(to_device(batch, torch.device(device))), batch["target"].to(device)).backward()
        gates.append([m.gate.grad.detach().cpu() for m in sn.mixed_ops(model)])
    for i, (a, b) in enumerate(zip(*gates)):
        close(a, b, 5e-5, f"gate gradient of mixed op {i}")


def test_training_dropout_on_the_device_repeats_under_a_seed_and_drops_at_the_rate():
    net = build_network("vqa", "arch/mmnas_vqa.json", **SMALL).to(DEVICE).train()
    batch = to_device(padded_vqa_batch(), torch.device(DEVICE))
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        outs.append(net(batch).detach())
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(6)
    assert not torch.equal(net(batch).detach(), outs[0])
    x = torch.ones(1 << 20, device=DEVICE)
    kept = torch.nn.functional.dropout(x, 0.1, training=True).ne(0).float().mean().item()
    assert abs(kept - 0.9) < 0.002


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast on CUDA")
def test_bf16_autocast_on_cuda_stays_near_fp32():
    torch.manual_seed(0)
    net = build_network("vqa", "arch/mmnas_vqa.json", dropout=0.0, **SMALL).to(DEVICE).eval()
    batch = to_device(padded_vqa_batch(), torch.device(DEVICE))
    with torch.no_grad():
        ref = net(batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = net(batch)
    assert low.dtype in (torch.bfloat16, torch.float32)
    close(low, ref, 5e-2, "bf16 output")
