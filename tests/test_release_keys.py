import subprocess
import sys

import pytest
import torch

import mmnas
from mmnas.models.release import ReleaseKeyError, convert_release_state_dict
from tests.helpers import REPO, random_batch, reference_state_dict

TOKENS, ANSWERS = 101, 13


@pytest.mark.parametrize("task", ["vqa", "vgd", "itm"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_reference_keys_load_exactly(task, prefix):
    net = mmnas.build_network(task, REPO / "arch" / f"mmnas_{task}.json", vocab_size=TOKENS, answer_size=ANSWERS)
    ref = reference_state_dict(task, TOKENS, ANSWERS)
    mmnas.load_release_state_dict(net, {prefix + k: v for k, v in ref.items()})
    ours = net.state_dict()
    # every value landed somewhere, unchanged
    assert sorted(round(float(v.sum()), 2) for v in ref.values()) == \
        sorted(round(float(v.sum()), 2) for v in ours.values())
    assert sum(v.numel() for v in ref.values()) == sum(p.numel() for p in net.parameters())
    out = net.eval()(random_batch(feat=2048, vocab=TOKENS))
    assert all(torch.isfinite(o).all() for o in (out if isinstance(out, tuple) else (out,)))


def test_release_search_supernet_keys_load():
    sup = mmnas.build_supernet("vqa", vocab_size=TOKENS, answer_size=ANSWERS)
    ref = reference_state_dict("vqa_search", TOKENS, ANSWERS)
    mmnas.load_release_state_dict(sup, ref)
    first = ref["backnone.cells_dec.0.dag.0.0.alpha_prob"]
    assert torch.equal(sup.arch_parameters()[12].detach(), first)


def test_mismatch_lists_missing_unexpected_and_shapes():
    net = mmnas.build_network("vqa", REPO / "arch" / "mcan.json", vocab_size=TOKENS, answer_size=ANSWERS)
    ref = reference_state_dict("vqa", TOKENS, ANSWERS)  # keys of mmnas_vqa, not mcan
    with pytest.raises(ReleaseKeyError) as e:
        convert_release_state_dict(net, ref)
    msg = str(e.value)
    assert "missing" in msg and "unexpected" in msg and "--ARCH_PATH" in msg
    net2 = mmnas.build_network("vqa", REPO / "arch" / "mmnas_vqa.json", vocab_size=TOKENS + 1, answer_size=ANSWERS)
    with pytest.raises(ReleaseKeyError, match=r"embedding.weight: checkpoint \(101, 300\) vs network \(102, 300\)"):
        convert_release_state_dict(net2, ref)


def test_parameter_count_command_matches_reference_total():
    ref = reference_state_dict("vqa", 20000, 3129)
    total = sum(v.numel() for v in ref.values())
    out = subprocess.run([sys.executable, "-m", "mmnas.summary", "--task", "vqa", "--arch", "arch/mmnas_vqa.json",
                          "--vocab-size", "20000", "--answer-size", "3129", "--hidden-size", "512"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"parameters: {total}" in out
    assert total == 59_708_699
