"""Supernet operations over any module holding mixed ops (spec §4): α init, sampling modes, genotype, parameter groups.

Mixed ops are found by `isinstance`, never by parameter names; the mode is set by a context manager that always
restores the previous one."""
from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from mmnas.nas.genotype import CELLS, Genotype
from mmnas.nas.mixed_op import MixedOp

def mcan_like_genotype(nodes_enc: int = 12, nodes_dec: int = 18) -> Genotype:
    """The release's initial genotype (spec §4): encoder [SA, FFN] repeated, decoder [RSA, GA, FFN] repeated; at the
    release's 12/18 nodes exactly its `[SA, FFN] × 6` / `[RSA, GA, FFN] × 6`."""
    enc, dec = ["self_att_64", "feed_forward"], ["rel_self_att_64", "guided_att_64", "feed_forward"]
    return Genotype(enc=tuple((enc[i % 2],) for i in range(nodes_enc)),
                    dec=tuple((dec[i % 3],) for i in range(nodes_dec)))


# The release starts the search near an MCAN-like network.
INITIAL_GENOTYPE = mcan_like_genotype(12, 18)


def cell_mixed_ops(backbone: nn.Module) -> dict[str, list[MixedOp]]:
    """The mixed ops of the encoder and decoder cells, in node order."""
    return {cell: [m for m in getattr(backbone, {"enc": "encoder", "dec": "decoder"}[cell]).nodes
                   if isinstance(m, MixedOp)] for cell in CELLS}


def mixed_ops(module: nn.Module) -> list[MixedOp]:
    return [m for m in module.modules() if isinstance(m, MixedOp)]


def arch_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [m.alpha for m in mixed_ops(module)]


def gate_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [m.gate for m in mixed_ops(module)]


def weight_parameters(module: nn.Module) -> list[nn.Parameter]:
    arch = {id(p) for m in mixed_ops(module) for p in (m.alpha, m.gate)}
    return [p for p in module.parameters() if id(p) not in arch]


def init_alpha(backbone: nn.Module, genotype: Genotype = INITIAL_GENOTYPE, high: float = 1.0,
               low: float = -1.0) -> None:
    """+high for the genotype's op and `low` for the others. (The release drew α ~ N(0, 1e-3) first and then
    overwrote every entry, so the result is exactly ±1 and the draw is skipped here.) The genotype must have one entry per node: the release silently
    truncated a 21-entry decoder list to 18 nodes; we refuse a mismatch."""
    ops = cell_mixed_ops(backbone)
    for cell in CELLS:
        nodes = getattr(genotype, cell)
        if len(nodes) != len(ops[cell]):
            raise ValueError(f"the initial genotype has {len(nodes)} '{cell}' nodes but the supernet has "
                             f"{len(ops[cell])}; give one op per node (search.init_genotype / --ARCH_PATH).")
        for i, (node, m) in enumerate(zip(nodes, ops[cell])):
            if len(node) != 1 or node[0] not in m.names:
                raise ValueError(f"initial genotype {cell} node {i}: {list(node)} is not one op of {list(m.names)}")
            with torch.no_grad():
                m.alpha.fill_(low)
                m.alpha[m.names.index(node[0])] = high


def sample(module: nn.Module, mode: str, generator: torch.Generator | None = None) -> None:
    for m in mixed_ops(module):
        m.sample(mode, generator)


@contextlib.contextmanager
def sampling(module: nn.Module, mode: str, generator: torch.Generator | None = None) -> Iterator[None]:
    """Sample a path for `mode` in every mixed op; restore each op's previous mode and path on exit."""
    ops = mixed_ops(module)
    saved = [(m.mode, m.active, m.involved) for m in ops]
    try:
        for m in ops:
            m.sample(mode, generator)
        yield
    finally:
        for m, (mode_, active, involved) in zip(ops, saved):
            m.mode, m.active, m.involved = mode_, active, involved


def genotype(backbone: nn.Module) -> Genotype:
    """The derived architecture: the argmax of α in every node."""
    ops = cell_mixed_ops(backbone)
    return Genotype(**{cell: tuple((m.names[int(torch.argmax(m.alpha.detach()))],) for m in ops[cell])
                       for cell in CELLS})


def export_probs(backbone: nn.Module) -> dict[str, list[dict[str, float]]]:
    """softmax(α) per node, as {cell: [{op: p}, …]}, for logs and plots."""
    ops = cell_mixed_ops(backbone)
    return {cell: [{n: round(float(p), 6) for n, p in zip(m.names, m.probs())} for m in ops[cell]]
            for cell in CELLS}


def set_alpha_grads(module: nn.Module) -> None:
    for m in mixed_ops(module):
        m.set_alpha_grad()


def rescale_after_step(module: nn.Module) -> None:
    for m in mixed_ops(module):
        m.rescale_after_step()


def fill_missing_grads(params: Sequence[nn.Parameter]) -> None:
    """Give every parameter without a gradient a zero one.

    The release added `0 · Σ params` to the loss so that DistributedDataParallel saw every parameter used; a side
    effect is that candidates which did not run get a zero gradient, so Adam keeps moving them by momentum and
    they count in the clipping norm. The faithful search reproduces that effect with this helper."""
    for p in params:
        if p.grad is None and p.requires_grad:
            p.grad = torch.zeros_like(p)


def fixed_state_dict(supernet_state: Mapping[str, torch.Tensor], geno: Genotype,
                     search_space: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
    """Map a supernet state dict onto the fixed network of `geno` (each node's chosen candidate → ops.0)."""
    out = {}
    prefixes = {"enc": "backbone.encoder.nodes.", "dec": "backbone.decoder.nodes."}
    for key, value in supernet_state.items():
        cell = next((c for c, p in prefixes.items() if key.startswith(p)), None)
        if cell is None:
            out[key] = value
            continue
        node, rest = key[len(prefixes[cell]):].split(".", 1)
        if rest in ("alpha", "gate"):
            continue
        _, k, tail = rest.split(".", 2)  # candidates.<k>.<tail>
        chosen = getattr(geno, cell)[int(node)]
        if len(chosen) != 1:
            raise ValueError("fixed_state_dict supports one op per node")
        if search_space[cell][int(k)] == chosen[0]:
            out[f"{prefixes[cell]}{node}.ops.0.{tail}"] = value
    return out
