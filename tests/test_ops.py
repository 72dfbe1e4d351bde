import math

import pytest
import torch
import torch.nn.functional as F

from mmnas.models.model_config import ModelConfig
from mmnas.ops import OPS, build_op
from mmnas.ops.layers import AttFlat, LayerNorm

H = 256  # large enough for every registered head size (16…256)


def make(name: str, **kw):
    torch.manual_seed(0)
    op = build_op(name, ModelConfig(hidden_size=H, **kw))
    return op.eval()


def inputs(b=2, ls=5, lo=4, pad_s=0, pad_o=0, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, ls, H, generator=g)
    other = torch.randn(b, lo, H, generator=g)
    s_mask = torch.zeros(b, 1, 1, ls, dtype=torch.bool)
    o_mask = torch.zeros(b, 1, 1, lo, dtype=torch.bool)
    if pad_s:
        s_mask[..., ls - pad_s:] = True
        s[:, ls - pad_s:] = 0
    if pad_o:
        o_mask[..., lo - pad_o:] = True
        other[:, lo - pad_o:] = 0
    rel = torch.randn(b, ls, ls, 64, generator=g)
    return s, other, s_mask, o_mask, rel


def naive_layernorm(x, a, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    std = torch.sqrt(((x - mean) ** 2).sum(-1, keepdim=True) / (x.size(-1) - 1))  # unbiased
    return a * (x - mean) / (std + eps) + b


def naive_attention(att, q_in, kv_in, mask, rel=None):
    """Loop over heads, written from the spec, not from the op."""
    h, d = att.heads, att.head_size
    q, k, v = q_in @ att.linear_q.weight.T, kv_in @ att.linear_k.weight.T, kv_in @ att.linear_v.weight.T
    outs = []
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)
        if rel is not None:
            r = torch.relu(rel @ att.linear_rel.weight.T + att.linear_rel.bias)[..., i]
            logits = logits + torch.log(torch.clamp(r, min=1e-6))
        if mask is not None:
            logits = torch.where(mask[:, 0], torch.full_like(logits, -1e9), logits)
        outs.append(torch.softmax(logits, -1) @ v[..., sl])
    return torch.cat(outs, -1) @ att.linear_merge.weight.T


@pytest.mark.parametrize("name", OPS.names())
def test_op_keeps_shape_and_every_parameter_gets_a_gradient(name):
    op = make(name)
    s, other, s_mask, o_mask, rel = inputs(pad_s=1, pad_o=1)
    s.requires_grad_(True)
    out = op(s, other, s_mask, o_mask, rel)
    assert out.shape == s.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


@pytest.mark.parametrize("name", [n for n in OPS.names() if "att" in n])
def test_padding_does_not_change_unpadded_outputs(name):
    op = make(name)
    s, other, s_mask, o_mask, rel = inputs(ls=4, lo=3)
    ref = op(s, other, s_mask, o_mask, rel)
    # Append 2 padded positions to the stream and 3 to the other modality, with garbage geometry.
    s2 = torch.cat([s, torch.zeros(2, 2, H)], 1)
    o2 = torch.cat([other, torch.zeros(2, 3, H)], 1)
    m2 = torch.cat([s_mask, torch.ones(2, 1, 1, 2, dtype=torch.bool)], -1)
    om2 = torch.cat([o_mask, torch.ones(2, 1, 1, 3, dtype=torch.bool)], -1)
    rel2 = torch.randn(2, 6, 6, 64)
    rel2[:, :4, :4] = rel
    out = op(s2, o2, m2, om2, rel2)
    torch.testing.assert_close(out[:, :4], ref, rtol=1e-5, atol=1e-5)


