"""VGD data: the refer → json converter against a hand-written expectation (and its refusal of unsafe pickles), the
vocabulary and samples of the dataset, and the synthetic demo (deterministic, RefCOCO formats, honest subset tags)."""
from __future__ import annotations

import importlib.util
import json
import pickle

import numpy as np
import pytest
import torch

from mmnas.data.regions import load_region_npz
from mmnas.data.vgd import VGDData, VGDDataset
from mmnas.demo import shapes_vgd
from mmnas.errors import DataError
from mmnas.evaluation.grounding import box_iou, xywh_to_xyxy
from tests.helpers import REPO


_spec = importlib.util.spec_from_file_location("refer_to_vgd", REPO / "tools" / "refer_to_vgd.py")
refer_to_vgd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refer_to_vgd)

REFS = [  # refer's refs(unc).p: a list of ref dicts, sentences in order
    {"ref_id": 7, "ann_id": 100, "image_id": 9, "split": "train", "category_id": 1, "file_name":
     "COCO_train2014_000000000009_7.jpg", "sentences": [
         {"tokens": ["Left", "man"], "raw": "Left man", "sent_id": 70},
         {"tokens": ["guy", "on", "left"], "raw": "guy on left", "sent_id": 71}], "sent_ids": [70, 71],
     "misc": {"set", "tuple"}},
    {"ref_id": 8, "ann_id": 101, "image_id": 9, "split": "testB", "category_id": 2, "file_name":
     "COCO_train2014_000000000009_8.jpg", "sentences": [{"tokens": ["cup"], "raw": "cup", "sent_id": 80}]},
    {"ref_id": 9, "ann_id": 102, "image_id": 25, "split": "val", "category_id": 1, "file_name":
     "COCO_train2014_000000000025_9.jpg", "sentences": [{"tokens": ["woman", "man"], "raw": "x", "sent_id": 90}]},
    {"ref_id": 10, "ann_id": 100, "image_id": 9, "split": "train", "category_id": 1, "file_name":
     "COCO_train2014_000000000009_10.jpg", "sentences": [{"tokens": ["the", "man"], "raw": "x", "sent_id": 95}]},
]
INSTANCES = {
    "images": [{"id": 9, "height": 480, "width": 640, "file_name": "COCO_train2014_000000000009.jpg"},
               {"id": 25, "height": 300, "width": 200, "file_name": "COCO_train2014_000000000025.jpg"}],
    "annotations": [{"id": 100, "bbox": [10.5, 20.0, 100.25, 200.0], "image_id": 9, "category_id": 1},
                    {"id": 101, "bbox": [300.0, 40.0, 50.0, 60.0], "image_id": 9, "category_id": 2},
                    {"id": 102, "bbox": [0.0, 0.0, 200.0, 300.0], "image_id": 25, "category_id": 1}],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cup"}],
}


def _entry(tokens, ref, split, bbox, name, h, w, sent):
    return {"tokens": tokens, "file_name": f"COCO_train2014_{ref[1]:012d}_{ref[0]}.jpg", "image_id": ref[1],
            "split": split, "bbox": bbox, "name": name, "height": h, "width": w, "ref_id": ref[0], "sent_id": sent}


EXPECTED = {
    "train": [_entry(["Left", "man"], (7, 9), "train", [10.5, 20.0, 100.25, 200.0], "person", 480, 640, 70),
              _entry(["guy", "on", "left"], (7, 9), "train", [10.5, 20.0, 100.25, 200.0], "person", 480, 640, 71),
              _entry(["the", "man"], (10, 9), "train", [10.5, 20.0, 100.25, 200.0], "person", 480, 640, 95)],
    "val": [_entry(["woman", "man"], (9, 25), "val", [0.0, 0.0, 200.0, 300.0], "person", 300, 200, 90)],
    "testA": [],
    "testB": [_entry(["cup"], (8, 9), "testB", [300.0, 40.0, 50.0, 60.0], "cup", 480, 640, 80)],
}


def _write_inputs(tmp_path, refs=REFS):
    (tmp_path / "refer").mkdir()
    (tmp_path / "refer" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))  # as refer's Python 2 files
    (tmp_path / "refer" / "instances.json").write_text(json.dumps(INSTANCES))


