"""RefCOCO / RefCOCO+ / RefCOCOg data in the release's layout (spec §3 VGD targets, §6 VGD data): the processed
per-split expression files, the vocabulary, region features keyed by image id, and per-region training targets.

Layout under the data root (``data.root``, default ``datasets/vgd``)::

    <root>/<dataset>/<split>.json     one list of expressions per split (tools/refer_to_vgd.py writes them)
    <root>/bua-r101-fix100/*.npz      bottom-up features, one flat folder for all datasets and splits
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmnas.data.features import RegionStore, index_feature_dirs
from mmnas.data.text import TextMeta, Vocab
from mmnas.errors import DataError
from mmnas.evaluation.grounding import BOX_MEANS, BOX_STDS, OVERLAP_THRESHOLD, box_iou, box_transform, xywh_to_xyxy

FEATURE_DIR = "bua-r101-fix100"
UNC_SPLITS = ("train", "val", "testA", "testB")
# The vocabulary runs over every split file in this order (spec §6); the first split is the training split.
DATASET_SPLITS: dict[str, tuple[str, ...]] = {
    "refcoco": UNC_SPLITS,
    "refcoco+": UNC_SPLITS,
    "refcocog": ("train", "val", "test"),
}
REQUIRED_KEYS = ("tokens", "image_id", "bbox", "height", "width")
VGD_GUIDE = ("See 'Visual grounding data' in README.md for the expected tree and the converter "
             "(python3 tools/refer_to_vgd.py), or run the built-in demo with --DATASET shapes.")
BOX_TOLERANCE = 1.0  # pixels a ground-truth box may stick out of its image (COCO's float boxes round up to the edge)




def _check_refs(refs: Any, path: Path) -> list[dict]:
    """Structure and boxes of one split file, checked at once (vectorised over the boxes)."""
    if not isinstance(refs, list):
        raise DataError(f"VGD file {path} must hold a JSON list of expressions, found {type(refs).__name__}. "
                        f"Re-create it with tools/refer_to_vgd.py.")
    for i, r in enumerate(refs):
        missing = [k for k in REQUIRED_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise DataError(f"VGD file {path}, entry {i}: missing key(s) {', '.join(missing)} (each entry needs "
                            f"{', '.join(REQUIRED_KEYS)}). Re-create the file with tools/refer_to_vgd.py.")
        if not isinstance(r["tokens"], list) or not all(isinstance(t, str) for t in r["tokens"]):
            raise DataError(f"VGD file {path}, entry {i}: 'tokens' must be a list of strings, got {r['tokens']!r}.")
        if not isinstance(r["bbox"], list) or len(r["bbox"]) != 4:
            raise DataError(f"VGD file {path}, entry {i}: 'bbox' must be [x, y, w, h], got {r['bbox']!r}.")
    if not refs:
        return refs
    try:
        boxes = np.asarray([r["bbox"] for r in refs], dtype=np.float64)             # [E, 4] x, y, w, h
        size = np.asarray([[r["width"], r["height"]] for r in refs], dtype=np.float64)  # [E, 2]
        np.asarray([r["image_id"] for r in refs], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"VGD file {path} has a non-numeric bbox, width, height or image_id ({e}). Re-create it "
                        f"with tools/refer_to_vgd.py.") from None
    x2, y2 = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    bad = ((boxes[:, 2] < 0) | (boxes[:, 3] < 0) | (boxes[:, 0] < -BOX_TOLERANCE) | (boxes[:, 1] < -BOX_TOLERANCE)
           | (x2 > size[:, 0] + BOX_TOLERANCE) | (y2 > size[:, 1] + BOX_TOLERANCE) | ~np.isfinite(boxes).all(1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        r = refs[i]
        raise DataError(f"VGD file {path}, entry {i} (image {r['image_id']}): the box {r['bbox']} ([x, y, w, h]) lies "
                        f"outside its {r['width']}x{r['height']} image ({int(bad.sum())} such entries). Fix or drop "
                        f"these entries, or re-create the file from refer's pickle and instances.json with "
                        f"tools/refer_to_vgd.py.")
    return refs


class VGDData:
    """One VGD tree and dataset (refcoco, refcoco+, refcocog or the demo): reads each split file once, builds the
    vocabulary over all of them and indexes the feature folder."""

    def __init__(self, root: str | Path, dataset: str, splits: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.dataset = dataset
        self.splits = tuple(splits or DATASET_SPLITS.get(dataset, ()))
        if not self.splits:
            raise DataError(f"unknown VGD dataset {dataset!r}; valid: {', '.join(DATASET_SPLITS)}.")
        self.ref_dir = self.root / dataset
        if not self.ref_dir.is_dir():
            raise DataError(f"VGD data for --DATASET {dataset} not found: no folder {self.ref_dir} (expected "
                            f"{', '.join(s + '.json' for s in self.splits)} in it). {VGD_GUIDE}")
        self._refs: dict[str, list[dict]] = {}
        self._feature_index: dict[int, str] | None = None

    def split_path(self, split: str) -> Path:
        return self.ref_dir / f"{split}.json"

    def split_names(self, split: str) -> list[str]:
        """'train+val' → ['train', 'val'], each checked against the dataset's splits."""
        names = [s for s in split.split("+") if s]
        for s in names:
            if s not in self.splits:
                raise DataError(f"{self.dataset} has no split {s!r} (in {split!r}); its splits are "
                                f"{', '.join(self.splits)}. Choose one with data.val_split=… / data.test_split=… "
                                f"/ --SPLIT.")
        if not names:
            raise DataError(f"empty VGD split expression {split!r}; e.g. --SPLIT train or data.test_split=testB.")
        return names

    def refs(self, split: str) -> list[dict]:
        if split not in self._refs:
            path = self.split_path(split)
            if not path.is_file():
                raise DataError(f"missing VGD split file {path}. Create it with python3 tools/refer_to_vgd.py "
                                f"--dataset {self.dataset} (from refer's refs(unc|umd).p and instances.json). "
                                f"{VGD_GUIDE}")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"VGD file {path} is not valid JSON ({e}); re-create it with "
                                f"tools/refer_to_vgd.py.") from None
            self._refs[split] = _check_refs(data, path)
        return self._refs[split]

    def build_meta(self) -> TextMeta:
        """Vocabulary over every split file in the release's order (tokens as stored: no lower-casing)."""
        return TextMeta(Vocab.build(r["tokens"] for s in self.splits for r in self.refs(s)))

    def feature_index(self) -> dict[int, str]:
        if self._feature_index is None:
            self._feature_index = index_feature_dirs([self.root / FEATURE_DIR])
        return self._feature_index


