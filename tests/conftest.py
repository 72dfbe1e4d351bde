"""Shared fixtures: small trees in the exact on-disk formats of each task (made by the demo converters)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmnas.cli import main
from mmnas.demo.easyvqa import prepare_easyvqa
from mmnas.demo.shapes_vgd import prepare_shapes_vgd
from tests.helpers import SMALL_GENOTYPE, vgd_args


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One intra-op thread for the whole suite: the tiny test networks gain nothing from more, and when other work
    shares the CPU, spinning OpenMP threads make them up to ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vqa_root(tmp_path_factory) -> Path:
    """40 train and 40 val/test images with their questions, in the release's VQA tree."""
    root = tmp_path_factory.mktemp("vqa") / "easyvqa"
    prepare_easyvqa(root, limit=40, progress=False)
    return root


@pytest.fixture(scope="session")
def other_vqa_root(tmp_path_factory) -> Path:
    """A second tree whose vocabulary differs (fewer images)."""
    root = tmp_path_factory.mktemp("vqa_other") / "easyvqa"
    prepare_easyvqa(root, limit=12, progress=False)
    return root


def run_args(root: Path, tmp: Path, *extra: str) -> list[str]:
    """Flags for a tiny, fast run on a test tree; outputs go under tmp."""
    return ["--DATASET", "easyvqa", "--NO_PROGRESS", "--NW", "0", "--BS", "16", f"data.root={root}",
            f"run.log_dir={tmp / 'logs'}", f"run.arch_dir={tmp / 'arch'}", "model.hidden_size=64",
            "model.flat_mlp_size=32", "data.answer_min_count=2", "run.plots=false", *extra]


TREE_IMAGES = 40  # per split: 120 expressions each in train, val, testA and testB


@pytest.fixture(scope="session")
def vgd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vgd") / "shapes_vgd"
    prepare_shapes_vgd(root, progress=False, limit=TREE_IMAGES)
    return root


@pytest.fixture(scope="session")
def vgd_arch(tmp_path_factory) -> Path:
    """A small arch file (2 + 3 nodes, every decoder op kind but self-attention) under key epoch0."""
    path = tmp_path_factory.mktemp("vgd_arch") / "small.json"
    path.write_text(json.dumps({"epoch0": SMALL_GENOTYPE}))
    return path


@pytest.fixture(scope="session")
def vgd_trained(vgd_root, vgd_arch, tmp_path_factory) -> Path:
    """A checkpoint after one training epoch (per-epoch validation on)."""
    tmp = tmp_path_factory.mktemp("vgd_trained")
    rc = main("vgd", "train", vgd_args(vgd_root, tmp, "--VERSION", "t1", "--SEED", "3", "optim.max_epoch=1",
                                       "--ARCH_PATH", str(vgd_arch)))
    assert rc == 0
    return tmp / "logs" / "ckpts" / "t1_epoch1.pkl"
