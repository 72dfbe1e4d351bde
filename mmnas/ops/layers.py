"""Building blocks shared by ops and heads (spec §2 LayerNorm and dropout, §3 AttFlat): the release's LayerNorm, dropout,
a two-layer MLP, attention pooling — each with a fast path, and the naive formulas behind `use_fast_paths(False)`
(or MMNAS_FAST_OPS=0). benchmarks/README.md has the measured effect of each.

* LayerNorm: the row statistics come from one fused `native_layer_norm` pass and the backward is written by hand
  (two row reductions done as matrix-vector products) instead of autograd through var_mean/sqrt/div. Same formula,
  equal to fp32 rounding; it saves one normalised tensor per call instead of five.
* ReLU → Dropout inside the MLP: one function that saves only its output (which the next Linear saves anyway): the
  backward mask `out > 0` is exactly "ReLU passed and dropout kept".
* Dropout keeps a 1-byte mask for the backward instead of F.dropout's 4-byte noise tensor.

Dropout masks on CPU in training — a deliberate choice: the fast path draws them from a NumPy PCG64 stream seeded by
one draw of torch's default generator (so `torch.manual_seed` still reproduces a run, and a checkpoint that saves
torch's RNG state resumes the same stream), with P(drop) = round(p·2³²)/2³², the same distribution to 1e-10. Torch's
CPU `bernoulli_` costs two Mersenne-Twister draws per element (~15–20 ns); at the release's VQA sizes (about 200 M
mask elements per training step at batch 64) that was a quarter of the step; this stream costs ~3 ns. The price:
other masks than F.dropout's under the same seed, so training numbers differ from the naive path's (same
distribution, not the same draws). `set_dropout_rng("torch")` (or MMNAS_DROPOUT_RNG=torch) keeps F.dropout's own
draws inside the fast path — bit-identical outputs through `native_dropout`, which calls the same `bernoulli_` —
and `use_fast_paths(False)` is F.dropout itself. On other devices F.dropout is used (it is already fused there).
"""
from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NEG_INF = -1e9  # the release masks logits with -1e9, not -inf: a fully padded row stays finite (uniform)

# On unless MMNAS_FAST_OPS=0; `use_fast_paths(False)` switches every op to the naive formulas (a reference for
# tests and for anyone who suspects a fast path).
_FAST = os.environ.get("MMNAS_FAST_OPS", "1").strip().lower() not in ("0", "false", "no", "off")


def use_fast_paths(enabled: bool) -> None:
    """Use the fused implementations (default) or the naive formulas in every op, LayerNorm and dropout."""
    global _FAST
    _FAST = bool(enabled)


def fast_paths_enabled() -> bool:
    return _FAST


DROPOUT_RNGS = ("fast", "torch")
_DROPOUT_RNG = os.environ.get("MMNAS_DROPOUT_RNG", "fast").strip().lower() or "fast"
if _DROPOUT_RNG not in DROPOUT_RNGS:
    raise ValueError(f"MMNAS_DROPOUT_RNG={_DROPOUT_RNG!r}; valid: {', '.join(DROPOUT_RNGS)}")


def set_dropout_rng(kind: str) -> None:
    """'fast' (default): CPU dropout masks from a cheap stream, same distribution; 'torch': F.dropout's own draws
    (see the module docstring)."""
    global _DROPOUT_RNG
    if kind not in DROPOUT_RNGS:
        raise ValueError(f"unknown dropout RNG {kind!r}; valid: {', '.join(DROPOUT_RNGS)}")
    _DROPOUT_RNG = kind


def dropout_rng() -> str:
    return _DROPOUT_RNG


