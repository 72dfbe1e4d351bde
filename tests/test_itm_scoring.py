"""ITM scoring with cached encodings equals scoring every pair from scratch; hard-negative mining keeps exactly the
best-scored candidates and never a positive; forward_loss equals the naive bce / margin losses (spec §3, §5, §7)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import mmnas
from mmnas.cli import parse
from mmnas.models.itm_scoring import PairScorer
from mmnas.tasks.itm import ITMTask, keep_hardest, mine_negatives, sample_candidates
from tests.itm_helpers import GENOTYPE, dataset, make_tree, run_args, small_network

GA_FIRST = {"enc": [["feed_forward"]], "dec": [["guided_att_64"], ["rel_self_att_64"], ["feed_forward"]]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("itm") / "shapes", n_train=12, n_dev=4, n_test=6)


@pytest.fixture(scope="module")
def test_set(tree, tmp_path_factory):
    return dataset(tree, "test", tmp_path_factory.mktemp("pack"))


def naive_scores(net, ds, images, captions) -> torch.Tensor:
    """model(batch) on every (image, caption) pair, each built from scratch with the dataset's 50-token padding."""
    rows = []
    with torch.no_grad():
        for i in images:
            feat, rel, _ = ds.regions.get(int(i))
            batch = {"text_ix": torch.from_numpy(ds.text_ix[np.asarray(captions)]),
                     "img_feat": torch.from_numpy(feat).expand(len(captions), -1, -1),
                     "img_rel": torch.from_numpy(rel).expand(len(captions), -1, -1, -1)}
            rows.append(net(batch))
    return torch.stack(rows)


@pytest.mark.parametrize("genotype, prefix, fast_guided", [(GENOTYPE, 1, True), (GA_FIRST, 0, True),
                                                          (GENOTYPE, 1, False)])
def test_cached_scores_equal_pairwise_scores(test_set, genotype, prefix, fast_guided):
    net = small_network(len(test_set.meta.vocab), test_set.regions.feat_size, genotype)
    # Batches of 37 pairs cut across images; without the guided-attention cache that op runs as a plain node.
    scorer = PairScorer(net, "cpu", pairs_per_batch=37, cache_guided=fast_guided)
    assert scorer.prefix == prefix and (scorer.guided is not None) == fast_guided
    scores, timing = scorer.score_matrix(torch.from_numpy(test_set.text_ix),
                                         lambda ids: test_set.regions.batch(ids), test_set.n_images,
                                         caption_block=11, image_block=4)
    expected = naive_scores(net, test_set, range(test_set.n_images), range(test_set.n_captions))
    assert scores.shape == (6, 30) and timing["pairs"] == 180 and timing["pairs_per_second"] > 0
    torch.testing.assert_close(torch.from_numpy(scores), expected, rtol=1e-5, atol=1e-6)


def test_supernet_derived_path_scores_like_its_fixed_network(test_set):
    torch.manual_seed(0)
    net = mmnas.build_supernet("itm", vocab_size=len(test_set.meta.vocab), hidden_size=64,
                               feat_size=test_set.regions.feat_size, flat_mlp_size=32, dropout=0.0,
                               nodes={"enc": 2, "dec": 3}).eval()
    with net.sampling("derived"):
        scorer = PairScorer(net, "cpu", pairs_per_batch=64)
        assert scorer.prefix == 1  # the MCAN-like start: rel_self_att first, then guided_att
        scores, _ = scorer.score_matrix(torch.from_numpy(test_set.text_ix), lambda ids: test_set.regions.batch(ids),
                                        test_set.n_images)
        expected = naive_scores(net, test_set, range(6), range(30))
    torch.testing.assert_close(torch.from_numpy(scores), expected, rtol=1e-5, atol=1e-6)


def test_candidates_are_uniform_over_the_others_and_never_positive():
    g = torch.Generator().manual_seed(0)
    captions, images = sample_candidates(4, 20, 3000, g)
    for i in range(4):
        assert not ((captions[i] // 5) == i).any()
        assert set(captions[i].tolist()) == set(range(20)) - set(range(5 * i, 5 * i + 5))
    own = (torch.arange(20) // 5).unsqueeze(1)
    assert not (images == own).any() and set(images[7].tolist()) == {0, 2, 3}
    counts = torch.bincount(images[7], minlength=4)[[0, 2, 3]].float()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.04


def test_keep_hardest_is_the_top_k_by_score():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.1]])
    cand = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23]])
    assert keep_hardest(scores, cand, 2).tolist() == [[11, 13], [22, 20]]


