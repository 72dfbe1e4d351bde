"""tools/convert_release_ckpt.py: release .pkl → mmnas checkpoint; unsafe pickles are refused unexecuted."""
from __future__ import annotations

import pickle
import subprocess
import sys

import torch

import mmnas
from mmnas.data.vqa import VQAData
from mmnas.engine.checkpoint import load_checkpoint
from tests.helpers import REPO, reference_state_dict

TOOL = REPO / "tools" / "convert_release_ckpt.py"


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_release_checkpoint_converts_and_loads(vqa_root, tmp_path):
    meta = VQAData(vqa_root).build_meta()
    ref = reference_state_dict("vqa", len(meta.vocab), len(meta.answers))
    release = tmp_path / "release.pkl"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.items()}, "net_optim": {"state": {}},
                "lr_base": 1e-4}, release)
    out = tmp_path / "ours.pkl"
    res = run_tool("--task", "vqa", "--arch", "arch/mmnas_vqa.json", "--data-root", vqa_root, release, out)
    assert res.returncode == 0, res.stderr
    ckpt = load_checkpoint(out, "vqa", "train")
    net = mmnas.build_network("vqa", ckpt["genotype"], vocab_size=len(meta.vocab), answer_size=len(meta.answers),
                              **ckpt["config"]["model"])
    net.load_state_dict(ckpt["model"])
    assert torch.equal(net.text_encoder.embedding.weight, ref["embedding.weight"])
    assert torch.equal(net.head.classifier.weight, ref["proj.weight"])
    assert ckpt["config"]["model"]["hidden_size"] == 512 and ckpt["meta"]["vocab"] == meta.vocab.fingerprint()


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_without_running(vqa_root, tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {"x": _Exploit(str(target))}}, f)
    res = run_tool("--task", "vqa", "--arch", "arch/mmnas_vqa.json", "--data-root", vqa_root, evil,
                   tmp_path / "out.pkl")
    assert res.returncode == 2 and "was refused" in res.stderr and "nothing in it ran" in res.stderr
    assert not target.exists() and not (tmp_path / "out.pkl").exists()
    # The run's own loader refuses it the same way.
    from mmnas.engine.checkpoint import CheckpointError
    try:
        load_checkpoint(evil)
    except CheckpointError as e:
        assert "cannot be read safely" in str(e)
    else:
        raise AssertionError("an unsafe pickle was loaded")
    assert not target.exists()