_MASK_CHUNKS = 2           # the mask is drawn in this many independent streams (fixed: results never depend on threads)
_PARALLEL_MASK = 1 << 16   # elements from which the second chunk runs on a helper thread (NumPy releases the GIL)
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _helper() -> ThreadPoolExecutor:
    """One helper thread, recreated in a forked child (a pool's threads do not survive fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmnas-dropout"))
    return _POOL[1]


_BLOCK = 1 << 18  # elements per block of a mask stream: bits and mask stay in cache while they are applied (even:
                  # the stream is drawn as pairs of 32-bit values, so blocks continue one stream unchanged)


def _flat_numpy(t: torch.Tensor) -> np.ndarray | None:
    """t's memory as a flat NumPy array, or None where NumPy cannot stand in for torch (other device or dtype,
    not contiguous)."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64, torch.bool) or not t.is_contiguous():
        return None
    return t.detach().numpy().reshape(-1)


def _for_chunks(n: int, fn) -> None:
    """fn(lo, hi, i) over the _MASK_CHUNKS chunks of [0, n): the later chunks on the helper thread when n is large and
    torch may use more than one thread (NumPy releases the GIL), else one after the other. The chunks, and so the
    results, never depend on the thread count."""
    bounds = [n * i // _MASK_CHUNKS for i in range(_MASK_CHUNKS + 1)]
    chunks = [(bounds[i], bounds[i + 1], i) for i in range(_MASK_CHUNKS)]
    if n >= _PARALLEL_MASK and torch.get_num_threads() > 1:
        pending = [_helper().submit(fn, *c) for c in chunks[1:]]
        fn(*chunks[0])
        for f in pending:
            f.result()
    else:
        for c in chunks:
            fn(*c)


class _MaskApply:
    """dst = src·keep·scale (then ReLU), block by block in NumPy. Torch's CPU kernels for a float tensor and a bool
    mask are not vectorised (masked_fill_ on 13 M elements: 15 ms; NumPy on two threads: 3–5 ms). A dropped entry is
    src·0, as F.dropout computes it; the scale is the same fp32 multiplication as `mul_(scale)`, and ReLU after the
    positive scale gives the same numbers as before it. Where NumPy cannot stand in (other dtypes or devices, strided
    tensors), `with_torch` does the same with torch's kernels."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, scale: torch.Tensor | None, relu: bool,
                 residual: torch.Tensor | None = None) -> None:
        self.src_t, self.dst_t, self.scale_t, self.relu, self.residual_t = src, dst, scale, relu, residual
        self.src, self.dst = _flat_numpy(src), _flat_numpy(dst)
        self.residual = None if residual is None else _flat_numpy(residual)
        self.numpy_ok = self.src is not None and self.dst is not None and self.src.dtype == self.dst.dtype != np.bool_ \
            and (residual is None or (self.residual is not None and self.residual.dtype == self.dst.dtype
                                      and self.residual.size == self.dst.size))
        self.scale = None if scale is None or not self.numpy_ok else np.asarray(scale.item(), dtype=self.dst.dtype)

    def block(self, keep: np.ndarray, lo: int, hi: int) -> None:
        d = self.dst[lo:hi]
        np.multiply(self.src[lo:hi], keep, out=d)
        if self.scale is not None:
            np.multiply(d, self.scale, out=d)
        if self.residual is not None:
            np.add(d, self.residual[lo:hi], out=d)  # = residual + d: IEEE addition commutes exactly
        if self.relu:
            np.maximum(d, 0, out=d)

    def after_blocks(self) -> torch.Tensor:
        torch.autograd.graph.increment_version(self.dst_t)  # NumPy wrote it behind autograd's version counter
        return self.dst_t

    def with_torch(self, keep: torch.Tensor) -> torch.Tensor:
        torch.mul(self.src_t, keep.view(self.src_t.shape), out=self.dst_t)
        if self.scale_t is not None:
            self.dst_t.mul_(self.scale_t)
        if self.residual_t is not None:
            self.dst_t.add_(self.residual_t.view(self.dst_t.shape))
        if self.relu:
            self.dst_t.relu_()
        return self.dst_t


def _keep_mask(x: torch.Tensor, p: float, apply: _MaskApply | None = None) -> torch.Tensor:
    """bool [x.shape]: True = kept, each with probability 1 − round(p·2³²)/2³², from 32-bit uniforms of NumPy PCG64
    streams seeded by one draw of torch's default CPU generator. `apply` is carried out as the mask is drawn."""
    seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
    threshold = np.uint32(min(round(p * 2 ** 32), 2 ** 32 - 1))
    keep = np.empty(x.numel(), dtype=np.bool_)
    in_numpy = apply is not None and apply.numpy_ok

    def fill(start: int, stop: int, i: int) -> None:
        stream = np.random.PCG64([seed, i])
        for lo in range(start, stop, _BLOCK):
            hi = min(lo + _BLOCK, stop)
            bits = stream.random_raw((hi - lo + 1) // 2).view(np.uint32)[:hi - lo]
            np.greater_equal(bits, threshold, out=keep[lo:hi])
            if in_numpy:
                apply.block(keep[lo:hi], lo, hi)

    _for_chunks(keep.size, fill)
    mask = torch.from_numpy(keep).view(x.shape)
    if in_numpy:
        apply.after_blocks()
    elif apply is not None:
        apply.with_torch(mask)
    return mask


def _mask_mul(x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """x·keep·scale with an existing mask, into `out` (a new tensor by default; x itself to overwrite it)."""
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    apply = _MaskApply(x, out, scale, relu=False)
    k = _flat_numpy(keep)
    if not (apply.numpy_ok and k is not None):
        return apply.with_torch(keep)
    _for_chunks(k.size, lambda lo, hi, _: apply.block(k[lo:hi], lo, hi))
    return apply.after_blocks()


def _draw_and_mask(x: torch.Tensor, p: float, scale: torch.Tensor | None, out: torch.Tensor | None = None,
                   relu: bool = False, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x·keep·scale, + residual if given, then ReLU if asked; keep) with a keep mask as `dropout` draws it — the fast
    stream, or F.dropout's own draws (set_dropout_rng("torch")) — into `out` (a new tensor by default; x itself to
    overwrite it)."""
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    apply = _MaskApply(x, out, scale, relu, residual)
    if _DROPOUT_RNG == "fast":
        keep = _keep_mask(x, p, apply)
    else:
        keep = torch.native_dropout(x, p, True)[1]
        apply.with_torch(keep)
    return out, keep


def _keep_scale(p: float, dtype: torch.dtype) -> torch.Tensor:
    """1/(1−p) computed as F.dropout computes its kept value (a division in the tensor's dtype)."""
    return torch.ones((), dtype=dtype).div_(1.0 - p)


class _MaskedDropoutFunction(torch.autograd.Function):
    """x·keep/(1−p) with a fast-stream keep mask; saves the 1-byte mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        scale = _keep_scale(p, x.dtype)
        out, keep = _draw_and_mask(x, p, scale)
        ctx.save_for_backward(keep, scale)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        keep, scale = ctx.saved_tensors
        return _mask_mul(grad, keep, scale), None


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """`with fast_paths(False): …` runs the naive formulas inside the block and restores the setting after it."""
    before = _FAST
    use_fast_paths(enabled)
    try:
        yield
    finally:
        use_fast_paths(before)


# -- LayerNorm ------------------------------------------------------------------------------------------------------
def _release_normalize(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """xhat = (x − mean)/(std_unbiased + eps) and, per row, inv = 1/(std_u + eps) and coef = 1/((n−1)·std_u).

    `native_layer_norm` gives (x − mean)·rstd with rstd = 1/σ_b (biased σ) in one fused pass; σ_u = σ_b·√(n/(n−1)),
    so xhat = z·σ_b·inv. Its eps of 1e-30 only keeps an all-constant row finite (z = 0 there, as the release's
    formula gives); for any row whose variance exceeds ~1e-23 it changes nothing."""
    n = x.size(-1)
    z, _, rstd = torch.native_layer_norm(x, (n,), None, None, 1e-30)
    rstd = rstd.reshape(x.shape[:-1] + (1,))
    sigma_b = rstd.reciprocal()
    sigma_u = sigma_b * math.sqrt(n / (n - 1))
    inv = (sigma_u + eps).reciprocal_()
    xhat = z.mul_(sigma_b * inv)
    return xhat, inv, ((n - 1) * sigma_u).reciprocal_()


class _ReleaseLayerNormFunction(torch.autograd.Function):
    """y = w·xhat + b with the hand-written gradient of the release's normalisation:
    ∂L/∂x = inv·(g − mean(g)) − xhat·Σ(g·xhat)/((n−1)·σ_u), g = ∂L/∂y·w (tests/test_fast_paths.py checks it against
    autograd of the formula in float64)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        xhat, inv, coef = _release_normalize(x, eps)
        ctx.save_for_backward(xhat, weight, inv, coef)
        return torch.addcmul(bias, xhat, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xhat, weight, inv, coef = ctx.saved_tensors
        grad_x, grad_w, grad_b = _release_norm_backward(grad, xhat, weight, inv, coef, *ctx.needs_input_grad[:3])
        return grad_x, grad_w, grad_b, None


def _release_norm_backward(grad, xhat, weight, inv, coef, need_x: bool, need_w: bool, need_b: bool):
    """(∂L/∂x, ∂L/∂w, ∂L/∂b) of y = w·xhat + b, each computed only if asked for (None otherwise)."""
    n = xhat.size(-1)
    gy = grad.reshape(-1, n)
    xh = xhat.reshape(-1, n)
    gx = gy * xh                                   # ∂L/∂y·xhat: its row sums (·w) and column sums are needed
    grad_x = grad_w = grad_b = None
    if need_x:
        # Row reductions as matrix-vector products: Σ_j g_j·xhat_j = (gy·xhat)·w and Σ_j g_j = gy·w.
        s_gx = (gx @ weight).unsqueeze(1)
        mean_g = (gy @ weight).unsqueeze(1).mul_(1.0 / n)
        grad_x = torch.addcmul(mean_g.neg_(), gy, weight).mul_(inv.reshape(-1, 1))
        grad_x.addcmul_(xh, s_gx.mul_(coef.reshape(-1, 1)), value=-1.0)
        grad_x = grad_x.view_as(grad)
    if need_w:
        grad_w = gx.sum(0)
    if need_b:
        grad_b = gy.sum(0)
    return grad_x, grad_w, grad_b


class _DropoutResidualNormFunction(torch.autograd.Function):
    """LayerNorm(s + dropout(f)) with the release's LayerNorm, the sum built in f's buffer (f is the op's fresh
    output; it comes back as a second, dirty output that the caller drops). Saves the 1-byte mask and what the
    LayerNorm saves, like the three functions it replaces, with two [B,L,H] tensors fewer written per call."""

    @staticmethod
    def forward(ctx, s, f, weight, bias, p: float, eps: float):
        scale = _keep_scale(p, f.dtype)
        # s + f·keep/(1−p), as s + dropout(f), in the mask pass
        x, keep = _draw_and_mask(f, p, scale, out=f, residual=s)
        xhat, inv, coef = _release_normalize(x, eps)
        ctx.mark_dirty(f)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xhat, weight, inv, coef, keep, scale)
        return torch.addcmul(bias, xhat, weight), f

    @staticmethod
    def backward(ctx, grad, _):
        xhat, weight, inv, coef, keep, scale = ctx.saved_tensors
        if grad is None:
            return None, None, None, None, None, None
        need_s, need_f, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x, grad_w, grad_b = _release_norm_backward(grad, xhat, weight, inv, coef, need_s or need_f, need_w,
                                                        need_b)
        grad_f = None
        if need_f:
            grad_f = _mask_mul(grad_x, keep, scale)
        return (grad_x if need_s else None), grad_f, grad_w, grad_b, None, None


def dropout_residual_norm(s: torch.Tensor, f: torch.Tensor, p: float, training: bool,
                          norm: "LayerNorm") -> torch.Tensor:
    """norm(s + dropout(f)) for an op's fresh output f (which may be overwritten): one fused function in training on
    CPU, an in-place sum otherwise; the naive composition when fast paths are off or dtypes differ."""
    same = f.dtype == s.dtype == norm.weight.dtype and f.shape == s.shape and f.size(-1) > 1
    if not (_FAST and same and _owns(f) and f.device.type == "cpu"):
        return norm(s + dropout(f, p, training))
    if training and 0.0 < p < 1.0:
        if torch.is_grad_enabled():
            # A Linear's 3-D output is a view of its 2-D product; autograd lets a function with two outputs dirty
            # the product itself, not the view.
            buf = f if f._base is None else f._base
            out = _DropoutResidualNormFunction.apply(s.reshape(buf.shape), buf, norm.weight, norm.bias, p, norm.eps)
            return out[0].view(f.shape)
        return norm(_draw_and_mask(f, p, _keep_scale(p, f.dtype), out=f, residual=s)[0])
    if torch.is_grad_enabled() and (f.requires_grad or s.requires_grad):
        return norm(s + f)
    return norm(torch.add(s, f, out=f))


class LayerNorm(nn.Module):
    """a·(x−mean)/(std+eps)+b with the *unbiased* std and eps on the std — the release's, not nn.LayerNorm."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused path needs one dtype (under autocast a bf16 input meets fp32 parameters: naive path) and n ≥ 2.
        if _FAST and x.dtype == self.weight.dtype and x.size(-1) > 1:
            if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad or self.bias.requires_grad):
                return _ReleaseLayerNormFunction.apply(x, self.weight, self.bias, self.eps)
            xhat, _, _ = _release_normalize(x, self.eps)
            return torch.addcmul(self.bias, xhat, self.weight)
        return naive_layer_norm(x, self.weight, self.bias, self.eps)


def naive_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The release's formula as written (autograd does the backward)."""
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=1)
    return weight * (x - mean) / (var.sqrt() + eps) + bias


# -- dropout --------------------------------------------------------------------------------------------------------
def dropout(x: torch.Tensor, p: float, training: bool, overwrite: bool = False) -> torch.Tensor:
    """F.dropout; on CPU with the fast stream's masks (default) or F.dropout's own draws through `native_dropout`
    (set_dropout_rng('torch')), either way with a 1-byte saved mask. `overwrite`: x is a fresh intermediate that may
    be masked in place when no gradient is being recorded (the inactive candidates of an arch step)."""
    if not training or p == 0.0:
        return x
    if _FAST and x.device.type == "cpu" and 0.0 < p < 1.0:
        if _DROPOUT_RNG == "fast":
            if torch.is_grad_enabled() and x.requires_grad:
                return _MaskedDropoutFunction.apply(x, p)
            if overwrite and _owns(x):
                return _draw_and_mask(x, p, _keep_scale(p, x.dtype), out=x)[0]
            return _draw_and_mask(x, p, _keep_scale(p, x.dtype))[0]
        return torch.native_dropout(x, p, True)[0]
    return F.dropout(x, p, True)


class Dropout(nn.Dropout):
    """nn.Dropout (same attributes, no state) computed by `dropout` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


class _ReluDropoutFunction(torch.autograd.Function):
    """dropout(relu(h)) with the mask `dropout` would draw; saves only its output: out > 0 ⇔ (h > 0 and kept),
    because the kept values are h/(1−p) ≥ h > 0 (no underflow)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, p: float) -> torch.Tensor:
        if _DROPOUT_RNG == "fast":
            # h is the first Linear's fresh output, which nothing saved: masked in place (no new 4-byte tensor).
            overwrite = _owns(h) and h.grad_fn is not None
            out = _draw_and_mask(h, p, _keep_scale(p, h.dtype), out=h if overwrite else None, relu=True)[0]
            if overwrite:
                ctx.mark_dirty(h)
        else:
            # F.dropout's noise tensor: bernoulli_(1−p) on an empty float tensor of h's shape, divided by (1−p).
            noise = torch.empty_like(h, memory_format=torch.contiguous_format).bernoulli_(1.0 - p).div_(1.0 - p)
            out = torch.relu(h).mul_(noise)
        ctx.p = p
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        # (grad·noise) where ReLU passed: noise is the kept value 1/(1−p), computed by the same division as above.
        scale = torch.ones((), dtype=grad.dtype).div_(1.0 - ctx.p)
        # threshold_backward(g, out, 0) = g where out > 0 else 0: ReLU's own backward kernel (torch.where with a
        # scalar is several times slower on CPU). Written into grad itself when it is a whole fresh buffer: here it
        # is the next Linear's input gradient, which nothing else reads (no new [B·L, 4H] tensor at the peak).
        grad_h = grad if _owns(grad) and grad.shape == out.shape and grad.dtype == out.dtype \
            and not torch.is_grad_enabled() else torch.empty_like(out, memory_format=torch.contiguous_format)
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad_h).mul_(scale), None


