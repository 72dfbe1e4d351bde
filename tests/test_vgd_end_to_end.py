"""VGD through the release's command lines on a generated RefCOCO-format tree: search, train, val, test; the loss and
the accuracy against direct re-computations written out here."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import torch

import mmnas
from mmnas.cli import execute, main, parse
from mmnas.data.vgd import VGDData, VGDDataset
from mmnas.engine.checkpoint import load_checkpoint
from mmnas.nas.genotype import read_arch_file
from mmnas.tasks.vgd import SPLITS, VGDTask
from tests.helpers import SMALL_GENOTYPE, vgd_args


SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2"]


def test_search_one_epoch_through_the_cli(vgd_root, tmp_path):
    assert main("vgd", "search", vgd_args(vgd_root, tmp_path, "--VERSION", "s1", "optim.max_epoch=1", *SEARCH)) == 0
    table = read_arch_file(tmp_path / "arch" / "s1.json")
    assert list(table) == ["epoch1"] and len(table["epoch1"].enc) == 2 and len(table["epoch1"].dec) == 3
    ckpt = load_checkpoint(tmp_path / "logs" / "ckpts" / "s1_epoch1.pkl", "vgd", "search")
    assert ckpt["alpha_optimizer"]["state"], "no α step was taken"
    rec = json.loads((tmp_path / "logs" / "log" / "metrics_s1.jsonl").read_text().splitlines()[-1])
    # the derived network is scored on the α part: the last 20 % of train (24 of 120 expressions)
    assert rec["derived_expressions"] == 24 and 0 <= rec["derived_accuracy"] <= 100
    assert rec["derived_expressions_relation"] + rec["derived_expressions_attribute"] == 24


def _naive_loss(scores, deltas, batch, kind):
    t, s = batch["score_target"].double(), scores.double()
    if kind == "kld":
        rows = [i for i in range(len(t)) if t[i].sum() > 0]
        kl = sum(float(t[i, j] * (math.log(t[i, j]) - s[i, j])) for i in rows for j in range(t.size(1)) if t[i, j] > 0)
        score = kl / len(rows)
    else:
        score = float(sum(max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))
                          for x, y in zip(s.flatten().tolist(), t.flatten().tolist()))) / len(t)
    diffs = (deltas.double() - batch["box_target"].double())[batch["box_mask"]].flatten().tolist()
    box = sum(0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in diffs) / int(batch["box_mask"].sum())
    return score + 0.5 * box


def test_forward_loss_equals_a_naive_recomputation(vgd_root, tmp_path):
    for kind in ("kld", "bce"):
        cfg = parse("vgd", "train", vgd_args(vgd_root, tmp_path, f"model.vgd_score_loss={kind}"))
        task = VGDTask(cfg)
        task.prepare()
        ds = task.dataset("train")
        batch = torch.utils.data.default_collate([ds[i] for i in range(16)])
        assert batch["box_mask"].dtype == torch.bool and batch["box_mask"].any(1).all()
        torch.manual_seed(0)
        net = mmnas.build_network("vgd", SMALL_GENOTYPE, **task.model_kwargs(), **dataclasses.asdict(cfg.model))
        out = task.forward_loss(net, batch)
        scores, deltas = out["output"]
        if kind == "kld":  # log-probabilities over all N regions
            torch.testing.assert_close(scores.exp().sum(-1), torch.ones(16))
        assert math.isclose(float(out["loss"]), _naive_loss(scores.detach(), deltas.detach(), batch, kind),
                            rel_tol=1e-5)
        out["loss"].backward()


def _decode_clip(region, d, w, h):
    """Spec §3 by hand: un-normalise, centre ± half of exp(dw)·(x2−x1+1), clip to [0, W−1] × [0, H−1]."""
    dx, dy, dw, dh = d[0] * 0.1, d[1] * 0.1, d[2] * 0.2, d[3] * 0.2
    rw, rh = region[2] - region[0] + 1, region[3] - region[1] + 1
    cx, cy = region[0] + 0.5 * rw + dx * rw, region[1] + 0.5 * rh + dy * rh
    pw, ph = math.exp(dw) * rw, math.exp(dh) * rh
    box = [cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2]
    return [min(max(v, 0), (w if k % 2 == 0 else h) - 1) for k, v in enumerate(box)]


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return iw * ih / (area(a) + area(b) - iw * ih)


def _direct(ckpt_path, root, split):
    """Accuracy and per-subset accuracy of the checkpoint's network on a split, computed sample by sample."""
    ckpt = load_checkpoint(ckpt_path)
    data = VGDData(root, "shapes", SPLITS["shapes"])
    meta = data.build_meta()
    net = mmnas.build_network("vgd", ckpt["genotype"], vocab_size=len(meta.vocab), **ckpt["config"]["model"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    ds = VGDDataset(data, split, meta, 14, 20)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        scores, deltas = net(batch)
    hits, boxes = [], []
    for i, ref in enumerate(ds.refs):
        top = int(scores[i].argmax())
        box = _decode_clip(batch["region_box"][i, top].tolist(), deltas[i, top].tolist(), ref["width"], ref["height"])
        x, y, w, h = ref["bbox"]
        hits.append(_iou(box, [x, y, x + w, y + h]) >= 0.5)
        boxes.append(box)
    subsets = {s: 100 * np.mean([h for h, r in zip(hits, ds.refs) if r["subset"] == s])
               for s in ("attribute", "relation")}
    return 100 * np.mean(hits), subsets, boxes, ds


def test_train_val_test_through_the_cli(vgd_root, vgd_trained, tmp_path):
    log_dir = vgd_trained.parent.parent
    rec = json.loads((log_dir / "log" / "metrics_t1.jsonl").read_text().splitlines()[-1])
    assert "val_accuracy" in rec and "val_accuracy_relation" in rec  # val scored after the epoch (not trained on)

    ev = execute("vgd", "train", vgd_args(vgd_root, tmp_path, "--VERSION", "v", "--RUN", "val",
                                          "--CKPT_PATH", str(vgd_trained)))
    acc, subsets, _, ds = _direct(vgd_trained, vgd_root, "val")
    assert math.isclose(ev["accuracy"], acc) and ev["expressions"] == len(ds) == 120
    for name, value in subsets.items():
        assert math.isclose(ev[f"accuracy_{name}"], value)

    # --RUN test: the release's testA, with a per-expression result file
    out = execute("vgd", "train", vgd_args(vgd_root, tmp_path, "--VERSION", "t", "--RUN", "test",
                                           "--CKPT_PATH", str(vgd_trained)))
    acc, subsets, boxes, ds = _direct(vgd_trained, vgd_root, "testA")
    result = json.loads((tmp_path / "logs" / "ckpts" / "result_test" / "result_t.json").read_text())
    assert [r["index"] for r in result] == list(range(len(ds)))
    assert [r["ref_id"] for r in result] == [r["ref_id"] for r in ds.refs]
    assert [r["image_id"] for r in result] == [r["image_id"] for r in ds.refs]
    np.testing.assert_allclose([r["pred_box"] for r in result], boxes, atol=0.006)
    assert math.isclose(out["accuracy"], acc) and math.isclose(100 * np.mean([r["hit"] for r in result]), acc)
    assert math.isclose(out["accuracy_relation"], subsets["relation"]) and out["questions"] == len(ds)
    assert all(0 < r["score"] <= 1 and r["subset"] in ("attribute", "relation") for r in result)

    # any split can be tested
    execute("vgd", "train", vgd_args(vgd_root, tmp_path, "--VERSION", "tb", "--RUN", "test", "data.test_split=testB",
                                     "--CKPT_PATH", str(vgd_trained)))
    result_b = json.loads((tmp_path / "logs" / "ckpts" / "result_test" / "result_tb.json").read_text())
    test_b = json.loads((vgd_root / "shapes" / "testB.json").read_text())
    assert [r["image_id"] for r in result_b] == [r["image_id"] for r in test_b]
