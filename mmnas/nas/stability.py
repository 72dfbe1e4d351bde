"""How stable a search is across seeds (spec §4's derived genotype, compared between runs): per-node agreement,
pairwise Hamming distances, the majority-vote consensus genotype and, from metrics files, the mean α probabilities.

Ties in the vote go to the op chosen by the earliest run in the order given (so the first run is the tie-breaker);
the consensus is written as an ordinary arch json under key epoch0, trainable with --ARCH_PATH FILE --ARCH_EPOCH 0."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmnas.errors import UserError
from mmnas.nas.genotype import CELLS, Genotype, append_genotype, epoch_key, load_genotype, read_arch_file
from mmnas.viz import records as R

Node = tuple[str, ...]


@dataclass(frozen=True)
class ArchRun:
    """One search's genotype: the file and key it came from."""

    path: str
    key: str
    genotype: Genotype

    @property
    def label(self) -> str:
        return f"{self.path}:{self.key}"


@dataclass(frozen=True)
class NodeVote:
    """The vote of one node: the winning op, how many runs chose it, and the share of runs that did."""

    winner: Node
    count: int
    agreement: float
    votes: dict[str, int]


def parse_epoch(epoch: int | str) -> int | str:
    """'last' stays; N or 'epochN' become 'epochN'."""
    if isinstance(epoch, str) and epoch.strip().lower() == "last":
        return "last"
    try:
        return epoch_key(epoch)
    except UserError:
        raise UserError(f"--epoch must be 'last' or an integer N (key epoch<N> of the arch files), "
                        f"got {epoch!r}.") from None


def last_key(table: Mapping[str, Genotype]) -> str:
    """The largest epoch<N> key (a search appends one per epoch, so this is its final genotype)."""
    return max(table, key=lambda k: int(k[len("epoch"):]))


def load_runs(paths: Sequence[str | os.PathLike], epoch: int | str = "last") -> list[ArchRun]:
    """The genotype of every arch file at `epoch` (each file's own last epoch for 'last'), ops validated."""
    if len(paths) < 2:
        raise UserError(f"stability compares searches: give at least two arch files (got {len(paths)}), e.g. "
                        f"python3 -m mmnas.stability arch/s1.json arch/s2.json arch/s3.json.")
    epoch = parse_epoch(epoch)
    runs = []
    for p in paths:
        if epoch == "last":
            table = read_arch_file(p)
            if not table:
                raise UserError(f"arch file {p} holds no genotype (an empty object); a search writes one key "
                                f"epoch<N> per finished epoch; pass the arch file of a search that ran an epoch.")
            key = last_key(table)
        else:
            key = epoch
        runs.append(ArchRun(os.fspath(p), key, load_genotype(p, key)))
    check_same_shape(runs)
    return runs


def check_same_shape(runs: Sequence[ArchRun]) -> None:
    """Node-by-node comparison needs the same node count per cell in every run."""
    shapes = [(len(r.genotype.enc), len(r.genotype.dec)) for r in runs]
    if len(set(shapes)) > 1:
        listing = "; ".join(f"{r.label} has {e} enc / {d} dec nodes" for r, (e, d) in zip(runs, shapes))
        raise UserError(f"the arch files do not have the same node counts ({listing}). Stability is measured node "
                        f"by node, so compare searches with the same search.nodes_enc and search.nodes_dec.")


def _name(node: Sequence[str]) -> str:
    return "+".join(node)


def majority(nodes: Sequence[Node]) -> tuple[Node, int]:
    """The most frequent node and its count; a tie goes to the tied node that appears first in `nodes`."""
    counts = Counter(nodes)
    best = max(counts.values())
    winner = next(n for n in nodes if counts[n] == best)
    return winner, best


def node_votes(genotypes: Sequence[Genotype]) -> dict[str, list[NodeVote]]:
    """Per cell and node: the majority op and the fraction of runs that chose it."""
    out = {}
    for cell in CELLS:
        cols = list(zip(*(getattr(g, cell) for g in genotypes)))
        votes = []
        for col in cols:
            winner, count = majority(col)
            votes.append(NodeVote(winner, count, count / len(col), dict(Counter(_name(n) for n in col))))
        out[cell] = votes
    return out


