"""VQA training targets: the answer vocabulary and the soft answer scores, spec §3."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mmnas.evaluation.vqa_normalize import normalize_training_answer

# A pure function of the string, so a cache is exact. VQA v2's 4.4 M human training answers are a few hundred
# thousand distinct strings, most of them a handful of very frequent ones ("yes", "no", "2"): without the cache the
# normalisation was ~30 % of a packed-store sample's loading time. Forked DataLoader workers inherit the entries the
# vocabulary build made.
_normalize = functools.lru_cache(maxsize=1 << 17)(normalize_training_answer)

__all__ = [
    "MIN_COUNT_EXCLUSIVE",
    "build_answer_vocab",
    "answer_to_index",
    "occurrence_score",
    "answer_scores",
]

# An answer enters the vocabulary when it occurs MORE than this many times.
MIN_COUNT_EXCLUSIVE = 8

# Soft target for 0, 1, 2, 3 occurrences among the human answers; 4 or more -> 1.0.
_SCORES = (0.0, 0.3, 0.6, 0.9)


def build_answer_vocab(
    annotations: Iterable[Mapping[str, Any]], min_count_exclusive: int = MIN_COUNT_EXCLUSIVE
) -> list[str]:
    """Every normalised multiple_choice_answer occurring more than min_count_exclusive times.

    Order: first-seen order of the normalised answers over the annotations as
    given. This is the release's order (a dict filled while counting, then
    filtered), so feeding train then val annotations in file order reproduces
    the release's answer indices, which released checkpoints depend on.
    """
    counts: Counter[str] = Counter()  # Counter keeps first-insertion order.
    for k, ann in enumerate(annotations):
        if not isinstance(ann, Mapping) or "multiple_choice_answer" not in ann:
            raise TypeError(
                f"build_answer_vocab: item {k} is not an annotation dict with a "
                f"'multiple_choice_answer' (got {type(ann).__name__}); pass the list under the "
                f"'annotations' key of the official file, not the file's dict itself."
            )
        counts[_normalize(ann["multiple_choice_answer"])] += 1
    return [ans for ans, n in counts.items() if n > min_count_exclusive]


def answer_to_index(vocab: Sequence[str]) -> dict[str, int]:
    """Map each vocabulary answer to its position."""
    return {ans: i for i, ans in enumerate(vocab)}


def occurrence_score(count: int) -> float:
    """Soft score of an answer given by `count` of the human annotators (0, .3, .6, .9, 1)."""
    return _SCORES[count] if count < len(_SCORES) else 1.0


def answer_scores(answers: Sequence[str | Mapping[str, Any]], ans_to_ix: Mapping[str, int]) -> np.ndarray:
    """Soft target vector float32 [A] of one question from its human answers.

    Each human answer is normalised with normalize_training_answer; entry a is
    0, 0.3, 0.6, 0.9, 1.0 when a occurs 0, 1, 2, 3, >=4 times. Answers outside
    the vocabulary are ignored. Items may be strings or official answer dicts
    ({"answer": str, ...}).
    """
    counts: Counter[str] = Counter()
    for a in answers:
        text = a["answer"] if isinstance(a, Mapping) else a
        counts[_normalize(text)] += 1
    scores = np.zeros(len(ans_to_ix), dtype=np.float32)
    for ans, n in counts.items():
        ix = ans_to_ix.get(ans)
        if ix is not None:
            scores[ix] = occurrence_score(n)
    return scores