def region_targets(boxes: np.ndarray, gt_box: np.ndarray, max_regions: int, score_loss: str = "kld",
                   threshold: float = OVERLAP_THRESHOLD, stds: Sequence[float] = BOX_STDS,
                   means: Sequence[float] = BOX_MEANS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets of spec §3 for the real regions ``boxes [n,4]`` (x1,y1,x2,y2) and the ground truth ``gt_box [4]``:
    score target ``[N]``, normalised box deltas ``[N,4]`` and the box mask ``[N]`` (IoU ≥ threshold), zero-padded to
    ``max_regions``. The score target is all zero when no region reaches the threshold (the sample then adds nothing
    to the score loss): ``kld`` — the IoUs of the positive regions normalised to sum 1; ``bce`` — 0.8 / 0.9 / 1.0 for
    IoU in [0.5, 0.6) / [0.6, 0.7) / ≥ 0.7."""
    n = len(boxes)
    score = np.zeros(max_regions, dtype=np.float32)
    deltas = np.zeros((max_regions, 4), dtype=np.float32)
    mask = np.zeros(max_regions, dtype=bool)
    if n == 0:
        return score, deltas, mask
    iou = box_iou(boxes, gt_box[None])[:, 0]   # [n]
    pos = iou >= threshold
    if pos.any():
        if score_loss == "kld":
            score[:n][pos] = iou[pos] / iou[pos].sum()
        elif score_loss == "bce":
            score[:n] = np.select([iou >= 0.7, iou >= 0.6, pos], [1.0, 0.9, 0.8], 0.0)
        else:
            raise ValueError(f"unknown VGD score loss {score_loss!r}; valid: 'kld', 'bce'")
    mask[:n] = pos
    # Deltas for every real region, as the release (only the masked ones enter the loss).
    deltas[:n] = box_transform(boxes, gt_box, stds, means)
    return score, deltas, mask


class VGDDataset(Dataset):
    """Expressions of a split expression ('train', 'train+val', 'testB', …) as dicts of tensors (DESIGN "Batch").

    Keys: index, text_ix [T], img_feat [N,F], img_rel [N,N,4], (img_box_feat [N,5] with the box feature),
    score_target [N], box_target [N,4], box_mask [N] (bool), and for evaluation gt_box [4] (x1,y1,x2,y2),
    region_box [N,4] and image_hw [2] (the feature file's image height and width)."""

    def __init__(self, data: VGDData, split: str, meta: TextMeta, max_tokens: int, max_regions: int,
                 preload: bool = False, progress: bool = True, with_box_feature: bool = False,
                 score_loss: str = "kld") -> None:
        self.data, self.split, self.meta = data, split, meta
        self.max_tokens, self.max_regions = max_tokens, max_regions
        self.with_box_feature = with_box_feature
        self.score_loss = score_loss
        self.refs: list[dict] = []
        self.ref_files: list[Path] = []  # the split file each expression comes from (for error messages)
        for part in data.split_names(split):
            self.refs.extend(data.refs(part))
            self.ref_files.extend([data.split_path(part)] * len(data.refs(part)))
        self.gt_boxes = (xywh_to_xyxy([r["bbox"] for r in self.refs]).astype(np.float32) if self.refs
                         else np.zeros((0, 4), dtype=np.float32))
        index = data.feature_index()
        missing = sorted({int(r["image_id"]) for r in self.refs} - set(index))
        if missing:
            where = next(i for i, r in enumerate(self.refs) if int(r["image_id"]) == missing[0])
            raise DataError(f"{len(missing)} image(s) of the {data.dataset} split {split!r} have no feature file in "
                            f"{data.root / FEATURE_DIR} (first image ids: {missing[:5]}; e.g. the expression "
                            f"{' '.join(self.refs[where]['tokens'])!r} of {self.ref_files[where]}). Features are "
                            f"keyed by image_id, the integer after the last '_' of the .npz name (e.g. "
                            f"COCO_train2014_000000581857.jpg.npz); extract or download the missing ones, or drop "
                            f"those expressions. {VGD_GUIDE}")
        self.regions = RegionStore(index, max_regions, (int(r["image_id"]) for r in self.refs), preload, progress)

    @property
    def subsets(self) -> list[str | None]:
        """Each expression's optional 'subset' tag (the demo marks relation-ambiguous expressions)."""
        return [r.get("subset") for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.refs[i]
        reg = self.regions.get(int(r["image_id"]))
        gt = self.gt_boxes[i]
        score, deltas, mask = region_targets(reg["boxes"][:reg["count"]], gt, self.max_regions, self.score_loss)
        sample = {
            "index": torch.tensor(i),
            "text_ix": torch.from_numpy(self.meta.vocab.encode(r["tokens"], self.max_tokens)),
            "img_feat": torch.from_numpy(reg["feat"]),
            "img_rel": torch.from_numpy(reg["geometry"]),
            "score_target": torch.from_numpy(score),
            "box_target": torch.from_numpy(deltas),
            "box_mask": torch.from_numpy(mask),
            "gt_box": torch.from_numpy(gt.copy()),
            "region_box": torch.from_numpy(reg["boxes"]),
            "image_hw": torch.from_numpy(reg["image_hw"]),
        }
        if self.with_box_feature:
            sample["img_box_feat"] = torch.from_numpy(reg["box_feat"])
        return sample