def test_converter_output_and_vocabulary(tmp_path, capsys):
    _write_inputs(tmp_path)
    out = tmp_path / "vgd"
    assert refer_to_vgd.main(["--dataset", "refcoco", "--refer-dir", str(tmp_path / "refer"), "--out", str(out)]) == 0
    for split, entries in EXPECTED.items():
        assert json.loads((out / "refcoco" / f"{split}.json").read_text()) == entries, split
    # Tokens as stored (no lower-casing), first-seen order over train, val, testA, testB.
    meta = VGDData(out, "refcoco").build_meta()
    assert meta.vocab.words == ("PAD", "UNK", "CLS", "Left", "man", "guy", "on", "left", "the", "woman", "cup")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_converter_refuses_unsafe_pickles_and_broken_links(tmp_path, capsys):
    _write_inputs(tmp_path, REFS + [{"ref_id": 1, "evil": _Evil()}])
    args = ["--dataset", "refcoco", "--refer-dir", str(tmp_path / "refer"), "--out", str(tmp_path / "vgd")]
    assert refer_to_vgd.main(args) == 2
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out
    # refused before anything ran; protocol 2 (refer's Python 2 files) names the module __builtin__
    assert "refs(unc).p was refused" in captured.err and "__builtin__.print" in captured.err
    assert not (tmp_path / "vgd").exists()
    with pytest.raises(DataError, match="annotation id 555"):
        refer_to_vgd.convert([dict(REFS[0], ann_id=555)], INSTANCES, "unc")
    assert refer_to_vgd.main(["--dataset", "refcocog", "--refer-dir", str(tmp_path / "refer")]) == 2
    assert "refs(umd).p does not exist" in capsys.readouterr().err


def test_samples_of_the_dataset(vgd_root):
    data = VGDData(vgd_root, "shapes", shapes_vgd.SPLIT_IMAGES)
    meta = data.build_meta()
    ds = VGDDataset(data, "train+val", meta, 14, 20, with_box_feature=True)
    assert len(ds) == 240
    s = ds[5]
    ref = ds.refs[5]
    assert s["text_ix"].tolist()[:len(ref["tokens"])] == [meta.vocab.lookup(t) for t in ref["tokens"]]
    assert s["img_feat"].shape == (20, shapes_vgd.FEATURE_DIM) and s["img_rel"].shape == (20, 20, 4)
    npz = load_region_npz(data.feature_index()[ref["image_id"]])
    n = len(npz["bbox"])
    np.testing.assert_array_equal(s["region_box"][:n].numpy(), npz["bbox"])
    assert not s["region_box"][n:].any() and not s["img_feat"][n:].any()
    x, y, w, h = ref["bbox"]
    assert s["gt_box"].tolist() == [x, y, x + w, y + h] and s["image_hw"].tolist() == [128, 128]
    iou = box_iou(npz["bbox"], [[x, y, x + w, y + h]])[:, 0]
    assert torch.equal(s["box_mask"][:n], torch.from_numpy(iou >= 0.5))
    torch.testing.assert_close(s["score_target"].sum(), torch.tensor(1.0))
    box = s["img_box_feat"][:n].numpy()  # x / image_w, y / image_h, area without +1
    b = npz["bbox"]
    np.testing.assert_allclose(box[:, 4], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / 128 ** 2, rtol=1e-5)


def _named(tokens):
    """The attributes the expression names for its target (the words before the relation)."""
    words = []
    for t in tokens[1:]:
        if t not in shapes_vgd.SIZES and t not in shapes_vgd.COLOURS and t not in shapes_vgd.SHAPES:
            break
        words.append(t)
    return words


def test_demo_is_deterministic_and_tags_its_subsets_honestly(vgd_root, tmp_path):
    small = shapes_vgd.prepare_shapes_vgd(tmp_path / "a", progress=False, limit=3)
    again = shapes_vgd.prepare_shapes_vgd(tmp_path / "b", progress=False, limit=3)
    files = sorted(p.relative_to(small) for p in small.rglob("*") if p.is_file())
    assert len(files) == 4 + 12 + 1  # 4 split files, 12 feature files, DONE
    assert all((small / f).read_bytes() == (again / f).read_bytes() for f in files)
    big = json.loads((vgd_root / "shapes" / "train.json").read_text())
    assert json.loads((small / "shapes" / "train.json").read_text()) == big[:9]  # a prefix of the larger tree

    refs = [r for s in shapes_vgd.SPLIT_IMAGES for r in json.loads((vgd_root / "shapes" / f"{s}.json").read_text())]
    assert sum(r["subset"] == "relation" for r in refs) >= len(refs) / 3
    assert max(len(r["tokens"]) for r in refs) <= 14
    for i in range(0, 40, 7):
        _, npz, scene_refs, objs = shapes_vgd._scene("val", i)
        for r in scene_refs:
            named = _named(r["tokens"])
            sharing = [o for o in objs if all(w in (o["size"], o["colour"], o["shape"]) for w in named)]
            assert len(sharing) == (1 if r["subset"] == "attribute" else 2) or (
                r["subset"] == "relation" and len(sharing) > 2), (r, objs)
            gt = xywh_to_xyxy([r["bbox"]])
            assert box_iou(npz["bbox"], gt).max() >= 0.6  # the detector-like step always finds the object
