"""The task surface the trainer and searcher see (DESIGN "Task", "Evaluator"): data, model inputs, loss, evaluation
and result files. Nothing in engine/ imports a concrete task."""
from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from mmnas.config import Config
from mmnas.engine.common import run_evaluation
from mmnas.errors import CheckpointError
from mmnas.registry import Registry

TASKS = Registry("task")


class Evaluator(Protocol):
    def reset(self) -> None: ...
    def process(self, batch: dict[str, torch.Tensor], output: Any) -> None: ...
    def evaluate(self) -> dict[str, Any]: ...
    def state(self) -> dict[str, dict[int, Any]]: ...
    def merge(self, states: list[dict[str, dict[int, Any]]]) -> None: ...


class IndexedEvaluator:
    """An evaluator whose records are dicts keyed by dataset index (`fields`): the shards of a multi-process
    evaluation merge by union, so every sample counts exactly once, in dataset order, whatever the process count."""

    fields: tuple[str, ...] = ()

    def state(self) -> dict[str, dict[int, Any]]:
        return {f: getattr(self, f) for f in self.fields}

    def merge(self, states: list[dict[str, dict[int, Any]]]) -> None:
        for f in self.fields:
            merged: dict[int, Any] = {}
            for st in states:
                merged.update(st[f])
            setattr(self, f, dict(sorted(merged.items())))


class Task:
    """Subclasses implement every method; `metric` names the headline number of `Evaluator.evaluate()`."""

    name: str = ""
    metric: str = ""
    datasets: tuple[str, ...] = ()        # --DATASET choices; the first is the default
    demo_datasets: tuple[str, ...] = ()   # those built into the project (configs/demo/<task>_<stage>.yaml)

    @classmethod
    def prepare_demo(cls, cfg: Config) -> None:
        """Generate the built-in demo data under cfg.data.root if it is not there yet."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def prepare(self, need_vectors: bool = True) -> None:
        """Read the shared data (vocabularies, and word vectors when a new network will be built)."""
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        """The samples of a split expression (as --SPLIT / data.*_split name them)."""
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """vocab_size, answer_size, word_vectors … for build_network / build_supernet."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """What a checkpoint must match to be used with this data: the fingerprint of the vocabularies that
        `prepare` built (`self._meta`), with `vocab_size` for messages."""
        return self._meta.fingerprint()

    def check_meta(self, saved: dict[str, Any], source: str) -> None:
        """Refuse a checkpoint trained on data with other vocabularies (tokens, answers …)."""
        ours = self.meta()
        differ = [k for k in ours if k != "vocab_size" and saved.get(k) != ours[k]]
        if differ:
            raise CheckpointError(
                f"checkpoint {source} was trained with another vocabulary ({', '.join(differ)} differ; "
                f"{saved.get('vocab_size')} tokens there, {ours['vocab_size']} in the {self.cfg.data.dataset} data "
                f"under {self.cfg.data.root}). Point --DATASET / data.root at the data it was trained on.")

    def forward_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """{'loss': scalar (sum over the batch, as the release), 'output': the model's output}."""
        raise NotImplementedError

    def evaluator(self, dataset: Dataset) -> Evaluator:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True,
                 desc: str = "eval") -> tuple[dict[str, Any], Evaluator]:
        """One pass over `loader` in eval mode; returns the metrics and the evaluator (for result files).
        Tasks whose metric is not per-sample (ITM scores every image-caption pair) override this."""
        evaluator = self.evaluator(loader.dataset)
        return run_evaluation(model, evaluator, loader, device, progress, desc, self.cfg.run.amp), evaluator

    def on_epoch_start(self, model: nn.Module, epoch: int, device: torch.device) -> None:
        """Work before each training/search epoch (ITM mines hard negatives here); nothing by default."""

    def state_dict(self) -> dict[str, Any]:
        """Task state that training changes and a checkpoint must carry (ITM: the current negatives); tensors and
        plain values only (checkpoints are read with weights_only=True)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` after the training dataset was built."""

    def can_evaluate(self, split: str) -> bool:
        """Whether the split has ground truth to compute the metric."""
        raise NotImplementedError

    def write_results(self, evaluator: Evaluator, path: str) -> dict[str, Any]:
        """Write the result file of `--RUN test`; return a summary for the log."""
        raise NotImplementedError