def _owns(t: torch.Tensor) -> bool:
    """Whether `t` may be overwritten by the function it is handed to. Callers hand over the output of a Linear that
    nothing else reads (a Linear's backward saves its inputs, not its output); views are never overwritten. Should a
    function have saved it after all, autograd's version check raises at backward time instead of computing wrong
    gradients."""
    return t.is_contiguous() and (t._base is None or (t._base.is_contiguous() and t._base.numel() == t.numel()))


def relu_dropout(h: torch.Tensor, p: float, training: bool, overwrite: bool = False) -> torch.Tensor:
    """dropout(relu(h)) with the numbers of `dropout(F.relu(h), p, training)` (and its RNG draws). `overwrite`: h is
    a fresh intermediate that may be changed in place when no gradient is being recorded."""
    if _FAST and training and 0.0 < p < 1.0 and h.device.type == "cpu" and torch.is_grad_enabled() \
            and h.requires_grad:
        if _owns(h) and h._base is not None:
            # Overwrite a Linear's 2-D product rather than its 3-D view: in place through a view, autograd would
            # zero-fill and copy the whole gradient in the backward (CopySlices).
            return _ReluDropoutFunction.apply(h._base, p).view(h.shape)
        return _ReluDropoutFunction.apply(h, p)
    if overwrite and _FAST and not (torch.is_grad_enabled() and h.requires_grad) and _owns(h):
        if training and 0.0 < p < 1.0 and h.device.type == "cpu" and _DROPOUT_RNG == "fast":
            # The ReLU in the mask pass, as in training with a graph (one pass over h fewer).
            return _draw_and_mask(h, p, _keep_scale(p, h.dtype), out=h, relu=True)[0]
        return dropout(h.relu_(), p, training, overwrite=True)
    return dropout(F.relu(h), p, training)


