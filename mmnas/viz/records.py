"""Reading a run's metrics file (logs/log/metrics_<VERSION>.jsonl) and the pure α-probability statistics (entropy,
argmax, changed nodes) that the plots and the stability report share; no matplotlib here."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

CELLS = ("enc", "dec")

# Evaluator outputs that count things or time them rather than score the model: never drawn as a metric.
COUNT_KEYS = ("questions", "expressions", "images", "captions", "samples", "pairs_per_second", "eval_seconds",
              "medr", "meanr")

_METRICS_NAME = re.compile(r"^metrics_(.+)\.jsonl$")


# -- the metrics file -----------------------------------------------------------------------------------------------
def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every well-formed JSON-object line of a metrics file, in file order.

    A line that does not parse (the last one of a run killed mid-write, or a stray edit) or is not an object is
    skipped: a picture of the rest is worth more than an error."""
    out = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _epoch(rec: Mapping[str, Any]) -> int | None:
    e = rec.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) and e >= 1 else None


def last_run(records: Sequence[Mapping[str, Any]], stage: str) -> list[dict[str, Any]]:
    """The per-epoch records of `stage` ('search' or 'train') of the latest run in the file, one per epoch.

    A metrics file is appended to by every run of its VERSION (run.overwrite=true starts again at epoch 1; --RESUME
    goes on, possibly repeating epochs after the last checkpoint). So the latest run starts at the last epoch-1
    record, and a repeated epoch keeps its latest record."""
    recs = [r for r in records if r.get("stage") == stage and _epoch(r) is not None]
    starts = [i for i, r in enumerate(recs) if _epoch(r) == 1]
    if starts:
        recs = recs[starts[-1]:]
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in recs:
        by_epoch[_epoch(r)] = dict(r)
    return [by_epoch[e] for e in sorted(by_epoch)]


def version_of(metrics_path: str | os.PathLike) -> str:
    """'metrics_<VERSION>.jsonl' → VERSION (else the file's stem)."""
    name = Path(metrics_path).name
    m = _METRICS_NAME.match(name)
    return m.group(1) if m else Path(name).stem


def plots_dir(log_dir: str | os.PathLike, version: str) -> Path:
    """Where a run's pictures go: <run.log_dir>/plots/<VERSION>/."""
    return Path(log_dir) / "plots" / version


