"""The public constructors `build_network` and `build_supernet` (issue 2's API; spec §1–§4)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from mmnas.models.heads import HEADS
from mmnas.models.model_config import ModelConfig
from mmnas.models.net import MMNasNet
from mmnas.nas import supernet as sn
from mmnas.nas.backbone import Backbone
from mmnas.nas.genotype import Genotype, load_genotype
from mmnas.ops import OPS, SEARCH_SPACE

TASKS = ("vqa", "vgd", "itm")


def _model_config(overrides: Mapping[str, Any]) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown model setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    cfg = ModelConfig(**overrides)
    cfg.validate()
    return cfg


def _check_task(task: str, answer_size: int | None) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == "vqa" and not answer_size:
        raise ValueError("the VQA network needs answer_size (the answer vocabulary size)")


def resolve_genotype(genotype: Genotype | Mapping | str | os.PathLike, epoch: int | str = 0) -> Genotype:
    """A Genotype from a Genotype, a {'enc','dec'} dict, or an arch json path (key 'epoch<epoch>')."""
    if isinstance(genotype, Genotype):
        geno = genotype
    elif isinstance(genotype, Mapping):
        geno = Genotype.from_dict(genotype)
    else:
        return load_genotype(genotype, epoch)
    return geno.validate(OPS.names())


def build_network(task: str, genotype: Genotype | Mapping | str | os.PathLike, *, epoch: int | str = 0,
                  vocab_size: int, answer_size: int | None = None, word_vectors=None,
                  **model_cfg: Any) -> MMNasNet:
    """The fixed network of `genotype` for `task` ∈ {vqa, vgd, itm}; model settings as keywords (release defaults,
    e.g. hidden_size=512)."""
    _check_task(task, answer_size)
    cfg = _model_config(model_cfg)
    backbone = Backbone.from_genotype(resolve_genotype(genotype, epoch), cfg)
    return MMNasNet(cfg, vocab_size, backbone, HEADS.get(task)(cfg, answer_size), word_vectors)


def build_supernet(task: str, *, vocab_size: int, answer_size: int | None = None, word_vectors=None,
                   nodes: Mapping[str, int] | None = None,
                   search_space: Mapping[str, Sequence[str]] = SEARCH_SPACE,
                   init_genotype: Genotype | None = None, **model_cfg: Any) -> MMNasNet:
    """The search supernet: one mixed op per node over `search_space` (release: 12 encoder and 18 decoder nodes),
    α initialised from `init_genotype` (+1 for its op, −1 for the others; default: the release's MCAN-like start for
    the given node counts); hidden_size defaults to the search's 256."""
    _check_task(task, answer_size)
    model_cfg.setdefault("hidden_size", 256)
    cfg = _model_config(model_cfg)
    nodes = nodes or {"enc": 12, "dec": 18}
    backbone = Backbone.supernet(cfg, nodes, search_space)
    sn.init_alpha(backbone, init_genotype or sn.mcan_like_genotype(nodes["enc"], nodes["dec"]))
    return MMNasNet(cfg, vocab_size, backbone, HEADS.get(task)(cfg, answer_size), word_vectors)
