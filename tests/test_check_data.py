"""The data checker finds each planted problem (its kind and the file at fault) in small trees in the real formats,
passes clean trees, and its command line exits 0 / 1 / 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmnas.check_data import check_dataset, config_for, main, quick_check
from mmnas.demo.easyvqa import prepare_easyvqa
from mmnas.demo.shapes_vgd import prepare_shapes_vgd
from mmnas.errors import DataError
from tests.itm_helpers import make_tree

QUESTIONS = "annotations/v2_OpenEnded_mscoco_{}_questions.json"
ANNOTATIONS = "annotations/v2_mscoco_{}_annotations.json"


# -- trees ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vqa_tree(tmp_path_factory) -> Path:
    return prepare_easyvqa(tmp_path_factory.mktemp("check_vqa") / "easyvqa", limit=12, progress=False)


@pytest.fixture(scope="module")
def vgd_tree(tmp_path_factory) -> Path:
    return prepare_shapes_vgd(tmp_path_factory.mktemp("check_vgd") / "shapes_vgd", limit=6, progress=False)


@pytest.fixture(scope="module")
def itm_tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("check_itm") / "shapes_itm", n_train=8, n_dev=4, n_test=4)


def copy(tree: Path, tmp_path: Path) -> Path:
    root = tmp_path / tree.name
    shutil.copytree(tree, root)
    return root


def vqa_cfg(root: Path, *overrides: str):
    return config_for("vqa", "easyvqa", str(root), overrides)


def load(path: Path):
    return json.loads(path.read_text())


def save(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def found(report, kind: str, file: Path | str) -> str:
    """The message of the problem of `kind` naming `file`; fails with the whole report when there is none."""
    for p in report.problems:
        if p.kind == kind and Path(p.file) == Path(file):
            return p.message
    raise AssertionError(f"no {kind} problem naming {file}:\n{report.summary(100)}")


def rewrite_npz(path: Path, **changes) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# -- clean trees ---------------------------------------------------------------------------------------------------
def test_clean_trees_pass(vqa_tree, vgd_tree, itm_tree):
    vqa = check_dataset(vqa_cfg(vqa_tree), full=True)
    assert vqa.ok, vqa.summary()
    assert vqa.splits["train"]["items"] == len(load(vqa_tree / QUESTIONS.format("train2014"))["questions"])
    assert vqa.files_opened == vqa.feature_files == 24 and any("answer vocabulary" in n for n in vqa.notes)
    vgd = check_dataset(config_for("vgd", "shapes", str(vgd_tree)), full=True)
    assert vgd.ok and set(vgd.splits) == {"train", "val", "testA", "testB"}, vgd.summary()
    itm = check_dataset(config_for("itm", "shapes", str(itm_tree)), full=True)
    assert itm.ok and itm.splits["dev"]["images"] == 4, itm.summary()
    assert any("more than data.max_regions" in n for n in itm.notes)  # 36 regions, the demo reads 8: a note only


def test_cheap_mode_opens_an_even_sample(vqa_tree):
    report = check_dataset(vqa_cfg(vqa_tree), sample=5)
    assert report.ok and report.files_opened == 5 and report.feature_files == 24


# -- planted problems: VQA -----------------------------------------------------------------------------------------
def test_missing_feature_file(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    (root / "bua-r101-max100" / "train2014" / "COCO_train2014_000000000003.jpg.npz").unlink()
    report = check_dataset(vqa_cfg(root))
    msg = found(report, "missing-feature", root / QUESTIONS.format("train2014"))
    assert "image ids: 3" in msg and "train2014" in msg
    assert report.splits["train"]["with_features"] == 11


def test_wrong_feature_width_and_box_outside_the_image(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    narrow = root / "bua-r101-max100" / "train2014" / "COCO_train2014_000000000002.jpg.npz"
    rewrite_npz(narrow, x=np.ones((39, 16), np.float32))
    outside = root / "bua-r101-max100" / "train2014" / "COCO_train2014_000000000007.jpg.npz"
    with np.load(outside) as npz:
        boxes = npz["bbox"].copy()
    boxes[5] = [10, 10, 200, 40]  # x2 = 200 in a 64-pixel-wide image
    rewrite_npz(outside, bbox=boxes)
    report = check_dataset(vqa_cfg(root), full=True)
    assert "39 features per region but model.feat_size is 40" in found(report, "feature-width", narrow)
    assert "region 5" in found(report, "feature-box-outside-image", outside)
    assert report.kinds() == {"feature-width": 1, "feature-box-outside-image": 1}


def test_bad_feature_files(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    folder = root / "bua-r101-max100" / "train2014"
    garbage, count, ints = (folder / f"COCO_train2014_{i:012d}.jpg.npz" for i in (4, 5, 6))
    garbage.write_bytes(b"not a zip")
    rewrite_npz(count, num_bbox=np.int64(7))
    rewrite_npz(ints, x=np.ones((40, 16), np.int32))
    report = check_dataset(vqa_cfg(root), full=True)
    assert "not an .npz" in found(report, "bad-feature", garbage)
    assert "num_bbox is 7" in found(report, "num-bbox", count)
    assert "int32" in found(report, "feature-dtype", ints)


def test_duplicated_question_id(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    path = root / QUESTIONS.format("train2014")
    data = load(path)
    data["questions"].append(dict(data["questions"][0]))
    save(path, data)
    assert "(0)" in found(check_dataset(vqa_cfg(root)), "duplicate-question-id", path)


def test_train_val_question_overlap(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    qpath, apath = root / QUESTIONS.format("val2014"), root / ANNOTATIONS.format("val2014")
    qs, anns = load(qpath), load(apath)
    old = qs["questions"][0]["question_id"]
    qs["questions"][0]["question_id"] = 5  # a training question's id
    next(a for a in anns["annotations"] if a["question_id"] == old)["question_id"] = 5
    save(qpath, qs)
    save(apath, anns)
    report = check_dataset(vqa_cfg(root))
    msg = found(report, "split-leakage", qpath)
    assert "'val'" in msg and "'train'" in msg and "5" in msg and report.kinds() == {"split-leakage": 1}
    # Trained on train+val, the same file is a duplicate inside the training split (and val is no longer evaluated).
    both = check_dataset(vqa_cfg(root, "data.train_split=train+val"))
    assert "trains on both" in found(both, "duplicate-question-id", qpath)


def test_annotation_without_question_and_question_without_annotation(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    apath = root / ANNOTATIONS.format("train2014")
    anns = load(apath)
    anns["annotations"][0]["question_id"] = 987654
    save(apath, anns)
    report = check_dataset(vqa_cfg(root))
    assert "987654" in found(report, "annotation-without-question", apath)
    assert "(0)" in found(report, "question-without-annotation", root / QUESTIONS.format("train2014"))


def test_missing_annotation_file_and_empty_answer_vocabulary(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    (root / ANNOTATIONS.format("val2014")).unlink()
    report = check_dataset(vqa_cfg(root))
    assert "missing VQA file" in found(report, "missing-file", root / ANNOTATIONS.format("val2014"))
    vocab = check_dataset(vqa_cfg(vqa_tree, "data.answer_min_count=1000"))
    assert "data.answer_min_count" in found(vocab, "answer-vocabulary", vqa_tree / ANNOTATIONS.format("train2014"))


# -- planted problems: VGD and ITM ---------------------------------------------------------------------------------
def test_vgd_box_outside_image_missing_features_and_leakage(vgd_tree, tmp_path):
    root = copy(vgd_tree, tmp_path)
    val = root / "shapes" / "val.json"
    refs = load(val)
    for i in (2, 7):
        refs[i]["bbox"] = [120.0, 10.0, 20.0, 10.0]  # x + w = 140 > 128
    save(val, refs)
    (root / "bua-r101-fix100" / "SHAPES_000000200001.jpg.npz").unlink()  # an image of testA
    testb = root / "shapes" / "testB.json"
    refs = load(testb)
    refs[0]["image_id"] = 3  # a training image
    save(testb, refs)
    report = check_dataset(config_for("vgd", "shapes", str(root)))
    assert "2 expression(s)" in found(report, "box-outside-image", val) and report.splits["val"]["items"] == 18
    assert "200001" in found(report, "missing-feature", root / "shapes" / "testA.json")
    assert "'testB'" in found(report, "split-leakage", testb)


def test_vgd_feature_image_size_differs_from_the_split_file(vgd_tree, tmp_path):
    root = copy(vgd_tree, tmp_path)
    path = root / "bua-r101-fix100" / "SHAPES_000000000001.jpg.npz"
    rewrite_npz(path, image_w=np.int64(256))
    report = check_dataset(config_for("vgd", "shapes", str(root)), full=True)
    assert "256x128" in found(report, "image-size", path)


def test_itm_ids_captions_and_features(itm_tree, tmp_path):
    root = copy(itm_tree, tmp_path)
    precomp = root / "f30k_precomp"
    ids = (precomp / "train_ids.txt").read_text().splitlines()
    (precomp / "train_ids.txt").write_text("\n".join(ids[:-1] + ["424242"]) + "\n")  # not an imgid of the json
    (precomp / "test_caps.txt").write_text("\n".join((precomp / "test_caps.txt").read_text().splitlines()[:-1]) + "\n")
    karpathy = load(root / "dataset_flickr30k.json")
    dev_image = next(im for im in karpathy["images"] if im["split"] == "val")
    (root / "flickr_bua-r101-fix36" / f"{dev_image['filename']}.npz").unlink()
    report = check_dataset(config_for("itm", "shapes", str(root)))
    assert "424242" in found(report, "unknown-id", precomp / "train_ids.txt")
    assert "19 captions" in found(report, "split-file", precomp / "test_caps.txt")
    assert f"{dev_image['imgid']}" in found(report, "missing-feature", precomp / "dev_ids.txt")


def test_itm_train_image_in_the_test_split(itm_tree, tmp_path):
    root = copy(itm_tree, tmp_path)
    precomp = root / "f30k_precomp"
    train_first = (precomp / "train_ids.txt").read_text().splitlines()[0]
    ids = (precomp / "test_ids.txt").read_text().splitlines()
    (precomp / "test_ids.txt").write_text("\n".join([train_first] * 5 + ids[5:]) + "\n")
    assert "'test'" in found(check_dataset(config_for("itm", "shapes", str(root))), "split-leakage",
                             precomp / "test_ids.txt")


# -- the check a run makes -----------------------------------------------------------------------------------------
def test_quick_check_reads_only_the_runs_splits_and_reuses_the_task_data(vqa_tree, tmp_path):
    from mmnas.data.vqa import VQAData
    root = copy(vqa_tree, tmp_path)
    (root / "bua-r101-max100" / "train2014" / "COCO_train2014_000000000003.jpg.npz").unlink()
    cfg = vqa_cfg(root, "run.run=val")
    data = VQAData(root)
    report = quick_check(cfg, data=data)  # --RUN val reads val only: the missing training image does not matter
    assert report.ok and set(report.splits) == {"val"} and report.files_opened == 8, report.summary()
    assert set(data._questions) == {"val"}  # the task's data object is reused: no other file was read
    cfg.run.run = "train"
    train = quick_check(cfg, data=data)
    assert set(train.splits) == {"train", "val"} and train.kinds() == {"missing-feature": 1}
    with pytest.raises(DataError, match=r"1 problem\(s\).*image ids: 3.*python3 -m mmnas.check_data --task vqa "
                                        r"--DATASET easyvqa"):
        train.raise_if_problems()


# -- command line --------------------------------------------------------------------------------------------------
def test_cli_exit_codes_and_output(vqa_tree, tmp_path, capsys):
    assert main(["--task", "vqa", "--DATASET", "easyvqa", "--root", str(vqa_tree)]) == 0
    out = capsys.readouterr().out
    assert "OK: no problem found." in out and "123 questions" in out

    root = copy(vqa_tree, tmp_path)
    for i in range(3):
        (root / "bua-r101-max100" / "train2014" / f"COCO_train2014_{i:012d}.jpg.npz").unlink()
    path = root / QUESTIONS.format("train2014")
    data = load(path)
    data["questions"].append(dict(data["questions"][0]))
    save(path, data)
    assert main(["--task", "vqa", "--DATASET", "easyvqa", "--root", str(root), "--max-problems", "1"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS: 2 (duplicate-question-id 1, missing-feature 3)" in out
    assert f"[duplicate-question-id] {path}:" in out and "… and 1 more" in out

    assert main(["--task", "vqa", "--root", str(root), "--json"]) == 1  # --DATASET vqa: the real tree's config
    assert json.loads(capsys.readouterr().out)["problems_by_kind"]["missing-feature"] == 3


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--task", "gqa"])
    assert info.value.code == 2
    assert main(["--task", "vgd", "--DATASET", "easyvqa"]) == 2
    assert "'easyvqa' is not a dataset of the vgd task; valid: refcoco" in capsys.readouterr().err
    assert main(["--task", "vqa", "optim.lr_bse=1"]) == 2
    assert "Did you mean 'optim.lr_base'" in capsys.readouterr().err
    assert main(["--task", "itm", "--sample", "0"]) == 2
    assert "--sample must be a positive integer" in capsys.readouterr().err


def test_missing_tree_is_one_problem_not_a_crash(tmp_path, capsys):
    assert main(["--task", "vgd", "--DATASET", "refcoco", "--root", str(tmp_path / "nope")]) == 1
    assert "[missing-file]" in capsys.readouterr().out
    for task in ("vqa", "itm"):
        report = check_dataset(config_for(task, None, str(tmp_path / "nope")))
        assert report.kinds() == {"missing-file": 1}


def test_malformed_entries_and_annotations_of_another_image(vqa_tree, tmp_path):
    root = copy(vqa_tree, tmp_path)
    qpath, apath = root / QUESTIONS.format("train2014"), root / ANNOTATIONS.format("train2014")
    qs, anns = load(qpath), load(apath)
    qs["questions"][4]["question_id"] = str(qs["questions"][4]["question_id"])  # "4": a str id
    anns["annotations"][6]["image_id"] = 11  # question 6 asks about image 0
    save(qpath, qs)
    save(apath, anns)
    report = check_dataset(vqa_cfg(root))
    assert "entries 4" in found(report, "bad-entry", qpath)
    assert "(6)" in found(report, "annotation-image-mismatch", apath)
