"""Search, train, val and test of the ITM task through the release's command lines, on a generated tree in the real
Flickr30K formats; the test run's scores matrix and metrics files agree with each other and with the scorer CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mmnas
from mmnas.cli import execute, main
from mmnas.data.itm import ITMData, ITMDataset
from mmnas.engine.checkpoint import load_checkpoint
from mmnas.evaluation import retrieval
from mmnas.nas.genotype import read_arch_file
from tests.itm_helpers import make_tree, run_args

SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2",
          "itm.neg_start_epoch=0", "itm.search_eval_images=3"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("itm") / "shapes", n_train=15, n_dev=4, n_test=5)


def test_search_one_epoch_mines_and_writes_arch_checkpoint_and_logs(tree, tmp_path, capsys):
    assert main("itm", "search", run_args(tree, tmp_path, "--VERSION", "s1", "optim.max_epoch=1", *SEARCH)) == 0
    assert "mined hard negatives" in capsys.readouterr().out
    geno = read_arch_file(tmp_path / "arch" / "s1.json")["epoch1"]
    assert len(geno.enc) == 2 and len(geno.dec) == 3
    ckpt = load_checkpoint(tmp_path / "logs" / "ckpts" / "s1_epoch1.pkl", "itm", "search")
    assert ckpt["alpha_optimizer"]["state"], "no α step was taken"
    rec = json.loads((tmp_path / "logs" / "log" / "metrics_s1.jsonl").read_text().splitlines()[-1])
    # The derived net is scored on the α part: the last 20 % of the 75 captions, i.e. the last 3 images.
    assert rec["derived_images"] == 3 and rec["derived_captions"] == 15 and "derived_rsum" in rec


def test_train_val_test_through_the_cli(tree, tmp_path):
    arch = tmp_path / "g.json"
    arch.write_text(json.dumps({"epoch0": {"enc": [["self_att_64"], ["feed_forward"]],
                                           "dec": [["rel_self_att_64"], ["guided_att_64"], ["feed_forward"]]}}))
    common = ["--ARCH_PATH", str(arch), "--SEED", "3"]
    assert main("itm", "train", run_args(tree, tmp_path, "--VERSION", "t1", "optim.max_epoch=1", *common)) == 0
    rec = json.loads((tmp_path / "logs" / "log" / "metrics_t1.jsonl").read_text().splitlines()[-1])
    assert rec["val_images"] == 4 and rec["val_captions"] == 20 and "val_rsum" in rec
    ckpt_path = tmp_path / "logs" / "ckpts" / "t1_epoch1.pkl"

    ev = execute("itm", "train", run_args(tree, tmp_path, "--VERSION", "t1v", "--RUN", "val",
                                          "--CKPT_PATH", str(ckpt_path)))
    # The same metrics from scratch: the checkpoint's network on every dev pair, one pair at a time.
    ckpt = load_checkpoint(ckpt_path)
    data = ITMData(tree, "flickr")
    meta = data.build_meta()
    net = mmnas.build_network("itm", ckpt["genotype"], vocab_size=len(meta.vocab), **ckpt["config"]["model"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    dev = ITMDataset(data, "dev", meta, 50, 8, tmp_path / "packed", progress=False)
    scores = np.zeros((4, 20), dtype=np.float32)
    with torch.no_grad():
        for i in range(4):
            for k in range(20):
                feat, rel, _ = dev.regions.get(i)
                scores[i, k] = net({"text_ix": torch.from_numpy(dev.text_ix[k:k + 1]),
                                    "img_feat": torch.from_numpy(feat)[None], "img_rel": torch.from_numpy(rel)[None]})
    direct = retrieval.flatten_metrics(retrieval.retrieval_metrics(scores))
    assert {k: ev[k] for k in direct} == pytest.approx(direct)

    out = execute("itm", "train", run_args(tree, tmp_path, "--VERSION", "t1t", "--RUN", "test",
                                           "--CKPT_PATH", str(ckpt_path)))
    result_dir = tmp_path / "logs" / "ckpts" / "result_test"
    matrix = np.load(result_dir / "scores_t1t.npy")
    report = json.loads((result_dir / "result_t1t.json").read_text())
    assert matrix.shape == (5, 25) and matrix.dtype == np.float32
    assert report["split"] == "test" and report["images"] == 5 and report["captions"] == 25
    assert out["scores_file"] == str(result_dir / "scores_t1t.npy") and out["rsum"] == report["rsum"]
    assert {k: report[k] for k in ("i2t", "t2i", "rsum")} == retrieval.retrieval_metrics(matrix)
    log = (tmp_path / "logs" / "log" / "log_t1t.txt").read_text()
    assert "result_t1t.json" in log


def test_two_processes_mine_and_score_like_one(tree, tmp_path):
    """Hard-negative mining and the whole-matrix scoring split over 2 processes (5 test images: 3 + 2) give the
    one-process scores and metrics."""
    arch = tmp_path / "g.json"
    arch.write_text(json.dumps({"epoch0": {"enc": [["self_att_64"], ["feed_forward"]],
                                           "dec": [["rel_self_att_64"], ["guided_att_64"], ["feed_forward"]]}}))
    common = ["--ARCH_PATH", str(arch), "--SEED", "3", "itm.neg_start_epoch=0"]
    assert main("itm", "train", run_args(tree, tmp_path, "--VERSION", "d", "optim.max_epoch=1", "--NPROC", "2",
                                         *common)) == 0
    ckpt = str(tmp_path / "logs" / "ckpts" / "d_epoch1.pkl")
    for n in ("1", "2"):
        assert main("itm", "train", run_args(tree, tmp_path, "--VERSION", f"t{n}", "--RUN", "test", "--NPROC", n,
                                             "--CKPT_PATH", ckpt)) == 0
    result_dir = tmp_path / "logs" / "ckpts" / "result_test"
    one, two = np.load(result_dir / "scores_t1.npy"), np.load(result_dir / "scores_t2.npy")
    assert one.shape == (5, 25) and np.allclose(one, two, rtol=0, atol=1e-6)
    reports = [json.loads((result_dir / f"result_t{n}.json").read_text()) for n in ("1", "2")]
    assert reports[0]["rsum"] == reports[1]["rsum"]
