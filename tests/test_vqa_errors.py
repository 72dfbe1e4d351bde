"""Bad input: one clear paragraph naming the file and the fix, exit code 2, never a traceback."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmnas.cli import main, parse
from mmnas.engine.checkpoint import load_checkpoint, save_checkpoint
from mmnas.fileio import atomic_write_json, atomic_write_text
from tests.conftest import run_args


def err(capsys, *call) -> str:
    assert main(*call) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: ") and "Traceback" not in out
    return out


@pytest.fixture(scope="module")
def trained(vqa_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    assert main("vqa", "train", run_args(vqa_root, tmp, "--VERSION", "ok", "optim.max_epoch=1",
                                         "run.eval_every_epoch=false")) == 0
    return tmp / "logs" / "ckpts" / "ok_epoch1.pkl"


def test_missing_dataset_tree_points_to_guide_and_demo(capsys, tmp_path):
    msg = err(capsys, "vqa", "train", ["--DATASET", "vqa", f"data.root={tmp_path / 'nope'}",
                                       f"run.log_dir={tmp_path}", "--NO_PROGRESS"])
    assert str(tmp_path / "nope") in msg and "README" in msg and "--DATASET easyvqa" in msg


def test_missing_question_file(capsys, vqa_root, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(vqa_root, root)
    (root / "annotations" / "v2_mscoco_val2014_annotations.json").unlink()
    msg = err(capsys, "vqa", "train", run_args(root, tmp_path, "optim.max_epoch=1"))
    assert "v2_mscoco_val2014_annotations.json" in msg and "README" in msg


def test_question_whose_image_has_no_feature_file(capsys, vqa_root, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(vqa_root, root)
    victim = sorted((root / "bua-r101-max100" / "train2014").iterdir())[0]
    victim.unlink()
    msg = err(capsys, "vqa", "train", run_args(root, tmp_path, "optim.max_epoch=1", "data.check=false"))
    assert "no feature file" in msg and "train2014" in msg and "image ids: [0]" in msg


def test_corrupt_npz(capsys, vqa_root, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(vqa_root, root)
    victim = sorted((root / "bua-r101-max100" / "train2014").iterdir())[1]
    victim.write_bytes(b"PK\x03\x04 this is not a zip archive")
    msg = err(capsys, "vqa", "train", run_args(root, tmp_path, "optim.max_epoch=1", "data.preload_features=true"))
    assert victim.name in msg


def test_missing_arch_epoch_key(capsys, vqa_root, tmp_path):
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--ARCH_PATH", "arch/mcan.json",
                                               "--ARCH_EPOCH", "4"))
    assert "arch/mcan.json" in msg and "'epoch4'" in msg and "--ARCH_EPOCH" in msg


def test_checkpoint_from_another_task(capsys, vqa_root, tmp_path, trained):
    ckpt = load_checkpoint(trained)
    ckpt["task"] = "vgd"
    other = tmp_path / "vgd.pkl"
    save_checkpoint(other, {k: v for k, v in ckpt.items() if k not in ("format", "format_version", "git_commit")})
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--RUN", "val", "--CKPT_PATH", str(other)))
    assert str(other) in msg and "'vgd' checkpoint" in msg


def test_checkpoint_from_another_vocabulary(capsys, other_vqa_root, tmp_path, trained):
    msg = err(capsys, "vqa", "train", run_args(other_vqa_root, tmp_path, "--RUN", "val", "--CKPT_PATH", str(trained)))
    assert str(trained) in msg and "another vocabulary" in msg


def test_release_pickle_and_garbage_are_refused(capsys, vqa_root, tmp_path):
    plain = tmp_path / "release.pkl"
    torch.save({"state_dict": {"embedding.weight": torch.zeros(2, 2)}}, plain)
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--RUN", "val", "--CKPT_PATH", str(plain)))
    assert "not an mmnas checkpoint" in msg and "convert_release_ckpt" in msg
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00garbage")
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--RUN", "test", "--CKPT_PATH", str(garbage)))
    assert "cannot be read safely" in msg


def test_resume_without_checkpoint(capsys, vqa_root, tmp_path):
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--VERSION", "never", "--RESUME"))
    assert "--RESUME needs a checkpoint" in msg and "'never'" in msg
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--RESUME", "--CKPT_PATH", str(tmp_path / "x.pkl")))
    assert "x.pkl does not exist" in msg


def test_val_without_checkpoint_path(capsys, vqa_root, tmp_path):
    assert "needs --CKPT_PATH" in err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--RUN", "val"))


def test_fresh_run_does_not_overwrite_an_earlier_one(capsys, vqa_root, tmp_path, trained):
    log_dir = trained.parent.parent
    msg = err(capsys, "vqa", "train", run_args(vqa_root, tmp_path, "--VERSION", "ok", f"run.log_dir={log_dir}"))
    assert "already has outputs" in msg and "--RESUME" in msg


def test_config_typo_names_the_nearest_key(capsys):
    msg = err(capsys, "vqa", "train", ["optim.lr_bse=1e-4"])
    assert "'optim.lr_bse'" in msg and "Did you mean 'optim.lr_base'" in msg
    msg = err(capsys, "vqa", "train", ["optim.batch_size=many"])
    assert "optim.batch_size must be of type int" in msg and "override" in msg
    msg = err(capsys, "vqa", "train", ["--BS", "0"])
    assert "optim.batch_size" in msg


def test_config_file_typo_names_the_file(capsys, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("optim:\n  max_epochs: 3\n")
    msg = err(capsys, "vqa", "train", ["--CONFIG", str(bad)])
    assert str(bad) in msg and "Did you mean 'optim.max_epoch'" in msg


def test_precedence_of_config_sources(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("optim:\n  lr_base: 5.0e-5\n  batch_size: 8\n")
    cfg = parse("vqa", "train", ["--CONFIG", str(extra), "--BS", "12", "optim.batch_size=20"])
    assert cfg.optim.lr_base == 5e-5           # --CONFIG over configs/vqa/train.yaml
    assert cfg.optim.batch_size == 20          # dotted override over --BS over --CONFIG
    assert cfg.model.hidden_size == 512 and cfg.optim.lr_decay_epochs == [10, 12]
    s = parse("vqa", "search", ["--GENO_EPOCH", "7"])
    assert s.run.arch_epoch == 7 and s.model.hidden_size == 256 and s.optim.lr_base == 4e-4


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "arch.json"
    atomic_write_json(path, {"epoch1": 1})

    def crash(f):
        f.write('{"epoch1": 1, "epo')
        raise KeyboardInterrupt  # the process dies in the middle of writing

    from mmnas.fileio import atomic_write
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"epoch1": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["arch.json"]  # no temp file left behind
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
