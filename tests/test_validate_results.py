"""VQA result files for EvalAI: every problem of a hand-made result list is named, and the phases a valid file fits
follow from the test split it answers (test2015: test-dev, test-standard, test-challenge; test-dev2015: test-dev)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmnas.evaluation.validate import main, validate_vqa_results
from mmnas.evaluation.vqa import ResultFileError

TEST_IDS = [10, 11, 12, 13, 14, 15]
DEV_IDS = [11, 13, 14]  # a subset of test2015, as the official test-dev2015


def questions(ids, subtype=None) -> dict:
    out = {"questions": [{"image_id": 100 + i, "question": f"what is {i}?", "question_id": i} for i in ids]}
    if subtype:
        out["data_subtype"] = subtype
    return out


def answers(ids) -> list[dict]:
    return [{"question_id": i, "answer": "yes"} for i in ids]


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    return (write(tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json", questions(TEST_IDS, "test2015")),
            write(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", questions(DEV_IDS, "test-dev2015")))


def test_complete_test2015_file_fits_every_phase():
    report = validate_vqa_results(answers(TEST_IDS[::-1]), questions(TEST_IDS, "test2015"))  # any order
    assert report.ok and report.phases == ("test-dev", "test-standard", "test-challenge"), report.summary()
    assert report.entries == report.questions == 6


def test_complete_test_dev_file_fits_test_dev_only():
    report = validate_vqa_results(answers(DEV_IDS), questions(DEV_IDS), split="test-dev")
    assert report.ok and report.phases == ("test-dev",) and report.split == "test-dev2015"


def test_test_dev_answers_checked_against_test2015_fit_test_dev_only():
    report = validate_vqa_results(answers(DEV_IDS), questions(TEST_IDS, "test2015"), test_dev=questions(DEV_IDS))
    assert report.ok and report.phases == ("test-dev",), report.summary()
    assert "test-standard and test-challenge need all 6" in report.notes[0]
    # Without the test-dev questions the same file is simply incomplete.
    incomplete = validate_vqa_results(answers(DEV_IDS), questions(TEST_IDS, "test2015"))
    assert not incomplete.ok and incomplete.missing == [10, 12, 15] and incomplete.phases == ()


def test_duplicates_missing_and_extra_ids_are_named():
    results = answers([10, 11, 11, 12, 13, 14, 99])  # 11 twice, 15 missing, 99 extra
    report = validate_vqa_results(results, questions(TEST_IDS, "test2015"))
    assert not report.ok and report.phases == ()
    assert report.duplicates == [11] and report.missing == [15] and report.extra == [99]
    text = report.summary()
    assert "INVALID: 3 problem(s)" in text and "answered more than once (11)" in text
    assert "1 question(s) of the questions list have no answer (15)" in text and "(99)" in text


def test_string_ids_and_non_string_answers_are_bad_entries():
    results = answers(TEST_IDS)
    results[0]["question_id"] = "10"
    results[1]["answer"] = 3
    results[2]["question_id"] = True  # json true is no question id
    del results[3]["answer"]
    report = validate_vqa_results(results, questions(TEST_IDS, "test2015"))
    assert not report.ok
    assert report.bad_entries == ["entry 0 has question_id '10' (str, not int)", "entry 1 has answer 3 (int, not str)",
                                  "entry 2 has question_id True (bool, not int)", "entry 3 has no answer"]
    assert report.missing == [10, 11, 12, 13]  # a bad entry answers nothing


def test_not_a_list_and_unknown_split():
    report = validate_vqa_results({"question_id": 10, "answer": "yes"}, questions(TEST_IDS))
    assert not report.ok and "is not a JSON list" in report.problems[0]
    unknown = validate_vqa_results(answers(TEST_IDS), questions(TEST_IDS))  # a bare list: no data_subtype, no name
    assert unknown.ok and unknown.split is None and unknown.phases == () and "cannot tell" in unknown.notes[0]
    told = validate_vqa_results(answers(TEST_IDS), questions(TEST_IDS), test_dev=questions(DEV_IDS))
    assert told.split == "test2015" and told.phases == ("test-dev", "test-standard", "test-challenge")


def test_test_dev_that_is_no_subset_is_a_problem():
    report = validate_vqa_results(answers(TEST_IDS), questions(TEST_IDS, "test2015"), test_dev=questions([11, 77]))
    assert not report.ok and "not a subset" in report.problems[0] and "(77)" in report.problems[0]


def test_bad_question_inputs_raise():
    with pytest.raises(ResultFileError, match="more than once"):
        validate_vqa_results([], {"questions": questions([1, 1])["questions"]})
    with pytest.raises(ResultFileError, match="integer question_id"):
        validate_vqa_results([], [{"question_id": "1"}])
    with pytest.raises(ResultFileError, match=r"holds no question list \(the official file is"):
        validate_vqa_results([], {"annotations": []})


def test_cli_verdicts_phases_and_exit_codes(files, tmp_path, capsys):
    test, dev = files
    good = write(tmp_path / "result_full.json", answers(TEST_IDS))
    assert main([str(good), "--questions", str(test)]) == 0
    out = capsys.readouterr().out
    assert "VALID: fits the EvalAI phase(s): test-dev, test-standard, test-challenge." in out

    dev_only = write(tmp_path / "result_dev.json", answers(DEV_IDS))
    assert main([str(dev_only), "--questions", str(test), "--test-dev", str(dev)]) == 0
    assert "phase(s): test-dev." in capsys.readouterr().out
    assert main([str(dev_only), "--questions", str(dev)]) == 0  # the split is read from the file's data_subtype
    assert "phase(s): test-dev." in capsys.readouterr().out

    assert main([str(good), "--questions", str(dev)]) == 1  # test2015 answers against test-dev questions
    out = capsys.readouterr().out
    assert "INVALID" in out and "validate against v2_OpenEnded_mscoco_test2015_questions.json" in out

    broken = tmp_path / "result_broken.json"
    broken.write_text('[{"question_id": 10, "answ')
    assert main([str(broken), "--questions", str(test)]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    assert main([str(good), "--questions", str(tmp_path / "nope.json")]) == 2
    assert "cannot read the questions file" in capsys.readouterr().err


def test_split_is_read_from_official_file_names(tmp_path):
    # Official names, no data_subtype key: the file name tells the split.
    test = write(tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json", questions(TEST_IDS))
    dev = write(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", questions(DEV_IDS))
    assert validate_vqa_results(answers(TEST_IDS), test).split == "test2015"
    assert validate_vqa_results(answers(DEV_IDS), dev).phases == ("test-dev",)


def test_task_result_file_is_validated_before_it_is_written(tmp_path):
    from mmnas.check_data import config_for
    from mmnas.demo.easyvqa import prepare_easyvqa
    from mmnas.errors import DataError
    from mmnas.tasks import get_task

    root = prepare_easyvqa(tmp_path / "easyvqa", limit=4, progress=False)
    task = get_task("vqa")(config_for("vqa", "easyvqa", str(root), ["run.run=test", "data.answer_min_count=1"]))
    task.prepare(need_vectors=False)
    dataset = task.dataset("test")
    evaluator = task.evaluator(dataset)
    evaluator.predictions = {i: 0 for i in range(len(dataset))}
    path = tmp_path / "result.json"
    task.write_results(evaluator, str(path))
    report = validate_vqa_results(path, root / "annotations" / "v2_OpenEnded_mscoco_test2015_questions.json")
    assert report.ok and report.phases == ("test-dev", "test-standard", "test-challenge")
    del evaluator.predictions[2]
    with pytest.raises(DataError, match=r"internal check failed.*1 question\(s\) of .* have no answer"):
        task.write_results(evaluator, str(tmp_path / "partial.json"))
    assert not (tmp_path / "partial.json").exists()
