"""VQA-v2 data in the release's layout (spec §6): question/annotation files, vocabularies, targets and samples."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmnas.data.answers import answer_scores, answer_to_index, build_answer_vocab
from mmnas.data.features import RegionStore, index_feature_dirs
from mmnas.data.text import Vocab, tokenize
from mmnas.errors import DATA_GUIDE, DataError

QUESTION_FILES = {
    "train": "v2_OpenEnded_mscoco_train2014_questions.json",
    "val": "v2_OpenEnded_mscoco_val2014_questions.json",
    "test": "v2_OpenEnded_mscoco_test2015_questions.json",
    "test-dev": "v2_OpenEnded_mscoco_test-dev2015_questions.json",
    "vg": "VG_questions.json",
}
ANNOTATION_FILES = {
    "train": "v2_mscoco_train2014_annotations.json",
    "val": "v2_mscoco_val2014_annotations.json",
    "vg": "VG_annotations.json",
}
FEATURE_DIRS = ("train2014", "val2014", "test2015")
FEATURE_ROOT = "bua-r101-max100"
VOCAB_SPLITS = ("train", "val", "test", "vg")  # the release's token statistics run over these question files


def _load_json(path: Path, key: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"missing VQA file {path}. {DATA_GUIDE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"VQA file {path} is not valid JSON ({e}); re-download or re-create it.") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"VQA file {path} must be an object with a list under {key!r} (the official format).")
    return data[key]


def split_names(split: str) -> list[str]:
    """'train+val+vg' → ['train', 'val', 'vg'], each checked."""
    names = [s for s in split.split("+") if s]
    for s in names:
        if s not in QUESTION_FILES:
            raise DataError(f"unknown VQA split {s!r} in {split!r}; valid parts: {', '.join(QUESTION_FILES)} "
                            f"(e.g. --SPLIT train+val+vg).")
    return names


@dataclass
class VQAMeta:
    """What a network trained on this data depends on: token vocabulary, answer list, word vectors."""

    vocab: Vocab
    answers: list[str]
    word_vectors: np.ndarray | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"vocab": self.vocab.fingerprint(), "vocab_size": len(self.vocab), "answers": list(self.answers)}


class VQAData:
    """One VQA tree: reads each question/annotation file once and builds the shared vocabularies."""

    def __init__(self, root: str | Path, answer_min_count: int = 8) -> None:
        self.root = Path(root)
        if not (self.root / "annotations").is_dir():
            raise DataError(f"VQA data tree {self.root} not found (no {self.root / 'annotations'} folder). "
                            f"{DATA_GUIDE}")
        self._questions: dict[str, list[dict]] = {}
        self._annotations: dict[str, list[dict]] = {}
        self.answer_min_count = answer_min_count
        self._feature_index: dict[int, str] | None = None

    def questions(self, split: str) -> list[dict]:
        if split not in self._questions:
            self._questions[split] = _load_json(self.root / "annotations" / QUESTION_FILES[split], "questions")
        return self._questions[split]

    def annotations(self, split: str) -> list[dict]:
        if split not in ANNOTATION_FILES:
            raise DataError(f"the VQA split {split!r} has no annotations (test questions are scored on EvalAI); "
                            f"train/evaluate on train, val or vg.")
        if split not in self._annotations:
            self._annotations[split] = _load_json(self.root / "annotations" / ANNOTATION_FILES[split], "annotations")
        return self._annotations[split]

    def build_meta(self) -> VQAMeta:
        """Token vocabulary over every question file present (train, val, test, vg: first-seen order), answer
        vocabulary over train+val annotations (normalised answers occurring more than `answer_min_count` times)."""
        token_lists = []
        for split in VOCAB_SPLITS:
            if (self.root / "annotations" / QUESTION_FILES[split]).is_file():
                token_lists.extend(tokenize(q["question"]) for q in self.questions(split))
        if not token_lists:
            raise DataError(f"no VQA question file found under {self.root / 'annotations'}. {DATA_GUIDE}")
        anns = self.annotations("train") + self.annotations("val")
        answers = build_answer_vocab(anns, self.answer_min_count)
        if not answers:
            raise DataError(f"no answer occurs more than {self.answer_min_count} times in {self.root}'s train+val "
                            f"annotations; lower data.answer_min_count for a tiny dataset.")
        return VQAMeta(Vocab.build(token_lists), answers)

    def feature_index(self) -> dict[int, str]:
        if self._feature_index is None:
            base = self.root / FEATURE_ROOT
            self._feature_index = index_feature_dirs(base / d for d in FEATURE_DIRS)
        return self._feature_index


class VQADataset(Dataset):
    """Samples of one split expression ('train+val', 'val', 'test', …) as dicts of tensors (DESIGN "Batch")."""

    def __init__(self, data: VQAData, split: str, meta: VQAMeta, max_tokens: int, max_regions: int,
                 preload: bool = False, progress: bool = True, with_box_feature: bool = False) -> None:
        self.data, self.split, self.meta = data, split, meta
        self.max_tokens = max_tokens
        self.with_box_feature = with_box_feature
        self.questions: list[dict] = []
        self.annotations: list[dict] | None = []
        for part in split_names(split):
            qs = data.questions(part)
            self.questions.extend(qs)
            if self.annotations is not None and part in ANNOTATION_FILES:
                anns = {a["question_id"]: a for a in data.annotations(part)}
                missing = [q["question_id"] for q in qs if q["question_id"] not in anns]
                if missing:
                    raise DataError(f"{data.root / 'annotations' / ANNOTATION_FILES[part]} has no annotation for "
                                    f"question id(s) {missing[:5]} of {QUESTION_FILES[part]}; the two files must "
                                    f"come from the same release.")
                self.annotations.extend(anns[q["question_id"]] for q in qs)
            else:
                self.annotations = None
        index = data.feature_index()
        missing_img = sorted({q["image_id"] for q in self.questions if q["image_id"] not in index})
        if missing_img:
            raise DataError(f"{len(missing_img)} image(s) of the VQA split {split!r} have no feature file under "
                            f"{data.root / FEATURE_ROOT}/{{{','.join(FEATURE_DIRS)}}} (first image ids: "
                            f"{missing_img[:5]}). Extract or download the bottom-up features "
                            f"(COCO_<split>_<id>.jpg.npz). {DATA_GUIDE}")
        self.regions = RegionStore(index, max_regions, (q["image_id"] for q in self.questions), preload, progress)
        self.ans_to_ix = answer_to_index(meta.answers)

    @property
    def has_targets(self) -> bool:
        return self.annotations is not None

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        q = self.questions[i]
        reg = self.regions.get(q["image_id"])
        sample = {
            "index": torch.tensor(i),
            "text_ix": torch.from_numpy(self.meta.vocab.encode(tokenize(q["question"]), self.max_tokens)),
            "img_feat": torch.from_numpy(reg["feat"]),
            "img_rel": torch.from_numpy(reg["geometry"]),
        }
        if self.with_box_feature:
            sample["img_box_feat"] = torch.from_numpy(reg["box_feat"])
        if self.annotations is not None:
            sample["target"] = torch.from_numpy(answer_scores(self.annotations[i]["answers"], self.ans_to_ix))
        return sample
