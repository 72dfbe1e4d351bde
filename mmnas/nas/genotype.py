"""Genotypes and the arch json format of spec §8: `{"epoch<N>": {"enc": [[op], …], "dec": [[op], …]}}`."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mmnas.errors import UserError
from mmnas.fileio import atomic_write_json
from mmnas.registry import nearest

CELLS = ("enc", "dec")
_EPOCH_KEY = re.compile(r"^epoch(\d+)$")


class ArchFileError(UserError, ValueError):
    """A bad or missing arch file, epoch key, node count or op name; the message names all of them."""


@dataclass(frozen=True)
class Genotype:
    """Per cell, a tuple of nodes; a node is a tuple of op names whose outputs are summed."""

    enc: tuple[tuple[str, ...], ...]
    dec: tuple[tuple[str, ...], ...]

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "genotype") -> "Genotype":
        if not isinstance(d, Mapping) or set(d) != set(CELLS):
            got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
            raise ArchFileError(f"{where}: expected an object with exactly the keys 'enc' and 'dec', got {got}.")
        cells = {}
        for cell in CELLS:
            nodes = d[cell]
            if not isinstance(nodes, list) or not nodes:
                raise ArchFileError(f"{where}: '{cell}' must be a non-empty list of nodes, each a list of op names.")
            parsed = []
            for i, node in enumerate(nodes):
                if isinstance(node, str):  # tolerate a bare op name for a one-op node
                    node = [node]
                if not isinstance(node, list) or not node or not all(isinstance(op, str) for op in node):
                    raise ArchFileError(f"{where}: {cell} node {i} must be a non-empty list of op names, got {node!r}.")
                parsed.append(tuple(node))
            cells[cell] = tuple(parsed)
        return cls(**cells)

    def to_dict(self) -> dict:
        return {cell: [list(node) for node in getattr(self, cell)] for cell in CELLS}

    def ops(self) -> Iterable[tuple[str, int, str]]:
        for cell in CELLS:
            for i, node in enumerate(getattr(self, cell)):
                for op in node:
                    yield cell, i, op

    def validate(self, valid_ops: Sequence[str], where: str = "genotype",
                 search_space: Mapping[str, Sequence[str]] | None = None,
                 nodes: Mapping[str, int] | None = None) -> "Genotype":
        """Check every op is registered (and in `search_space` if given) and node counts (if given)."""
        for cell in CELLS:
            if nodes is not None and len(getattr(self, cell)) != nodes[cell]:
                raise ArchFileError(f"{where}: the '{cell}' cell has {len(getattr(self, cell))} nodes, "
                                    f"expected {nodes[cell]}.")
        for cell, i, op in self.ops():
            allowed = list(search_space[cell]) if search_space is not None else list(valid_ops)
            if op not in allowed:
                hint = nearest(op, allowed)
                did = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ArchFileError(f"{where}: unknown op {op!r} in {cell} node {i}.{did} "
                                    f"Valid choices: {', '.join(allowed)}.")
            if cell == "enc" and op.startswith("guided_att"):
                raise ArchFileError(f"{where}: {op!r} in enc node {i} attends to the other modality, which the "
                                    f"encoder cell does not have; guided attention belongs in 'dec'.")
        return self


def epoch_key(epoch: int | str) -> str:
    """0 → 'epoch0'; 'epoch3' stays; anything else is an error."""
    if isinstance(epoch, int) or (isinstance(epoch, str) and epoch.isdigit()):
        return f"epoch{int(epoch)}"
    if isinstance(epoch, str) and _EPOCH_KEY.match(epoch):
        return epoch
    raise ArchFileError(f"an arch epoch must be an integer N or 'epochN', got {epoch!r}.")


def read_arch_file(path: str | os.PathLike) -> dict[str, Genotype]:
    """All genotypes of an arch json, keyed 'epoch<N>' in file order."""
    path = Path(path)
    if not path.is_file():
        raise ArchFileError(f"arch file {path} does not exist. Pass --ARCH_PATH with one of the shipped files "
                            f"(arch/mcan.json, arch/mmnas_vqa.json, arch/mmnas_vgd.json, arch/mmnas_itm.json) "
                            f"or the arch/<VERSION>.json that a search wrote.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchFileError(f"arch file {path} is not valid JSON ({e}). It must look like "
                            f'{{"epoch0": {{"enc": [["self_att_64"], …], "dec": [[…], …]}}}}.') from None
    if not isinstance(raw, dict):
        raise ArchFileError(f"arch file {path} must hold a JSON object keyed 'epoch<N>'.")
    out = {}
    for key, value in raw.items():
        if not _EPOCH_KEY.match(key):
            raise ArchFileError(f"arch file {path}: key {key!r} is not of the form 'epoch<N>'.")
        out[key] = Genotype.from_dict(value, where=f"arch file {path}, key {key!r}")
    return out


def load_genotype(path: str | os.PathLike, epoch: int | str = 0, valid_ops: Sequence[str] | None = None) -> Genotype:
    """The genotype stored under 'epoch<epoch>' in an arch json, validated against the op registry."""
    key = epoch_key(epoch)
    table = read_arch_file(path)
    if key not in table:
        raise ArchFileError(f"arch file {path} has no key {key!r}; it holds {', '.join(table) or 'nothing'}. "
                            f"Pick one with --ARCH_EPOCH N.")
    if valid_ops is None:
        from mmnas.ops import OPS
        valid_ops = OPS.names()
    return table[key].validate(valid_ops, where=f"arch file {path}, key {key!r}")


def append_genotype(path: str | os.PathLike, epoch: int | str, genotype: Genotype) -> None:
    """Add (or replace) one epoch's genotype, keeping the others; the file is rewritten atomically."""
    path = Path(path)
    table = {k: g.to_dict() for k, g in read_arch_file(path).items()} if path.exists() else {}
    table[epoch_key(epoch)] = genotype.to_dict()
    atomic_write_json(path, table)
