import pytest
import torch

from mmnas.models.model_config import ModelConfig
from mmnas.nas.arch_step import arch_step_due, gate_to_alpha_grad, gated_sum, rescale_pair
from mmnas.nas.mixed_op import MixedOp

CANDS = ("self_att_64", "rel_self_att_64", "guided_att_64", "feed_forward")


def make(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    m = MixedOp(CANDS, ModelConfig(hidden_size=64, dropout=dropout))
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    return m


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    s, other = torch.randn(2, 5, 64, generator=g), torch.randn(2, 3, 64, generator=g)
    rel = torch.randn(2, 5, 5, 64, generator=g)
    w = torch.randn(2, 5, 64, generator=g)  # L = ⟨w, out⟩ + 0.1·|out|² : a nonlinear loss of the output
    return (s, other, None, None, rel), w


def loss_of(out, w):
    return (w * out).sum() + 0.1 * (out ** 2).sum()


def count_calls(m):
    calls = [0] * len(m.candidates)
    for k, op in enumerate(m.candidates):
        op.register_forward_hook(lambda mod, i, o, k=k: calls.__setitem__(k, calls[k] + 1))
    return calls


def test_weight_mode_runs_only_the_sampled_candidate():
    m = make()
    calls = count_calls(m)
    args, _ = data()
    g = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(20):
        m.sample("weight", g)
        before = list(calls)
        out = m(*args)
        ran = [k for k in range(4) if calls[k] != before[k]]
        assert ran == [m.active]
        torch.testing.assert_close(out, m.candidates[m.active](*args))
        seen.add(m.active)
    assert len(seen) > 1  # it really samples


def test_sampling_follows_softmax_alpha():
    m = make()
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(4000):
        m.sample("weight", g)
        counts[m.active] += 1
    torch.testing.assert_close(counts / 4000, torch.softmax(m.alpha.detach(), 0), atol=0.03, rtol=0)


def test_full_mode_gate_and_alpha_gradients_match_formula_and_finite_differences():
    m = make().double()
    args, w = data()
    args = tuple(a.double() if a is not None else None for a in args)
    w = w.double()
    m.sample("full", torch.Generator().manual_seed(5))
    active = m.active
    loss_of(m(*args), w).backward()
    m.set_alpha_grad()
    outs = [op(*args).detach() for op in m.candidates]
    out = outs[active]
    # ∂L/∂g_k = ⟨∂L/∂out, o_k⟩ by hand (∂L/∂out = w + 0.2·out).
    dl_dout = w + 0.2 * out
    gate_hand = torch.stack([(dl_dout * o).sum() for o in outs])
    torch.testing.assert_close(m.gate.grad, gate_hand)

    # The same by central finite differences of L(Σ g_k o_k) around the one-hot gate.
    def l_of_gate(gate):
        return loss_of(sum(gk * o for gk, o in zip(gate, outs)), w)
    eps = 1e-6
    g0 = torch.zeros(4, dtype=torch.double)
    g0[active] = 1
    fd = torch.stack([(l_of_gate(g0 + eps * e) - l_of_gate(g0 - eps * e)) / (2 * eps)
                      for e in torch.eye(4, dtype=torch.double)])
    torch.testing.assert_close(m.gate.grad, fd, rtol=1e-6, atol=1e-5)

    # α gradient: Σ_j ∂L/∂g_j p_j (δ_ij − p_i), by a double loop…
    p = torch.softmax(m.alpha.detach(), 0)
    hand = torch.tensor([sum(gate_hand[j] * p[j] * (float(i == j) - p[i]) for j in range(4)) for i in range(4)])
    torch.testing.assert_close(m.alpha.grad, hand.double())
    # …and as the finite-difference derivative of α ↦ Σ_j ∂L/∂g_j · softmax(α)_j.
    a0 = m.alpha.detach().clone()
    fd_a = torch.stack([((gate_hand * torch.softmax(a0 + eps * e, 0)).sum()
                         - (gate_hand * torch.softmax(a0 - eps * e, 0)).sum()) / (2 * eps)
                        for e in torch.eye(4, dtype=torch.double)])
    torch.testing.assert_close(m.alpha.grad, fd_a, rtol=1e-6, atol=1e-7)


def test_full_mode_output_and_weight_gradients_are_the_active_path_only():
    m = make()
    args, w = data()
    m.sample("full", torch.Generator().manual_seed(2))
    out = m(*args)
    torch.testing.assert_close(out, m.candidates[m.active](*args))
    loss_of(out, w).backward()
    for k, op in enumerate(m.candidates):
        has = any(p.grad is not None and p.grad.abs().sum() > 0 for p in op.parameters())
        assert has == (k == m.active)


def test_two_mode_touches_two_entries_and_keeps_their_sum_of_exp():
    m = make()
    args, w = data()
    m.sample("two", torch.Generator().manual_seed(4))
    assert len(m.involved) == 2 and m.involved[0] == m.active
    calls = count_calls(m)
    loss_of(m(*args), w).backward()
    assert sorted(k for k in range(4) if calls[k]) == sorted(m.involved)
    m.set_alpha_grad()
    nonzero = set(torch.nonzero(m.alpha.grad).flatten().tolist())
    assert nonzero == set(m.involved)
    idx = list(m.involved)
    before = m.alpha.detach().clone()
    opt = torch.optim.Adam([m.alpha], lr=0.1, betas=(0.0, 0.999))
    opt.step()
    assert not torch.allclose(m.alpha.detach()[idx], before[idx])
    m.rescale_after_step()
    after = m.alpha.detach()
    torch.testing.assert_close(torch.exp(after[idx]).sum(), torch.exp(before[idx]).sum())
    others = [k for k in range(4) if k not in idx]
    torch.testing.assert_close(after[others], before[others])
    # pair gradient formula on the pair's renormalised probabilities
    gg = m.gate.grad[idx]
    pp = torch.softmax(before[idx], 0)
    torch.testing.assert_close(m.alpha.grad[idx], pp * (gg - (pp * gg).sum()))


def test_darts_mode_is_softmax_weighted_sum_with_alpha_gradient():
    m = make()
    args, w = data()
    m.sample("darts")
    out = m(*args)
    p = torch.softmax(m.alpha.detach(), 0)
    torch.testing.assert_close(out, sum(p[k] * op(*args) for k, op in enumerate(m.candidates)))
    loss_of(out, w).backward()
    assert m.alpha.grad is not None and m.alpha.grad.abs().sum() > 0


def test_derived_mode_is_argmax():
    m = make()
    m.sample("derived")
    assert m.names[m.active] == "guided_att_64"


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown sampling mode"):
        make().sample("fulll")


def test_rescale_pair_and_schedule_pure_functions():
    old, new = torch.tensor([1.0, -1.0]), torch.tensor([1.5, -1.2])
    r = rescale_pair(old, new)
    torch.testing.assert_close(torch.exp(r).sum(), torch.exp(old).sum())
    torch.testing.assert_close(r[0] - r[1], new[0] - new[1])
    torch.testing.assert_close(gate_to_alpha_grad(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])),
                               torch.tensor([0.25, -0.25]))
    assert not arch_step_due(19, 4, 20, 5)
    assert arch_step_due(20, 4, 20, 5) and not arch_step_due(20, 5, 20, 5) and arch_step_due(21, 9, 20, 5)


