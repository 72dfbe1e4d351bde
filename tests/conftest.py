"""Shared fixtures: small VQA-v2 trees in the exact on-disk formats (made by the easy-VQA converter)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmnas.demo.easyvqa import prepare_easyvqa


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
            "model.flat_mlp_size=32", "data.answer_min_count=2", *extra]