def consensus(genotypes: Sequence[Genotype]) -> Genotype:
    """Majority vote per node (ties: the earliest run's op among the tied ones)."""
    votes = node_votes(genotypes)
    return Genotype(**{cell: tuple(v.winner for v in votes[cell]) for cell in CELLS})


def hamming(a: Genotype, b: Genotype) -> int:
    """The number of nodes whose ops differ (same node counts required)."""
    if (len(a.enc), len(a.dec)) != (len(b.enc), len(b.dec)):
        raise ValueError("Hamming distance needs genotypes with the same node counts")
    return sum(x != y for cell in CELLS for x, y in zip(getattr(a, cell), getattr(b, cell)))


def distance_matrix(genotypes: Sequence[Genotype]) -> list[list[int]]:
    n = len(genotypes)
    return [[hamming(genotypes[i], genotypes[j]) for j in range(n)] for i in range(n)]


def mean_probs(metrics_paths: Sequence[str | os.PathLike], epoch: int | str = "last") -> dict[str, Any]:
    """The α probabilities of each search's latest run in its metrics file at `epoch` (or its last logged one),
    averaged per node and op, with their argmax genotype and each run's mean entropy per cell."""
    epoch = parse_epoch(epoch)
    per_run = []
    for p in metrics_paths:
        if not Path(p).is_file():
            raise UserError(f"metrics file {p} does not exist. A search writes <run.log_dir>/log/"
                            f"metrics_<VERSION>.jsonl; check the path.")
        recs = [r for r in R.last_run(R.read_metrics(p), "search")
                if R.cell_probs(r.get("probs"), "enc") and R.cell_probs(r.get("probs"), "dec")]
        if epoch != "last":
            recs = [r for r in recs if f"epoch{r['epoch']}" == epoch]
        if not recs:
            which = "any epoch" if epoch == "last" else epoch
            raise UserError(f"metrics file {p} has no search record with α probabilities for {which}; pass the "
                            f"metrics_<VERSION>.jsonl of a search (train runs log no α).")
        per_run.append((os.fspath(p), recs[-1]))
    shapes = {tuple(len(rec["probs"][c]) for c in CELLS) for _, rec in per_run}
    if len(shapes) > 1:
        raise UserError(f"the metrics files' searches have different node counts ({sorted(shapes)}); average α only "
                        f"over searches of the same search space.")
    mean: dict[str, list[dict[str, float]]] = {}
    for cell in CELLS:
        nodes = []
        for i in range(len(per_run[0][1]["probs"][cell])):
            acc: dict[str, float] = {}
            for _, rec in per_run:
                names, ps = R.cell_probs(rec["probs"], cell)[i]
                for n, v in zip(names, ps):
                    acc[n] = acc.get(n, 0.0) + v / len(per_run)
            nodes.append({n: round(v, 6) for n, v in acc.items()})
        mean[cell] = nodes
    entropies = {path: {cell: round(R.mean_entropy([p for _, p in R.cell_probs(rec["probs"], cell)]), 4)
                        for cell in CELLS} | {"epoch": rec["epoch"]} for path, rec in per_run}
    return {"mean_probs": mean, "argmax": R.argmax_ops(mean), "entropy": entropies}


