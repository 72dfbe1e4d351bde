"""Every search mode (search.mode = full, two, darts) runs one epoch through the release's command line on a
generated VQA tree, writes its arch file and metrics record, and the record draws."""
from __future__ import annotations

import json

import pytest

from mmnas.cli import main
from mmnas.nas.genotype import read_arch_file
from mmnas.viz import draw_run
from mmnas.viz.plots import ALPHA_PNG, SEARCH_PNG
from tests.conftest import run_args

# As tests/test_vqa_end_to_end.py: 2 + 3 nodes, α steps from the first epoch, every other step.
SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2"]
INITIAL_DEC = [[-1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, 1.0]]  # MCAN-like α start


@pytest.mark.parametrize("mode", ["full", "two", "darts"])
def test_one_search_epoch_per_mode(vqa_root, tmp_path, mode):
    version = f"mode_{mode}"
    rc = main("vqa", "search", run_args(vqa_root, tmp_path, "--VERSION", version, "optim.max_epoch=1",
                                        f"search.mode={mode}", *SEARCH))
    assert rc == 0
    table = read_arch_file(tmp_path / "arch" / f"{version}.json")
    assert list(table) == ["epoch1"]
    assert len(table["epoch1"].enc) == 2 and len(table["epoch1"].dec) == 3
    lines = (tmp_path / "logs" / "log" / f"metrics_{version}.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    assert rec["stage"] == "search" and rec["epoch"] == 1
    assert rec["arch_steps_samples"] > 0 and rec["arch_loss"] is not None
    assert rec["genotype"] == table["epoch1"].to_dict()
    # The α step moved α away from its ±1 start: the probabilities are no longer softmax of ±1.
    import math
    start = [[math.exp(a) / sum(math.exp(b) for b in row) for a in row] for row in INITIAL_DEC]
    logged = [list(node.values()) for node in rec["probs"]["dec"]]
    assert any(abs(p - q) > 1e-4 for row, srow in zip(logged, start) for p, q in zip(row, srow))
    for node in rec["probs"]["enc"] + rec["probs"]["dec"]:
        assert sum(node.values()) == pytest.approx(1.0, abs=1e-4)
    written = draw_run(tmp_path / "logs" / "log" / f"metrics_{version}.jsonl")
    assert [p.name for p in written] == [ALPHA_PNG, SEARCH_PNG]
    assert all(p.stat().st_size > 2000 for p in written)