def number(x: Any) -> float | None:
    """A finite float, or None for anything else (None, strings, NaN, booleans)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def metric_keys(records: Iterable[Mapping[str, Any]], prefix: str, primary: str | None = None) -> list[str]:
    """The scored metrics among keys `<prefix><name>` (e.g. 'val_', 'derived_'), without the prefix.

    With the task's `primary` metric known, only it and its breakdowns (`accuracy_relation`) are drawn; otherwise
    every numeric key that is not a count or a timing."""
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(prefix) and number(v) is not None:
                seen[k[len(prefix):]] = None
    names = list(seen)
    if primary and primary in seen:
        return [n for n in names if n == primary or n.startswith(primary + "_")]
    return [n for n in names if not any(n == c or n.endswith("_" + c) for c in COUNT_KEYS)]


# -- α probabilities --------------------------------------------------------------------------------------------
def node_probs(node: Any, names: Sequence[str] | None = None) -> tuple[list[str], list[float]] | None:
    """One node's distribution as (op names, probabilities).

    `export_probs()` logs {op: p}; a bare list [p, …] takes `names` (the cell's search space) when the lengths
    match. Anything else is None (the caller skips it)."""
    if isinstance(node, Mapping):
        items = [(str(k), number(v)) for k, v in node.items()]
    elif isinstance(node, (list, tuple)) and names is not None and len(node) == len(names):
        items = [(str(n), number(v)) for n, v in zip(names, node)]
    else:
        return None
    if not items or any(v is None or v < 0 for _, v in items):
        return None
    return [n for n, _ in items], [float(v) for _, v in items]


def cell_probs(probs: Any, cell: str, names: Sequence[str] | None = None) -> list[tuple[list[str], list[float]]] | None:
    """The nodes of one cell of a logged `probs` object, or None when any node is unreadable."""
    if not isinstance(probs, Mapping) or not isinstance(probs.get(cell), list) or not probs[cell]:
        return None
    nodes = [node_probs(n, names) for n in probs[cell]]
    return None if any(n is None for n in nodes) else nodes


def entropy(p: Sequence[float], normalize: bool = False) -> float:
    """Shannon entropy −Σ p ln p in nats (0 ln 0 = 0); with `normalize`, divided by ln K (1 = uniform over K).

    The input is renormalised first: logged probabilities are rounded to 6 decimals and need not sum to 1."""
    total = sum(p)
    if total <= 0:
        raise ValueError("a probability vector needs a positive sum")
    h = -sum((x / total) * math.log(x / total) for x in p if x > 0)
    h = max(h, 0.0)
    if normalize:
        return h / math.log(len(p)) if len(p) > 1 else 0.0
    return h


def mean_entropy(nodes: Sequence[Sequence[float]], normalize: bool = False) -> float:
    """The mean over a cell's nodes of each node's entropy."""
    if not nodes:
        raise ValueError("a cell needs at least one node")
    return sum(entropy(p, normalize) for p in nodes) / len(nodes)


def argmax_ops(probs: Mapping[str, Any]) -> dict[str, list[str]]:
    """The most probable op of every node ({cell: [op, …]}); ties go to the first op in logged order, as
    torch.argmax does."""
    out = {}
    for cell in CELLS:
        nodes = cell_probs(probs, cell)
        if nodes is not None:
            out[cell] = [names[max(range(len(p)), key=lambda i: (p[i], -i))] for names, p in nodes]
    return out


def genotype_ops(genotype: Any) -> dict[str, list[tuple[str, ...]]] | None:
    """A logged genotype ({"enc": [[op], …], "dec": …}) as {cell: [node tuple, …]}, or None if malformed."""
    if not isinstance(genotype, Mapping):
        return None
    out = {}
    for cell in CELLS:
        nodes = genotype.get(cell)
        if not isinstance(nodes, list):
            return None
        out[cell] = [tuple(n) if isinstance(n, (list, tuple)) else (n,) for n in nodes]
    return out


def changed_nodes(a: Mapping[str, Sequence[Any]], b: Mapping[str, Sequence[Any]]) -> int:
    """How many nodes hold different ops in two genotypes (per cell, node by node; a node present in only one
    of them counts as changed)."""
    n = 0
    for cell in CELLS:
        x, y = list(a.get(cell, [])), list(b.get(cell, []))
        n += sum(tuple(_as_node(p)) != tuple(_as_node(q)) for p, q in zip(x, y)) + abs(len(x) - len(y))
    return n


def _as_node(node: Any) -> tuple:
    return tuple(node) if isinstance(node, (list, tuple)) else (node,)


def genotype_changes(records: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Per search record, the number of nodes whose argmax changed since the previous epoch.

    The searcher logs it (`genotype_changes`, the first epoch against the initial genotype); when absent it is
    recomputed from consecutive logged genotypes (None where that is impossible)."""
    out: list[int | None] = []
    prev = None
    for r in records:
        geno = genotype_ops(r.get("genotype"))
        logged = r.get("genotype_changes")
        if isinstance(logged, int) and not isinstance(logged, bool):
            out.append(logged)
        elif geno is not None and prev is not None:
            out.append(changed_nodes(prev, geno))
        else:
            out.append(None)
        prev = geno if geno is not None else prev
    return out


def cell_entropies(records: Sequence[Mapping[str, Any]], cell: str,
                   normalize: bool = False) -> list[float | None]:
    """Per record, the mean node entropy of `cell`'s α distribution (None where the record has no usable probs)."""
    out: list[float | None] = []
    for r in records:
        nodes = cell_probs(r.get("probs"), cell)
        out.append(None if nodes is None else mean_entropy([p for _, p in nodes], normalize))
    return out
