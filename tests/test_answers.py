"""Tests of the VQA training targets (spec §3): answer normalisation, vocabulary and soft scores."""

from __future__ import annotations

import numpy as np
import pytest

from mmnas.data.answers import (
    answer_scores,
    answer_to_index,
    build_answer_vocab,
    occurrence_score,
)
from mmnas.evaluation.vqa_normalize import normalize_training_answer


def test_training_normalisation():
    # punctuation step: "," before a space -> deleted, "!" -> space; then digits/articles
    assert normalize_training_answer("Two, Dogs!") == "2 dogs"
    assert normalize_training_answer("1,000") == "1000"
    assert normalize_training_answer("a,b") == "b"  # "a b" -> article "a" dropped
    assert normalize_training_answer("The hot-dog.") == "hot dog"
    assert normalize_training_answer("dont know") == "don't know"


def _anns(mc_answers):
    return [{"question_id": i, "multiple_choice_answer": a} for i, a in enumerate(mc_answers)]


def test_vocab_threshold_is_exclusive_and_normalised():
    # "two"/"2"/"Two" all normalise to "2": 9 in total -> kept (> 8);
    # "cat" 8 times -> dropped; "yes" 9 times -> kept.
    mc = ["yes"] * 9 + ["cat"] * 8 + ["two"] * 3 + ["2"] * 3 + ["Two"] * 3
    assert build_answer_vocab(_anns(mc)) == ["yes", "2"]


def test_vocab_first_seen_order():
    mc = ["b"] * 9 + ["rare"] + ["A dog"] * 9 + ["b"] + ["c"] * 9
    assert build_answer_vocab(_anns(mc)) == ["b", "dog", "c"]
    assert build_answer_vocab(_anns(mc), min_count_exclusive=9) == ["b"]
    assert build_answer_vocab(iter(_anns(mc)), min_count_exclusive=0) == ["b", "rare", "dog", "c"]


def test_vocab_rejects_wrapper_dict():
    with pytest.raises(TypeError, match="annotations"):
        build_answer_vocab({"annotations": []})


@pytest.mark.parametrize("n,expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_occurrence_score(n, expected):
    assert occurrence_score(n) == expected


def test_answer_scores():
    ans_to_ix = answer_to_index(["yes", "2", "red", "blue"])
    assert ans_to_ix == {"yes": 0, "2": 1, "red": 2, "blue": 3}
    # "two" x2 + "2" x2 -> "2" four times -> 1.0; "Red!" -> "red" ("!" becomes a
    # space, then lower-case), so "red" counts 4 -> 1.0; "blue" once -> 0.3;
    # "green" is out of the vocabulary -> ignored; "yes" absent -> 0.
    answers = ["two", "two", "2", "2", "red", "red", "red", "Red!", "blue", "green"]
    scores = answer_scores(answers, ans_to_ix)
    assert scores.dtype == np.float32
    assert scores.shape == (4,)
    np.testing.assert_array_equal(scores, np.array([0.0, 1.0, 1.0, 0.3], dtype=np.float32))


def test_answer_scores_levels_and_dict_items():
    ans_to_ix = answer_to_index(["a1", "b2", "c3", "d4"])
    answers = ["a1"] + ["b2"] * 2 + ["c3"] * 3 + ["zz"] * 4
    scores = answer_scores([{"answer": a, "answer_id": i} for i, a in enumerate(answers)], ans_to_ix)
    np.testing.assert_array_equal(scores, np.array([0.3, 0.6, 0.9, 0.0], dtype=np.float32))
