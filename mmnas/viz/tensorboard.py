"""Optional TensorBoard scalars of a run's per-epoch records; a silent no-op where tensorboard is not installed
(it is not a requirement of the project)."""
from __future__ import annotations

import os
from typing import Any, Mapping

from mmnas.viz import records as R


class ScalarWriter:
    """`ScalarWriter(log_dir).add_record(record)` after each epoch; `close()` at the end.

    Writes every numeric field of a record as `<stage>/<key>` at step = epoch, and for a search each node's α
    probabilities (`alpha/<cell>/node<i>/<op>`) and the mean entropy per cell (`alpha/<cell>/entropy`)."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch.utils.tensorboard imports the tensorboard package, which is optional
            return
        self.writer = SummaryWriter(log_dir=os.fspath(log_dir))

    @property
    def available(self) -> bool:
        return self.writer is not None

    def add_record(self, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        step = record.get("epoch")
        if not isinstance(step, int):
            return
        stage = str(record.get("stage", "run"))
        for key, value in record.items():
            v = R.number(value)
            if v is not None and key not in ("epoch",):
                self.writer.add_scalar(f"{stage}/{key}", v, step)
        for cell in R.CELLS:
            nodes = R.cell_probs(record.get("probs"), cell)
            if not nodes:
                continue
            for i, (names, ps) in enumerate(nodes):
                for n, p in zip(names, ps):
                    self.writer.add_scalar(f"alpha/{cell}/node{i}/{n}", p, step)
            self.writer.add_scalar(f"alpha/{cell}/entropy", R.mean_entropy([p for _, p in nodes]), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
