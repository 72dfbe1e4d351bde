"""Builders for the ITM tests (not project code): small trees in the exact Flickr30K layout, made by the demo
generator, and a small network over them."""
from __future__ import annotations

from pathlib import Path

import torch

from mmnas.data.itm import ITMData, ITMDataset
from mmnas.demo.shapes_itm import prepare_shapes_itm

GENOTYPE = {"enc": [["self_att_64"], ["feed_forward"]],
            "dec": [["rel_self_att_64"], ["guided_att_64"], ["feed_forward"], ["self_att_64"]]}


def make_tree(root: Path, n_train: int = 24, n_dev: int = 6, n_test: int = 6) -> Path:
    return prepare_shapes_itm(root, n_train=n_train, n_dev=n_dev, n_test=n_test, progress=False)


def run_args(root: Path, tmp: Path, *extra: str) -> list[str]:
    """Flags for a tiny, fast run on a test tree; outputs go under tmp."""
    return ["--DATASET", "shapes", "--NO_PROGRESS", "--NW", "0", "--BS", "8", f"data.root={root}",
            f"run.log_dir={tmp / 'logs'}", f"run.arch_dir={tmp / 'arch'}", f"itm.pack_dir={tmp / 'packed'}",
            "run.plots=false", "model.hidden_size=64", "model.flat_mlp_size=32", "itm.neg_randsize=6", "itm.neg_hardsize=3",
            "itm.neg_batch=7", "itm.eval_pairs=50", *extra]


def small_network(vocab_size: int, feat_size: int, genotype=GENOTYPE, seed: int = 0, dropout: float = 0.0):
    import mmnas
    torch.manual_seed(seed)
    net = mmnas.build_network("itm", genotype, vocab_size=vocab_size, hidden_size=64, feat_size=feat_size,
                              flat_mlp_size=32, dropout=dropout)
    return net.eval()


def dataset(root: Path, split: str, tmp: Path, max_regions: int = 12, negatives: bool = False) -> ITMDataset:
    data = ITMData(root, "flickr")
    return ITMDataset(data, split, data.build_meta(), max_tokens=50, max_regions=max_regions,
                      pack_dir=tmp / "packed", negatives=negatives, progress=False)
