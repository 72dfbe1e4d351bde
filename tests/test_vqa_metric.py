"""Tests of the official VQA normalisation and accuracy (spec §7), with hand-computed values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmnas.evaluation.vqa import (
    ResultFileError,
    evaluate_files,
    main,
    question_accuracy,
    vqa_accuracy,
)
from mmnas.evaluation.vqa_normalize import (
    CONTRACTIONS,
    normalize_prediction,
    process_digit_article,
    process_punctuation,
)

REPO = Path(__file__).resolve().parents[1]

# Written out here (not imported) so that a change to the module's list fails.
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
         ">", "<", "@", "`", ",", "?", "!"]


# --------------------------------------------------------------------------
# punctuation step


@pytest.mark.parametrize("p", PUNCT)
def test_punct_replaced_by_space_when_not_next_to_space(p):
    assert process_punctuation(f"a{p}b") == "a b"
    # every occurrence, not only the first
    assert process_punctuation(f"a{p}b{p}c") == "a b c"


@pytest.mark.parametrize("p", PUNCT)
def test_punct_deleted_when_next_to_space(p):
    # space before or after somewhere in the original text -> all occurrences deleted
    assert process_punctuation(f"a {p}b") == "a b"
    assert process_punctuation(f"a{p} b") == "a b"
    assert process_punctuation(f"x{p}y {p}z") == "xy z"


@pytest.mark.parametrize("p", PUNCT)
def test_digit_comma_digit_deletes_every_punct(p):
    # a digit-comma-digit anywhere deletes all punctuation characters
    assert process_punctuation(f"a{p}b 1,000") == "ab 1000"


def test_punct_rule_is_per_character():
    # "," stands before a space -> deleted; "-" never touches a space -> space
    assert process_punctuation("red-blue, green") == "red blue green"
    assert process_punctuation("1,5") == "15"
    assert process_punctuation("(1,5)") == "15"
    # comma not between digits, no space: becomes a space
    assert process_punctuation("a,b") == "a b"


def test_non_listed_chars_untouched():
    # apostrophe, colon, asterisk, hash are not in the official list
    assert process_punctuation("don't:*#") == "don't:*#"


def test_period_rules():
    assert process_punctuation("mr. t") == "mr t"
    assert process_punctuation("3.5") == "3.5"  # period before a digit kept
    assert process_punctuation(".5") == ".5"
    assert process_punctuation("5.") == "5"
    assert process_punctuation("a.5.b") == "a.5b"


def test_period_cap_of_32_replacements():
    # re.UNICODE (32) lands in sub()'s count argument in the official code
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("." * 32) == ""
    assert normalize_prediction("yes" + "." * 33) == "yes."


# --------------------------------------------------------------------------
# digit/article step


def test_number_words():
    words = "none zero one two three four five six seven eight nine ten eleven"
    assert process_digit_article(words) == "0 0 1 2 3 4 5 6 7 8 9 10 eleven"
    assert process_digit_article("Two Dogs") == "2 dogs"


def test_articles_dropped():
    assert process_digit_article("The cat") == "cat"
    assert process_digit_article("an apple a day") == "apple day"
    assert process_digit_article("A") == ""
    assert process_digit_article("theatre another") == "theatre another"


def test_whitespace_collapsed():
    assert process_digit_article("  big   red\tbus ") == "big red bus"


def test_contractions():
    assert process_digit_article("dont") == "don't"
    assert process_digit_article("Dont know") == "don't know"
    assert process_digit_article("oclock") == "o'clock"
    assert process_digit_article("yall'll") == "y'all'll"
    assert process_digit_article("twas") == "'twas"
    # quirks of the official table kept on purpose
    assert process_digit_article("somebody'd") == "somebodyd"
    assert process_digit_article("Im") == "im"  # capital key never matches
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["Ive"] == "I've"
    assert CONTRACTIONS["wouldn'tve"] == "wouldn't've"


def test_normalize_prediction_full_chain():
    assert normalize_prediction("\tThe Two\ndogs. ") == "2 dogs"
    assert normalize_prediction("hot-dog") == "hot dog"
    assert normalize_prediction("1,000") == "1000"
    assert normalize_prediction("Yes!") == "yes"


# --------------------------------------------------------------------------
# per-question accuracy


@pytest.mark.parametrize(
    "k,expected",
    [
        # k of 10 answers match. Leave out a matching one: (k-1) others match;
        # leave out a non-matching one: k others match; each term min(1, m/3).
        (0, 0.0),
        (1, 0.3),  # (1*0 + 9*(1/3)) / 10 = 0.3
        (2, 0.6),  # (2*(1/3) + 8*(2/3)) / 10 = 6/10
        (3, 0.9),  # (3*(2/3) + 7*1) / 10 = 9/10
        (4, 1.0),  # (4*1 + 6*1) / 10
        (10, 1.0),
    ],
)
def test_leave_one_out(k, expected):
    answers = ["cat"] * k + ["dog"] * (10 - k)
    assert question_accuracy("cat", answers) == pytest.approx(expected, abs=1e-12)


def test_gt_processed_only_when_not_all_identical():
    # All identical: the human answers stay raw "hot-dog" while the prediction
    # becomes "hot dog" -> no match at all.
    assert question_accuracy("hot-dog", ["hot-dog"] * 10) == 0.0
    # One differing answer: all human answers get the punctuation step,
    # "hot-dog" -> "hot dog", 9 matches -> every leave-one-out term is 1.
    assert question_accuracy("hot-dog", ["hot-dog"] * 9 + ["sausage"]) == 1.0


def test_gt_gets_only_punctuation_step():
    # human answers are never lower-cased nor have number words mapped
    assert question_accuracy("Yes", ["Yes"] * 5 + ["no"] * 5) == 0.0
    assert question_accuracy("two", ["two"] * 5 + ["3"] * 5) == 0.0
    assert question_accuracy("two", ["2"] * 5 + ["3"] * 5) == 1.0


# --------------------------------------------------------------------------
# aggregation


def _ann(qid, answers, qtype="what is", atype="other"):
    return {
        "question_id": qid,
        "image_id": 1,
        "question_type": qtype,
        "answer_type": atype,
        "multiple_choice_answer": answers[0],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, a in enumerate(answers)],
    }


def _questions(anns):
    return [{"question_id": a["question_id"], "image_id": 1, "question": "?"} for a in anns]


def _dataset():
    anns = [
        _ann(1, ["yes"] * 10, "is the", "yes/no"),                    # pred yes -> 1.0
        _ann(2, ["2"] * 2 + ["3"] * 8, "how many", "number"),         # pred two -> 0.6
        _ann(3, ["red"] * 3 + ["blue"] * 7, "what color", "other"),   # pred red -> 0.9
        _ann(4, ["no"] * 10, "is the", "yes/no"),                     # pred yes -> 0.0
    ]
    res = [
        {"question_id": 1, "answer": "yes"},
        {"question_id": 2, "answer": "two"},
        {"question_id": 3, "answer": "red"},
        {"question_id": 4, "answer": "yes"},
    ]
    return _questions(anns), anns, res


def test_aggregation_and_rounding():
    qs, anns, res = _dataset()
    acc = vqa_accuracy(qs, anns, res)
    # overall 100*(1 + .6 + .9 + 0)/4 = 62.5
    assert acc["overall"] == 62.5
    assert acc["perAnswerType"] == {"yes/no": 50.0, "number": 60.0, "other": 90.0}
    assert acc["perQuestionType"] == {"is the": 50.0, "how many": 60.0, "what color": 90.0}
    assert list(acc) == ["overall", "perAnswerType", "perQuestionType"]


def test_rounding_two_decimals():
    anns = [_ann(i, ["a1"] * 10) for i in range(3)]
    res = [{"question_id": 0, "answer": "a1"}] + [{"question_id": i, "answer": "zz"} for i in (1, 2)]
    assert vqa_accuracy(_questions(anns), anns, res)["overall"] == 33.33  # 100/3
    res[1]["answer"] = "a1"
    assert vqa_accuracy(_questions(anns), anns, res)["overall"] == 66.67  # 200/3


def test_rounding_is_pythons_round_on_the_float():
    # one question at 0.9 among 16: 100*0.9/16 = 5.625 exactly in binary;
    # the official round(x, 2) gives 5.62 (half-up decimal rounding would give 5.63)
    anns = [_ann(0, ["x"] * 3 + ["y"] * 7)] + [_ann(i, ["x"] * 10) for i in range(1, 16)]
    res = [{"question_id": 0, "answer": "x"}] + [{"question_id": i, "answer": "n"} for i in range(1, 16)]
    assert vqa_accuracy(_questions(anns), anns, res)["overall"] == 5.62


def test_inputs_not_mutated():
    qs, anns, res = _dataset()
    anns[2]["answers"][0]["answer"] = "re-d"
    before = json.dumps(anns)
    vqa_accuracy(qs, anns, res)
    assert json.dumps(anns) == before


# --------------------------------------------------------------------------
# errors


def test_missing_question_id():
    qs, anns, res = _dataset()
    with pytest.raises(ResultFileError, match=r"1 annotated question id\(s\) have no answer \(4\)"):
        vqa_accuracy(qs, anns, res[:3])


def test_extra_question_id():
    qs, anns, res = _dataset()
    with pytest.raises(ResultFileError, match=r"are not annotated \(99\)"):
        vqa_accuracy(qs, anns, res + [{"question_id": 99, "answer": "x"}])


def test_duplicate_question_id():
    qs, anns, res = _dataset()
    with pytest.raises(ResultFileError, match=r"more than once \(2\)"):
        vqa_accuracy(qs, anns, res + [{"question_id": 2, "answer": "x"}])


def test_bad_result_entry():
    qs, anns, res = _dataset()
    res[0] = {"question_id": "1", "answer": "yes"}
    with pytest.raises(ResultFileError, match="integer question ids"):
        vqa_accuracy(qs, anns, res)


def test_questions_of_another_split():
    qs, anns, res = _dataset()
    with pytest.raises(ResultFileError, match="same split"):
        vqa_accuracy(qs[:2], anns, res)


def test_result_file_error_is_value_error():
    assert issubclass(ResultFileError, ValueError)


# --------------------------------------------------------------------------
# files and CLI


def _write(tmp_path, qs, anns, res):
    q, a, r = tmp_path / "q.json", tmp_path / "a.json", tmp_path / "r.json"
    q.write_text(json.dumps({"questions": qs}))
    a.write_text(json.dumps({"annotations": anns}))
    r.write_text(json.dumps(res))
    return str(q), str(a), str(r)


def _cli(*args):
    # Only two tests start a subprocess (importing the package costs ~2 s each).
    return subprocess.run(
        [sys.executable, "-m", "mmnas.evaluation.vqa", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_evaluate_files(tmp_path):
    paths = _write(tmp_path, *_dataset())
    assert evaluate_files(*paths)["overall"] == 62.5


def test_cli_prints_json(tmp_path):
    paths = _write(tmp_path, *_dataset())
    proc = _cli(*paths)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {
        "overall": 62.5,
        "perAnswerType": {"yes/no": 50.0, "number": 60.0, "other": 90.0},
        "perQuestionType": {"is the": 50.0, "how many": 60.0, "what color": 90.0},
    }


def test_cli_missing_id_exits_2(tmp_path):
    qs, anns, res = _dataset()
    paths = _write(tmp_path, qs, anns, res[1:])
    proc = _cli(*paths)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "r.json" in proc.stderr and "have no answer (1)" in proc.stderr
    assert "Fix:" in proc.stderr


def test_cli_duplicate_id_exits_2(tmp_path, capsys):
    # in-process (main() is the CLI) to keep the suite fast
    qs, anns, res = _dataset()
    paths = _write(tmp_path, qs, anns, res + [res[0]])
    assert main(list(paths)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "r.json" in captured.err and "more than once (1)" in captured.err


def test_bad_json_exits_2(tmp_path, capsys):
    q, a, r = _write(tmp_path, *_dataset())
    Path(r).write_text('[{"question_id": 1, "answer": "yes"')
    assert main([q, a, r]) == 2
    err = capsys.readouterr().err
    assert "r.json" in err and "not valid json" in err and "Fix:" in err


def test_missing_file_exits_2(tmp_path, capsys):
    q, a, r = _write(tmp_path, *_dataset())
    assert main([q, str(tmp_path / "nope.json"), r]) == 2
    err = capsys.readouterr().err
    assert "nope.json" in err and "Cannot read annotations file" in err
