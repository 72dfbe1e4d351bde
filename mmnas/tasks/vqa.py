"""The VQA task (spec §3, §6, §7): VQA-v2 data, BCE loss on soft scores, the official accuracy, EvalAI results."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from mmnas.data.text import resolve_word_vectors
from mmnas.data.vqa import ANNOTATION_FILES, VQAData, VQADataset, split_names
from mmnas.errors import DataError
from mmnas.evaluation.validate import validate_vqa_results
from mmnas.evaluation.vqa import vqa_accuracy
from mmnas.fileio import atomic_write_json
from mmnas.models.losses import vqa_loss
from mmnas.tasks.base import TASKS, IndexedEvaluator, Task

class VQAEvaluator(IndexedEvaluator):
    """Collects the argmax answer per question; scores with the official metric where annotations exist."""

    fields = ("predictions",)

    def __init__(self, dataset: VQADataset) -> None:
        self.dataset = dataset
        self.reset()

    def reset(self) -> None:
        self.predictions: dict[int, int] = {}

    def process(self, batch: dict[str, torch.Tensor], output: torch.Tensor) -> None:
        for i, a in zip(batch["index"].tolist(), output.argmax(-1).tolist()):
            self.predictions[i] = a

    def results(self) -> list[dict[str, Any]]:
        """[{question_id, answer}] in dataset order, one per processed question."""
        answers = self.dataset.meta.answers
        return [{"question_id": int(self.dataset.questions[i]["question_id"]), "answer": answers[a]}
                for i, a in sorted(self.predictions.items())]

    def evaluate(self) -> dict[str, Any]:
        if not self.dataset.has_targets:
            return {"questions": len(self.predictions)}
        idx = sorted(self.predictions)
        scores = vqa_accuracy([self.dataset.questions[i] for i in idx], [self.dataset.annotations[i] for i in idx],
                              self.results())
        return {"accuracy": scores["overall"], "perAnswerType": scores["perAnswerType"],
                "perQuestionType": scores["perQuestionType"], "questions": len(idx)}


@TASKS.register("vqa")
class VQATask(Task):
    name = "vqa"
    metric = "accuracy"
    datasets = ("vqa", "easyvqa")
    demo_datasets = ("easyvqa",)

    @classmethod
    def prepare_demo(cls, cfg) -> None:
        from pathlib import Path

        from mmnas.demo.easyvqa import DONE_FILE, prepare_easyvqa
        if not (Path(cfg.data.root) / DONE_FILE).is_file():  # any complete tree (a full or a test-sized one)
            prepare_easyvqa(cfg.data.root, progress=cfg.run.progress)

    def prepare(self, need_vectors: bool = True) -> None:
        self.data = VQAData(self.cfg.data.root, self.cfg.data.answer_min_count)
        self._meta = self.data.build_meta()
        if need_vectors:
            self._meta.word_vectors = resolve_word_vectors(self._meta.vocab, self.cfg.data.word_vectors,
                                                           seed=max(self.cfg.run.seed, 0))

    def dataset(self, split: str) -> VQADataset:
        return VQADataset(self.data, split, self._meta, self.cfg.data.max_tokens, self.cfg.data.max_regions,
                          preload=self.cfg.data.preload_features, progress=self.cfg.run.progress,
                          with_box_feature=self.cfg.model.use_box_feature)

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self._meta.vocab), "answer_size": len(self._meta.answers),
                "word_vectors": self._meta.word_vectors}

    def forward_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        out = model(batch)
        return {"loss": vqa_loss(out, batch["target"]), "output": out}

    def evaluator(self, dataset: VQADataset) -> VQAEvaluator:
        return VQAEvaluator(dataset)

    def can_evaluate(self, split: str) -> bool:
        return all(s in ANNOTATION_FILES for s in split_names(split))

    def write_results(self, evaluator: VQAEvaluator, path: str) -> dict[str, Any]:
        results = evaluator.results()
        expected = [int(q["question_id"]) for q in evaluator.dataset.questions]
        got = [r["question_id"] for r in results]
        # The EvalAI contract (one int id and one str answer per test question), checked by the standalone validator.
        check = validate_vqa_results(results, evaluator.dataset.questions, split=evaluator.dataset.split)
        if got != expected or not check.ok:
            raise DataError(f"internal check failed: the result file {path} would cover {len(set(got))} of "
                            f"{len(expected)} test questions ({' '.join(check.problems) or 'out of order'}); nothing "
                            f"was written.")
        atomic_write_json(path, results)
        return {"result_file": os.fspath(path), "questions": len(results)}
