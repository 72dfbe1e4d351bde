import pytest
import torch

import mmnas
from mmnas.nas import supernet as sn
from mmnas.nas.genotype import Genotype
from mmnas.nas.mixed_op import MixedOp
from mmnas.ops import SEARCH_SPACE
from tests.helpers import random_batch

SMALL = dict(hidden_size=64, feat_size=16, flat_mlp_size=32, dropout=0.0)
NODES = {"enc": 2, "dec": 3}
GENO = Genotype(enc=(("self_att_64",), ("feed_forward",)),
                dec=(("rel_self_att_64",), ("guided_att_64",), ("feed_forward",)))


def supernet(task="vqa", **kw):
    torch.manual_seed(0)
    return mmnas.build_supernet(task, vocab_size=30, answer_size=7, nodes=NODES, init_genotype=GENO,
                                **{**SMALL, **kw})


@pytest.mark.parametrize("task", ["vqa", "vgd", "itm"])
def test_one_hot_supernet_equals_fixed_network(task):
    sup = supernet(task).eval()
    with torch.no_grad():
        for m in sn.mixed_ops(sup):
            m.alpha.mul_(1e4)  # softmax(α) is one-hot on the genotype
    fixed = mmnas.build_network(task, GENO, vocab_size=30, answer_size=7, **SMALL).eval()
    fixed.load_state_dict(sn.fixed_state_dict(sup.state_dict(), GENO, SEARCH_SPACE))
    batch = random_batch()
    expected = fixed(batch)
    for mode in ("derived", "weight", "full"):
        with sup.sampling(mode, torch.Generator().manual_seed(0)):
            got = sup(batch)
        for a, b in zip(got if isinstance(got, tuple) else (got,),
                        expected if isinstance(expected, tuple) else (expected,)):
            torch.testing.assert_close(a, b)


def test_initial_alpha_follows_initial_genotype_and_genotype_is_argmax():
    sup = supernet()
    assert sup.genotype() == GENO
    alpha = sn.cell_mixed_ops(sup.backbone)["dec"][0].alpha.detach()
    assert alpha.tolist() == [-1.0, 1.0, -1.0, -1.0]  # rel_self_att_64 is index 1 of the decoder space
    probs = sup.export_probs()
    assert len(probs["enc"]) == 2 and len(probs["dec"]) == 3
    for cell in probs.values():
        for node in cell:
            assert abs(sum(node.values()) - 1) < 1e-5


def test_release_size_initial_genotype_and_length_mismatch_is_an_error():
    sup = mmnas.build_supernet("vqa", vocab_size=10, answer_size=3, hidden_size=64, feat_size=8)
    assert sup.genotype() == sn.INITIAL_GENOTYPE
    assert len(sn.mixed_ops(sup)) == 30
    bad = Genotype(enc=sn.INITIAL_GENOTYPE.enc, dec=sn.INITIAL_GENOTYPE.dec + (("feed_forward",),) * 3)
    with pytest.raises(ValueError, match="21 'dec' nodes but the supernet has 18"):
        mmnas.build_supernet("vqa", vocab_size=10, answer_size=3, hidden_size=64, feat_size=8, init_genotype=bad)


def test_parameter_groups_by_type():
    sup = supernet()
    arch, gates, weights = sup.arch_parameters(), sup.gate_parameters(), sup.weight_parameters()
    assert len(arch) == len(gates) == 5
    ids = [set(map(id, g)) for g in (arch, gates, weights)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) == set(map(id, sup.parameters()))
    assert all(p is m.alpha for p, m in zip(arch, sn.mixed_ops(sup)))


def test_sampling_context_restores_even_when_the_body_raises():
    sup = supernet()
    before = [(m.mode, m.active, m.involved) for m in sn.mixed_ops(sup)]
    with pytest.raises(RuntimeError, match="boom"):
        with sup.sampling("full", torch.Generator().manual_seed(1)):
            assert all(m.mode == "full" for m in sn.mixed_ops(sup))
            raise RuntimeError("boom")
    assert [(m.mode, m.active, m.involved) for m in sn.mixed_ops(sup)] == before


def test_fill_missing_grads_gives_inactive_candidates_zero_gradients():
    sup = supernet(task="vqa")
    with sup.sampling("weight", torch.Generator().manual_seed(0)):
        sup(random_batch()).sum().backward()
    weights = sup.weight_parameters()
    assert any(p.grad is None for p in weights)
    sn.fill_missing_grads(weights)
    assert all(p.grad is not None for p in weights)
    m = sn.mixed_ops(sup)[0]
    inactive = [op for k, op in enumerate(m.candidates) if k != m.active]
    assert all(torch.count_nonzero(p.grad) == 0 for op in inactive for p in op.parameters())


def test_arch_step_updates_only_alpha_through_the_gates():
    sup = supernet()
    opt = torch.optim.Adam(sup.arch_parameters(), lr=0.1, betas=(0.0, 0.999))
    before = [a.detach().clone() for a in sup.arch_parameters()]
    with sup.sampling("full", torch.Generator().manual_seed(0)):
        sup(random_batch()).pow(2).sum().backward()
        sn.set_alpha_grads(sup)
        opt.step()
    changed = [not torch.equal(a.detach(), b) for a, b in zip(sup.arch_parameters(), before)]
    assert all(changed)
    assert all(isinstance(m, MixedOp) for m in sn.mixed_ops(sup))
