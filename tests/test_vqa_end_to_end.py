"""Search, train, val, test and resume through the release's command lines, on a generated VQA-v2 tree."""
from __future__ import annotations

import json

import pytest
import torch

from mmnas.cli import execute, main
from mmnas.data.vqa import VQAData
from mmnas.engine.checkpoint import load_checkpoint
from mmnas.evaluation.vqa import vqa_accuracy
from mmnas.nas.genotype import read_arch_file
from tests.conftest import run_args

SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2"]
TRAIN = ["--ARCH_PATH", "arch/mmnas_vqa.json"]


def test_search_one_epoch_writes_arch_checkpoint_and_logs(vqa_root, tmp_path):
    rc = main("vqa", "search", run_args(vqa_root, tmp_path, "--VERSION", "s1", "optim.max_epoch=1", *SEARCH,
                                        "run.plots=true"))
    assert rc == 0
    table = read_arch_file(tmp_path / "arch" / "s1.json")
    assert list(table) == ["epoch1"]
    geno = table["epoch1"]
    assert len(geno.enc) == 2 and len(geno.dec) == 3
    ckpt = load_checkpoint(tmp_path / "logs" / "ckpts" / "s1_epoch1.pkl", "vqa", "search")
    assert ckpt["genotype"] == geno.to_dict() and "alpha_optimizer" in ckpt
    assert ckpt["alpha_optimizer"]["state"], "no α step was taken"
    log = (tmp_path / "logs" / "log" / "log_s1.txt").read_text()
    assert "derived_accuracy" in log and "seed=888" in log and "commit=" in log
    rec = json.loads((tmp_path / "logs" / "log" / "metrics_s1.jsonl").read_text().splitlines()[-1])
    assert rec["arch_steps_samples"] > 0 and set(rec["probs"]) == {"enc", "dec"}
    assert (tmp_path / "logs" / "log" / "config_s1.yaml").is_file()
    # The pictures of the search, redrawn after its epoch (run.plots).
    plots = sorted(p.name for p in (tmp_path / "logs" / "plots" / "s1").glob("*.png"))
    assert plots == ["alpha_probs.png", "search_curves.png"]
    assert all((tmp_path / "logs" / "plots" / "s1" / p).stat().st_size > 1000 for p in plots)


def test_train_val_test_through_the_cli(vqa_root, tmp_path):
    args = run_args(vqa_root, tmp_path, "--VERSION", "t1", "--SEED", "3", "optim.max_epoch=1", *TRAIN)
    assert main("vqa", "train", args) == 0
    ckpt_path = tmp_path / "logs" / "ckpts" / "t1_epoch1.pkl"
    metrics = json.loads((tmp_path / "logs" / "log" / "metrics_t1.jsonl").read_text().splitlines()[-1])
    assert "val_accuracy" in metrics  # val is evaluated after the epoch when not trained on

    ev = execute("vqa", "train", run_args(vqa_root, tmp_path, "--VERSION", "t1v", "--RUN", "val",
                                          "--CKPT_PATH", str(ckpt_path)))
    # The same accuracy computed directly: the checkpoint's network on every val question, official metric.
    import mmnas
    data = VQAData(vqa_root, answer_min_count=2)
    meta = data.build_meta()
    ckpt = load_checkpoint(ckpt_path)
    net = mmnas.build_network("vqa", ckpt["genotype"], vocab_size=len(meta.vocab), answer_size=len(meta.answers),
                              **ckpt["config"]["model"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    from mmnas.data.vqa import VQADataset
    ds = VQADataset(data, "val", meta, 14, 16)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        pred = net(batch).argmax(-1).tolist()
    results = [{"question_id": q["question_id"], "answer": meta.answers[p]} for q, p in zip(ds.questions, pred)]
    direct = vqa_accuracy(ds.questions, ds.annotations, results)
    assert ev["accuracy"] == direct["overall"] and ev["questions"] == len(ds)

    out = execute("vqa", "train", run_args(vqa_root, tmp_path, "--VERSION", "t1t", "--RUN", "test",
                                           "--CKPT_PATH", str(ckpt_path)))
    result = json.loads((tmp_path / "logs" / "ckpts" / "result_test" / "result_t1t.json").read_text())
    test_q = json.loads((vqa_root / "annotations" / "v2_OpenEnded_mscoco_test2015_questions.json").read_text())
    assert [r["question_id"] for r in result] == [q["question_id"] for q in test_q["questions"]]
    assert all(isinstance(r["answer"], str) and r["answer"] in meta.answers for r in result)
    assert out["questions"] == len(test_q["questions"])


def _final_state(tmp_path, version, epoch):
    return load_checkpoint(tmp_path / "logs" / "ckpts" / f"{version}_epoch{epoch}.pkl")


def _assert_same(a, b):
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for name in ("optimizer", "alpha_optimizer"):
        if name in a:
            sa, sb = a[name]["state"], b[name]["state"]
            assert sa.keys() == sb.keys()
            for i in sa:
                for k in sa[i]:
                    assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), (name, i, k)
            assert a[name]["param_groups"][0]["lr"] == b[name]["param_groups"][0]["lr"]


@pytest.mark.parametrize("stage", ["train", "search"])
def test_resume_equals_uninterrupted(vqa_root, tmp_path, stage):
    extra = SEARCH if stage == "search" else TRAIN
    common = ["--SEED", "5", "optim.lr_decay_epochs=[1]", *extra]
    assert main("vqa", stage, run_args(vqa_root, tmp_path, "--VERSION", "full", "optim.max_epoch=3", *common)) == 0
    assert main("vqa", stage, run_args(vqa_root, tmp_path, "--VERSION", "part", "optim.max_epoch=1", *common)) == 0
    # Resume the latest checkpoint of the version (no --CKPT_PATH), then again from an explicit path.
    assert main("vqa", stage, run_args(vqa_root, tmp_path, "--VERSION", "part", "--RESUME", "optim.max_epoch=2",
                                       *common)) == 0
    ckpt2 = tmp_path / "logs" / "ckpts" / "part_epoch2.pkl"
    assert main("vqa", stage, run_args(vqa_root, tmp_path, "--VERSION", "part", "--RESUME", "--CKPT_PATH",
                                       str(ckpt2), "optim.max_epoch=3", *common)) == 0
    _assert_same(_final_state(tmp_path, "full", 3), _final_state(tmp_path, "part", 3))
    if stage == "search":
        assert read_arch_file(tmp_path / "arch" / "full.json") == read_arch_file(tmp_path / "arch" / "part.json")