def stability_report(runs: Sequence[ArchRun]) -> dict[str, Any]:
    """Agreement, distances and consensus of several searches, as a JSON-ready dict."""
    genos = [r.genotype for r in runs]
    votes = node_votes(genos)
    dist = distance_matrix(genos)
    n_nodes = len(genos[0].enc) + len(genos[0].dec)
    pairs = [dist[i][j] for i, j in combinations(range(len(genos)), 2)]
    cons = consensus(genos)
    cell_agree = {cell: sum(v.agreement for v in votes[cell]) / len(votes[cell]) for cell in CELLS}
    all_agree = sum(v.agreement for cell in CELLS for v in votes[cell]) / n_nodes
    return {
        "runs": [{"path": r.path, "key": r.key} for r in runs],
        "nodes": {cell: len(getattr(genos[0], cell)) for cell in CELLS},
        "agreement": {cell: [{"op": _name(v.winner), "count": v.count, "agreement": round(v.agreement, 4),
                              "votes": v.votes} for v in votes[cell]] for cell in CELLS},
        "mean_agreement": {**{cell: round(a, 4) for cell, a in cell_agree.items()}, "all": round(all_agree, 4)},
        "unanimous_nodes": sum(v.count == len(genos) for cell in CELLS for v in votes[cell]),
        "distance": dist,
        "distance_fraction": [[round(d / n_nodes, 4) for d in row] for row in dist],
        "mean_pairwise_distance": round(sum(pairs) / len(pairs), 4),
        "mean_pairwise_fraction": round(sum(pairs) / len(pairs) / n_nodes, 4),
        "distance_to_consensus": [hamming(g, cons) for g in genos],
        "consensus": cons.to_dict(),
        "tie_break": "earliest run in the order given",
    }


def format_report(runs: Sequence[ArchRun], rep: Mapping[str, Any], probs: Mapping[str, Any] | None = None) -> str:
    """A plain-text table: one row per node with every run's op, the majority op and its agreement."""
    n = len(runs)
    lines = [f"{n} searches:"]
    lines += [f"  run {i + 1}: {r.label}" for i, r in enumerate(runs)]
    width = max([len(_name(node)) for r in runs for cell in CELLS for node in getattr(r.genotype, cell)] + [8])
    head = f"{'node':<7}" + "".join(f"{'run ' + str(i + 1):<{width + 2}}" for i in range(n)) + \
        f"{'majority':<{width + 2}}agreement"
    lines += ["", head, "-" * len(head)]
    for cell in CELLS:
        for i, v in enumerate(rep["agreement"][cell]):
            ops = "".join(f"{_name(getattr(r.genotype, cell)[i]):<{width + 2}}" for r in runs)
            lines.append(f"{cell + ' ' + str(i):<7}{ops}{v['op']:<{width + 2}}{v['count']}/{n} = {v['agreement']:.2f}")
    ma = rep["mean_agreement"]
    total = sum(rep["nodes"].values())
    lines += ["", (f"mean agreement: enc {ma['enc']:.3f}, dec {ma['dec']:.3f}, all {ma['all']:.3f}; "
                   f"unanimous nodes {rep['unanimous_nodes']}/{total}"),
              f"pairwise Hamming distance (nodes with different ops, of {total}):"]
    lines.append("        " + "".join(f"run {j + 1:<4}" for j in range(n)))
    for i, row in enumerate(rep["distance"]):
        lines.append(f"  run {i + 1:<2}" + "".join(f"{d:<8}" for d in row))
    lines.append(f"mean pairwise distance: {rep['mean_pairwise_distance']:.2f} nodes "
                 f"({rep['mean_pairwise_fraction']:.2f} of {total})")
    lines.append(f"distance of each run to the consensus: {rep['distance_to_consensus']}")
    cons = rep["consensus"]
    lines.append(f"consensus (ties: earliest run): enc {[_name(x) for x in cons['enc']]} "
                 f"dec {[_name(x) for x in cons['dec']]}")
    if probs:
        lines += ["", "mean α probabilities over the metrics files:"]
        for cell in CELLS:
            for i, node in enumerate(probs["mean_probs"][cell]):
                cells = "  ".join(f"{k} {v:.2f}" for k, v in node.items())
                lines.append(f"  {cell} {i}: {cells}  → {probs['argmax'][cell][i]}")
        for path, e in probs["entropy"].items():
            lines.append(f"  entropy (nats, mean over nodes) of {path} at epoch {e['epoch']}: "
                         f"enc {e['enc']:.3f}, dec {e['dec']:.3f}")
    return "\n".join(lines)


def write_consensus(path: str | os.PathLike, genotype: Genotype) -> None:
    """The consensus as an arch json under key epoch0 (atomic; other keys of an existing file are kept)."""
    append_genotype(path, 0, genotype)