# -- MLP and attention pooling --------------------------------------------------------------------------------------
class MLP(nn.Module):
    """Linear → ReLU → Dropout → Linear (the release's MLP(FC(..., use_relu=True)))."""

    def __init__(self, in_size: int, mid_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_size, mid_size)
        self.fc2 = nn.Linear(mid_size, out_size)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _FAST:
            return self.fc2(F.dropout(F.relu(self.fc1(x)), self.dropout.p, self.training))
        return self.fc2(relu_dropout(self.fc1(x), self.dropout.p, self.training, overwrite=True))


class AttFlat(nn.Module):
    """Attention pooling: one logit per position (MLP H→mid→1), padding → −1e9, softmax, weighted sum, Linear(H→out)."""

    def __init__(self, hidden_size: int, mid_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.mlp = MLP(hidden_size, mid_size, 1, dropout)
        self.merge = nn.Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        att = self.mlp(x)  # [B,L,1]
        if mask is not None:
            att = att.masked_fill(mask.view(mask.size(0), -1, 1), NEG_INF)
        att = torch.softmax(att, dim=1)
        # The weighted sum over positions as one batched matrix product ([B,1,L]·[B,L,H]) instead of a broadcast
        # product and a sum: the same sums, without a [B,L,H] temporary.
        if _FAST:
            pooled = torch.bmm(att.transpose(1, 2), x).squeeze(1)  # [B,H]
        else:
            pooled = (att * x).sum(dim=1)  # [B,H]
        return self.merge(pooled)