def test_layernorm_is_the_release_one():
    ln = LayerNorm(7)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 7) * 3 + 2
    torch.testing.assert_close(ln(x), naive_layernorm(x, ln.weight, ln.bias), rtol=1e-6, atol=1e-6)
    # Not nn.LayerNorm: unbiased std and eps on the std change the numbers.
    assert not torch.allclose(ln(x), F.layer_norm(x, (7,), ln.weight, ln.bias, eps=1e-6), atol=1e-4)
    # Hand value: x = [1, 2, 3] → mean 2, unbiased std 1 → (x−2)/(1+1e-6).
    assert torch.allclose(LayerNorm(3)(torch.tensor([[1.0, 2.0, 3.0]])),
                          torch.tensor([[-1.0, 0.0, 1.0]]) / (1 + 1e-6))


@pytest.mark.parametrize("name", ["self_att_64", "self_att_32", "guided_att_64", "rel_self_att_64",
                                  "self_att_64_2", "guided_att_128"])
def test_attention_op_equals_naive_derivation(name):
    op = make(name)
    s, other, s_mask, o_mask, rel = inputs(pad_s=2, pad_o=1)
    att = op.attention
    if name.startswith("guided"):
        f = naive_attention(att, s, other, o_mask)
    elif name.startswith("rel"):
        f = naive_attention(att, s, s, s_mask, rel)
    else:
        f = naive_attention(att, s, s, s_mask)
    expected = naive_layernorm(s + f, op.norm.weight, op.norm.bias)
    torch.testing.assert_close(op(s, other, s_mask, o_mask, rel), expected, rtol=1e-4, atol=1e-4)


def test_relation_bias_clamps_at_1e6():
    op = make("rel_self_att_64")
    with torch.no_grad():  # a relation projection that is ReLU-dead everywhere → bias log(1e-6) for every pair
        op.attention.linear_rel.weight.zero_()
        op.attention.linear_rel.bias.fill_(-1.0)
    s, other, s_mask, o_mask, rel = inputs()
    plain = make("self_att_64")
    plain.load_state_dict({k: v for k, v in op.state_dict().items() if "linear_rel" not in k})
    # A constant bias on every logit cancels in the softmax.
    torch.testing.assert_close(op(s, None, s_mask, None, rel), plain(s, None, s_mask, None, None), rtol=1e-5, atol=1e-5)


def test_feed_forward_equals_naive():
    op = make("feed_forward")
    s = torch.randn(2, 3, H)
    m = op.mlp
    f = torch.relu(s @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias
    assert m.fc1.out_features == 4 * H
    torch.testing.assert_close(op(s), naive_layernorm(s + f, op.norm.weight, op.norm.bias), rtol=1e-4, atol=1e-4)
    assert make("feed_forward_8").mlp.fc1.out_features == 8 * H


def test_zero_and_identity():
    s = torch.randn(2, 3, H)
    assert torch.equal(make("none")(s), torch.zeros_like(s))
    assert torch.equal(make("skip_connect")(s), s)


def test_residual_and_norm_switches():
    s = torch.randn(2, 3, H)
    op = make("feed_forward", ops_residual=False, ops_norm=False)
    m = op.mlp
    torch.testing.assert_close(op(s), torch.relu(s @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias)


def test_attflat_equals_naive():
    torch.manual_seed(0)
    flat = AttFlat(8, 5, 16, 0.0).eval()
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]]).view(2, 1, 1, 4)
    logits = (torch.relu(x @ flat.mlp.fc1.weight.T + flat.mlp.fc1.bias) @ flat.mlp.fc2.weight.T
              + flat.mlp.fc2.bias).squeeze(-1)
    logits = torch.where(mask.view(2, 4), torch.tensor(-1e9), logits)
    w = torch.softmax(logits, -1)
    expected = (w.unsqueeze(-1) * x).sum(1) @ flat.merge.weight.T + flat.merge.bias
    torch.testing.assert_close(flat(x, mask), expected)
    assert torch.all(w[0, 2:] == 0)


def test_unknown_op_name_suggests_nearest():
    with pytest.raises(KeyError, match="self_att_64"):
        OPS.get("self_att64")


def test_guided_attention_refuses_missing_other():
    op = make("guided_att_64")
    with pytest.raises(ValueError, match="other modality"):
        op(torch.randn(1, 2, H))