@pytest.mark.parametrize("involved", [(2, 0, 1, 3), (1, 3)])
def test_gated_sum_equals_the_written_out_sum_bit_for_bit(involved):
    """One function for Σ g_k·o_k: the same forward numbers (NaN and −0 included), the same gate gradients and the
    same gradient for the active output as autograd of `g·o + g·o + …`; gates not involved get 0."""
    g = torch.Generator().manual_seed(3)
    outs = [torch.randn(2, 5, 7, generator=g) for _ in involved]
    outs[0][0, 0, 0] = -0.0
    outs[-1][1, 2, 3] = float("nan")  # an inactive candidate's NaN reaches the output, as in the release's sum
    upstream = torch.randn(2, 5, 7, generator=g)
    upstream[1, 2, 3] = 0.0  # keep the gate gradients finite (the NaN position gets no gradient)
    results = []
    for fused in (True, False):
        gate = torch.zeros(4)
        gate[involved[0]] = 1.0
        gate.requires_grad_(True)
        active = outs[0].clone().requires_grad_(True)
        rest = [o.clone() for o in outs[1:]]
        if fused:
            out = gated_sum(gate, involved, [active] + rest)
        else:
            out = gate[involved[0]] * active
            for k, o in zip(involved[1:], rest):
                out = out + gate[k] * o
        out.backward(upstream)
        results.append((out.detach(), gate.grad, active.grad))
    (out_f, gate_f, act_f), (out_r, gate_r, act_r) = results
    assert torch.equal(out_f.isnan(), out_r.isnan()) and out_f.isnan().sum() == 1
    assert torch.equal(torch.nan_to_num(out_f), torch.nan_to_num(out_r))
    assert torch.equal(torch.signbit(out_f), torch.signbit(out_r))
    assert torch.equal(act_f, act_r)
    assert torch.equal(torch.nan_to_num(gate_f, nan=7.0), torch.nan_to_num(gate_r, nan=7.0))
    assert all(float(gate_f[k]) == 0.0 for k in range(4) if k not in involved)
    # And against the hand formula: ∂L/∂g_k = Σ upstream·o_k.
    for k, o in zip(involved[:-1], outs[:-1]):
        torch.testing.assert_close(gate_f[k], (upstream.double() * o.double()).sum().float())