def test_mining_keeps_exactly_the_top_k_and_never_the_positive(tree, tmp_path):
    ds = dataset(tree, "train", tmp_path, negatives=True)
    net = small_network(len(ds.meta.vocab), ds.regions.feat_size, seed=1)
    net.train()  # mining must switch to eval mode and back
    cap_cand, img_cand = sample_candidates(ds.n_images, ds.n_captions, 8, torch.Generator().manual_seed(3))
    neg_captions, neg_images, stats = mine_negatives(net, ds, cap_cand, img_cand, keep=3, anchors_per_batch=5,
                                                     device=torch.device("cpu"))
    assert net.training and stats["pairs"] == (12 + 60) * 8
    net.eval()
    for i in range(ds.n_images):
        s = naive_scores(net, ds, [i], cap_cand[i])[0]
        assert neg_captions[i].tolist() == cap_cand[i][s.argsort(descending=True)[:3]].tolist()
        assert not np.any(neg_captions[i] // 5 == i)
    for k in range(ds.n_captions):
        s = naive_scores(net, ds, img_cand[k], [k])[:, 0]
        assert neg_images[k].tolist() == img_cand[k][s.argsort(descending=True)[:3]].tolist()
        assert not np.any(neg_images[k] == k // 5)


def test_epoch_start_switches_from_random_to_mined_negatives(tree, tmp_path):
    cfg = parse("itm", "train", run_args(tree, tmp_path, "itm.neg_start_epoch=1", "itm.neg_every=2",
                                         "data.max_regions=12", "model.feat_size=39", "--SEED", "4"))
    task = ITMTask(cfg)
    task.prepare(need_vectors=False)
    ds = task.dataset("train")
    net = small_network(len(ds.meta.vocab), ds.regions.feat_size)
    task.on_epoch_start(net, 0, torch.device("cpu"))
    assert ds.mined_epoch is None and ds.neg_captions.shape == (12, 3) and ds.neg_images.shape == (60, 3)
    assert not np.any(ds.neg_captions // 5 == np.arange(12)[:, None])
    task.on_epoch_start(net, 1, torch.device("cpu"))
    assert ds.mined_epoch == 1 and len(task.mining_log) == 1
    mined = ds.neg_captions.copy()
    task.on_epoch_start(net, 2, torch.device("cpu"))  # not a mining epoch (every 2 from 1): tables kept
    assert ds.mined_epoch == 1 and ds.epoch == 2 and np.array_equal(ds.neg_captions, mined)
    task.on_epoch_start(net, 3, torch.device("cpu"))
    assert ds.mined_epoch == 3


@pytest.mark.parametrize("loss", ["bce", "margin"])
def test_forward_loss_equals_naive_losses(tree, tmp_path, loss):
    cfg = parse("itm", "train", run_args(tree, tmp_path, f"model.itm_loss={loss}", "data.max_regions=12",
                                         "model.feat_size=39"))
    task = ITMTask(cfg)
    task.prepare(need_vectors=False)
    ds = task.dataset("train")
    net = small_network(len(ds.meta.vocab), ds.regions.feat_size, seed=2)
    batch = default_collate([ds[k] for k in (0, 7, 13, 21, 40, 59)])
    out = task.forward_loss(net, batch)
    with torch.no_grad():
        pos = net(batch)
        neg_caption = net({**batch, "text_ix": batch["neg_text_ix"]})
        neg_image = net({**batch, "img_feat": batch["neg_img_feat"], "img_rel": batch["neg_img_rel"]})
    if loss == "bce":  # the release's: the positive term counted twice
        expected = -(2 * torch.log(pos) + torch.log(1 - neg_caption) + torch.log(1 - neg_image)).sum()
    else:
        expected = (torch.clamp(0.2 + neg_caption - pos, min=0) + torch.clamp(0.2 + neg_image - pos, min=0)).sum()
    torch.testing.assert_close(out["loss"].detach(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["output"].detach(), pos, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
