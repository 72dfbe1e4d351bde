"""Bad VGD input: exit code 2 and one paragraph naming the file and the fix, never a traceback."""
from __future__ import annotations

import json
import shutil

import pytest

from mmnas.cli import main
from mmnas.data.vgd import VGDData
from mmnas.errors import DataError
from tests.helpers import vgd_args



def err(capsys, *call) -> str:
    assert main(*call) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: ") and "Traceback" not in out
    return out


@pytest.fixture
def tree(vgd_root, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(vgd_root, root)
    return root


def test_missing_split_file(capsys, tree, tmp_path):
    (tree / "shapes" / "testB.json").unlink()
    msg = err(capsys, "vgd", "train", vgd_args(tree, tmp_path, "optim.max_epoch=1"))
    assert str(tree / "shapes" / "testB.json") in msg and "tools/refer_to_vgd.py" in msg


def test_box_outside_the_image(capsys, tree, tmp_path):
    path = tree / "shapes" / "val.json"
    refs = json.loads(path.read_text())
    refs[3]["bbox"] = [120.0, 10.0, 20.0, 10.0]  # x + w = 140 > 128
    path.write_text(json.dumps(refs))
    msg = err(capsys, "vgd", "train", vgd_args(tree, tmp_path, "optim.max_epoch=1"))
    assert str(path) in msg and "entry 3" in msg and "outside its 128x128 image" in msg and "refer_to_vgd" in msg


def test_expression_whose_image_has_no_features(capsys, tree, tmp_path):
    victim = sorted((tree / "bua-r101-fix100").iterdir())[0]  # image 0 of train
    victim.unlink()
    msg = err(capsys, "vgd", "train", vgd_args(tree, tmp_path, "optim.max_epoch=1", "data.check=false"))
    assert "no feature file" in msg and str(tree / "bua-r101-fix100") in msg and "image ids: [0]" in msg
    assert str(tree / "shapes" / "train.json") in msg


def test_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main("vgd", "train", ["--DATASET", "refclef"])
    assert exit_info.value.code == 2
    msg = capsys.readouterr().err
    assert "--DATASET" in msg and "'refclef'" in msg and "refcoco+" in msg and "shapes" in msg


def test_missing_tree_points_to_guide_converter_and_demo(capsys, tmp_path):
    msg = err(capsys, "vgd", "train", ["--DATASET", "refcocog", f"data.root={tmp_path / 'nope'}",
                                       f"run.log_dir={tmp_path}", "--NO_PROGRESS"])
    assert str(tmp_path / "nope" / "refcocog") in msg and "README" in msg and "--DATASET shapes" in msg
    assert "refer_to_vgd.py" in msg


def test_split_the_dataset_does_not_have(tmp_path):
    (tmp_path / "refcocog").mkdir()
    with pytest.raises(DataError, match=r"refcocog has no split 'testA'.*train, val, test.*data.test_split"):
        VGDData(tmp_path, "refcocog").split_names("testA")
