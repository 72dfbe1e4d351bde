"""The visual grounding task (spec §3 VGD, §6, §7): RefCOCO / RefCOCO+ / RefCOCOg expressions, the KL-div (or BCE)
region-score loss plus the SmoothL1 box loss, accuracy at IoU ≥ 0.5 of the top region's regressed box, per-expression
result files; `shapes` is the built-in synthetic demo."""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mmnas.data.vgd import DATASET_SPLITS, UNC_SPLITS, VGDData, VGDDataset
from mmnas.data.text import TextMeta, resolve_word_vectors
from mmnas.errors import DataError
from mmnas.evaluation.grounding import OVERLAP_THRESHOLD, box_transform_inv, clip_boxes, paired_iou
from mmnas.fileio import atomic_write_json
from mmnas.models.losses import vgd_loss
from mmnas.tasks.base import TASKS, IndexedEvaluator, Task

DEMO = "shapes"
SPLITS: dict[str, tuple[str, ...]] = {**DATASET_SPLITS, DEMO: UNC_SPLITS}


class VGDEvaluator(IndexedEvaluator):
    """Per expression: the top-scored region (argmax over all N positions, as the release), its box decoded from the
    predicted deltas and clipped to the image, the IoU with the ground truth, and a hit when IoU ≥ 0.5."""

    fields = ("boxes", "scores", "ious", "regions")

    def __init__(self, dataset: VGDDataset, score_loss: str = "kld") -> None:
        self.dataset = dataset
        self.score_loss = score_loss
        self.reset()

    def reset(self) -> None:
        self.boxes: dict[int, np.ndarray] = {}
        self.scores: dict[int, float] = {}
        self.ious: dict[int, float] = {}
        self.regions: dict[int, int] = {}

    def process(self, batch: dict[str, torch.Tensor], output: tuple[torch.Tensor, torch.Tensor]) -> None:
        scores, deltas = output                                  # [B,N], [B,N,4]
        rows = torch.arange(scores.size(0), device=scores.device)
        top = scores.argmax(-1)                                  # [B]
        top_score = scores[rows, top]
        # kld: the head gives log-probabilities; bce: logits. The result file reports a probability either way.
        prob = top_score.exp() if self.score_loss == "kld" else torch.sigmoid(top_score)
        region = batch["region_box"][rows, top].cpu().numpy()    # [B,4]
        hw = batch["image_hw"].cpu().numpy()                     # [B,2]
        boxes = clip_boxes(box_transform_inv(region, deltas[rows, top].float().cpu().numpy()), hw[:, 1], hw[:, 0])
        ious = paired_iou(boxes, batch["gt_box"].cpu().numpy())
        for k, i in enumerate(batch["index"].tolist()):
            self.boxes[i], self.scores[i], self.ious[i] = boxes[k], float(prob[k]), float(ious[k])
            self.regions[i] = int(top[k])

    def evaluate(self) -> dict[str, Any]:
        idx = sorted(self.ious)
        hits = np.array([self.ious[i] >= OVERLAP_THRESHOLD for i in idx], dtype=bool)
        out: dict[str, Any] = {"accuracy": float(100.0 * hits.mean()) if len(idx) else 0.0, "expressions": len(idx)}
        groups: dict[str, list[bool]] = defaultdict(list)
        tags = self.dataset.subsets
        for i, hit in zip(idx, hits):
            if tags[i] is not None:
                groups[str(tags[i])].append(bool(hit))
        for name in sorted(groups):
            out[f"accuracy_{name}"] = float(100.0 * np.mean(groups[name]))
            out[f"expressions_{name}"] = len(groups[name])
        return out

    def results(self) -> list[dict[str, Any]]:
        """One entry per processed expression, in dataset order."""
        out = []
        for i in sorted(self.ious):
            r = self.dataset.refs[i]
            entry: dict[str, Any] = {"index": i}
            for key in ("ref_id", "sent_id"):
                if key in r:
                    entry[key] = r[key]
            entry.update({"image_id": int(r["image_id"]), "pred_box": [round(float(v), 2) for v in self.boxes[i]],
                          "region": self.regions[i], "score": round(self.scores[i], 6),
                          "iou": round(self.ious[i], 6), "hit": self.ious[i] >= OVERLAP_THRESHOLD})
            if "subset" in r:
                entry["subset"] = r["subset"]
            out.append(entry)
        return out


@TASKS.register("vgd")
class VGDTask(Task):
    name = "vgd"
    metric = "accuracy"
    datasets = ("refcoco", "refcoco+", "refcocog", DEMO)
    demo_datasets = (DEMO,)

    @classmethod
    def prepare_demo(cls, cfg) -> None:
        from mmnas.demo.shapes_vgd import DONE_FILE, prepare_shapes_vgd
        if not (Path(cfg.data.root) / DONE_FILE).is_file():  # any complete tree (a full or a test-sized one)
            prepare_shapes_vgd(cfg.data.root, progress=cfg.run.progress)

    def prepare(self, need_vectors: bool = True) -> None:
        dataset = self.cfg.data.dataset
        if dataset not in SPLITS:
            raise DataError(f"unknown VGD dataset {dataset!r}; valid: {', '.join(SPLITS)}.")
        self.data = VGDData(self.cfg.data.root, dataset, SPLITS[dataset])
        self._meta: TextMeta = self.data.build_meta()
        if need_vectors:
            self._meta.word_vectors = resolve_word_vectors(self._meta.vocab, self.cfg.data.word_vectors,
                                                           seed=max(self.cfg.run.seed, 0))

    def dataset(self, split: str) -> VGDDataset:
        return VGDDataset(self.data, split, self._meta, self.cfg.data.max_tokens, self.cfg.data.max_regions,
                          preload=self.cfg.data.preload_features, progress=self.cfg.run.progress,
                          with_box_feature=self.cfg.model.use_box_feature, score_loss=self.cfg.model.vgd_score_loss)

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self._meta.vocab), "word_vectors": self._meta.word_vectors}

    def forward_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        scores, deltas = model(batch)
        loss = vgd_loss(scores, deltas, batch["score_target"], batch["box_target"], batch["box_mask"],
                        kind=self.cfg.model.vgd_score_loss, box_weight=self.cfg.model.vgd_box_weight)
        return {"loss": loss, "output": (scores, deltas)}

    def evaluator(self, dataset: VGDDataset) -> VGDEvaluator:
        return VGDEvaluator(dataset, self.cfg.model.vgd_score_loss)

    def can_evaluate(self, split: str) -> bool:
        return True  # every RefCOCO split file carries its ground-truth boxes

    def write_results(self, evaluator: VGDEvaluator, path: str) -> dict[str, Any]:
        results = evaluator.results()
        n = len(evaluator.dataset)
        if [r["index"] for r in results] != list(range(n)):
            raise DataError(f"internal check failed: the result file {path} would cover {len(results)} of {n} "
                            f"expressions; nothing was written.")
        atomic_write_json(path, results)
        # 'questions' is the entry count the trainer's log line reads; the metrics go to metrics_<VERSION>.jsonl.
        return {"result_file": os.fspath(path), "questions": n, **evaluator.evaluate()}
