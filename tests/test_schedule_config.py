import pytest

from mmnas.config import ConfigError, build_config, load_yaml
from mmnas.engine.common import EpochSampler
from mmnas.engine.schedule import learning_rate


def test_warmup_quarters_counted_in_steps_then_base_and_decays():
    e = 10  # steps per epoch
    lr = lambda step, epoch: learning_rate(step, epoch, e, 1.0, True, 0.2, [10, 12])  # noqa: E731
    assert [lr(1, 0), lr(10, 0), lr(11, 1), lr(20, 1), lr(21, 2), lr(30, 2), lr(31, 3)] == \
        [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert lr(101, 10) == pytest.approx(0.2) and lr(121, 12) == pytest.approx(0.04)
    assert learning_rate(1, 0, e, 1.0, warmup=False) == 1.0


def test_epoch_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(range(50), True, 7), EpochSampler(range(50), True, 7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(EpochSampler([5, 6, 7], False, 0)) == [5, 6, 7]


def test_base_chain_and_release_values(tmp_path):
    (tmp_path / "a.yaml").write_text("optim:\n  lr_base: 1.0\n  max_epoch: 3\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\noptim:\n  max_epoch: 5\n")
    assert load_yaml(tmp_path / "b.yaml") == {"optim": {"lr_base": 1.0, "max_epoch": 5}}
    (tmp_path / "loop.yaml").write_text("_BASE_: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_yaml(tmp_path / "loop.yaml")
    train = build_config("vqa", "train")
    assert (train.optim.lr_base, train.optim.max_epoch, train.optim.lr_decay_epochs, train.model.hidden_size) == \
        (1.2e-4, 13, [10, 12], 512)
    search = build_config("vqa", "search")
    assert (search.optim.lr_base, search.search.alpha_start, search.search.alpha_every, search.search.alpha_betas,
            search.model.hidden_size, search.search.nodes_dec) == (4e-4, 20, 5, [0.0, 0.999], 256, 18)
    assert "lr_base: 0.00012" in train.dump()


def test_fused_adam_is_an_option_close_to_the_default_and_resumable_either_way():
    import torch

    from mmnas.engine.common import build_optimizer, set_lr
    cfg = build_config("vqa", "train")
    assert cfg.optim.fused_adam is False
    fused_cfg = build_config("vqa", "train", overrides=["optim.fused_adam=true"])
    torch.manual_seed(0)
    start = torch.randn(64, 32)
    grads = [torch.randn(64, 32) for _ in range(5)]
    results, states = [], []
    for c in (cfg, fused_cfg):
        p = torch.nn.Parameter(start.clone())
        opt = build_optimizer([p], c.optim)
        assert bool(opt.defaults.get("fused")) == c.optim.fused_adam
        set_lr(opt, 1e-3)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append(p.detach().clone())
        states.append(opt.state_dict())
    assert not torch.equal(results[0], start)
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-6)
    # A checkpoint of one kind resumes under the other: the state has the same layout.
    p = torch.nn.Parameter(results[1].clone())
    plain = build_optimizer([p], cfg.optim)
    plain.load_state_dict(states[1])
    torch.testing.assert_close(plain.state[p]["exp_avg_sq"], states[1]["state"][0]["exp_avg_sq"])
