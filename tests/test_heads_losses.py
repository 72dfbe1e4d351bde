import torch

import mmnas
from mmnas.models.losses import itm_loss, vgd_loss, vqa_loss
from mmnas.models.model_config import ModelConfig
from mmnas.models.heads import ITMHead, VGDHead, VQAHead
from tests.helpers import random_batch

CFG = ModelConfig(hidden_size=64, flat_mlp_size=32, dropout=0.0)


def streams(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 5, 64, generator=g), torch.randn(2, 6, 64, generator=g)
    xm = torch.zeros(2, 1, 1, 5, dtype=torch.bool)
    xm[..., 4:] = True
    ym = torch.zeros(2, 1, 1, 6, dtype=torch.bool)
    ym[..., 5:] = True
    return x, y, xm, ym


def test_vqa_head_shapes_and_values():
    torch.manual_seed(0)
    head = VQAHead(CFG, 11).eval()
    x, y, xm, ym = streams()
    out = head(x, y, xm, ym)
    assert out.shape == (2, 11)
    z = head.flat_text(x, xm) + head.flat_image(y, ym)
    torch.testing.assert_close(out, head.classifier(head.norm(z)))


def test_vgd_head_log_softmax_over_all_regions_including_padding():
    torch.manual_seed(0)
    head = VGDHead(CFG).eval()
    x, y, xm, ym = streams()
    scores, deltas = head(x, y, xm, ym)
    assert scores.shape == (2, 6) and deltas.shape == (2, 6, 4)
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(2))  # padding region included in the softmax
    fused = head.norm(head.flat_text(x, xm).unsqueeze(1) + head.image_proj(y))
    torch.testing.assert_close(scores, torch.log_softmax(head.score(fused).squeeze(-1), -1))
    raw, _ = VGDHead(ModelConfig(hidden_size=64, flat_mlp_size=32, vgd_score_loss="bce")).eval()(x, y, xm, ym)
    assert not torch.allclose(raw.exp().sum(-1), torch.ones(2))


def test_itm_head_is_a_probability():
    torch.manual_seed(0)
    out = ITMHead(CFG).eval()(*streams())
    assert out.shape == (2,) and torch.all((out > 0) & (out < 1))


def test_vqa_loss_is_bce_sum():
    logits, target = torch.randn(3, 4), torch.tensor([[0, .3, .6, 1.0]] * 3)
    naive = -(target * torch.log(torch.sigmoid(logits)) + (1 - target) * torch.log(1 - torch.sigmoid(logits))).sum()
    torch.testing.assert_close(vqa_loss(logits, target), naive)


def test_vgd_kld_loss_equals_naive():
    logits = torch.randn(3, 4)
    scores = torch.log_softmax(logits, -1)
    # sample 0: two regions with IoU .6 and .9 → target .4/.6; sample 1: no target; sample 2: one region.
    target = torch.tensor([[0, .4, .6, 0], [0, 0, 0, 0], [1.0, 0, 0, 0]])
    deltas, box_t = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    box_mask = target > 0
    kl = sum(t * (torch.log(t) - s) for ts, ss in zip(target, scores) for t, s in zip(ts, ss) if t > 0) / 2
    diff = (deltas - box_t)[box_mask].abs()
    sl1 = torch.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum() / 3
    torch.testing.assert_close(vgd_loss(scores, deltas, target, box_t, box_mask), kl + 0.5 * sl1)


def test_vgd_bce_loss_equals_naive():
    logits = torch.randn(2, 3)
    target = torch.tensor([[0.8, 0, 1.0], [0, 0.9, 0]])
    deltas, box_t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    box_mask = target > 0
    p = torch.sigmoid(logits)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).sum() / 2
    diff = (deltas - box_t)[box_mask].abs()
    sl1 = torch.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum() / 3
    torch.testing.assert_close(vgd_loss(logits, deltas, target, box_t, box_mask, kind="bce"), bce + 0.5 * sl1)


def test_itm_losses_equal_naive():
    pos, nc, ni = torch.tensor([0.9, 0.6]), torch.tensor([0.2, 0.7]), torch.tensor([0.1, 0.5])
    bce = -(2 * torch.log(pos) + torch.log(1 - nc) + torch.log(1 - ni)).sum()
    torch.testing.assert_close(itm_loss(pos, nc, ni), bce)
    # margin: max(0, .2 + .2 − .9)=0, max(0,.2+.7−.6)=.3, max(0,.2+.1−.9)=0, max(0,.2+.5−.6)=.1 → .4
    torch.testing.assert_close(itm_loss(pos, nc, ni, kind="margin"), torch.tensor(0.4))


def test_network_forward_outputs_per_task_and_box_feature():
    for task, shape in (("vqa", (2, 7)), ("itm", (2,))):
        net = mmnas.build_network(task, "arch/mmnas_vqa.json", vocab_size=30, answer_size=7, hidden_size=64,
                                  feat_size=16)
        assert net(random_batch()).shape == shape
    net = mmnas.build_network("vgd", "arch/mcan.json", vocab_size=30, hidden_size=64, feat_size=16,
                              use_box_feature=True, box_feat_size=8)
    scores, deltas = net(random_batch())
    assert scores.shape == (2, 6) and deltas.shape == (2, 6, 4)
    assert not net.backbone.uses_relation  # mcan has no relation op: geometry is not computed


def test_word_vectors_initialise_embedding():
    vec = torch.randn(30, 300)
    net = mmnas.build_network("vqa", "arch/mcan.json", vocab_size=30, answer_size=3, hidden_size=64,
                              word_vectors=vec.numpy())
    assert torch.equal(net.text_encoder.embedding.weight.detach(), vec)
