"""The official VQA accuracy (vqaEval.py of the VQA API) over question/annotation/result json structures and files, spec §7."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mmnas.errors import UserError
from mmnas.evaluation.vqa_normalize import normalize_prediction, process_punctuation

__all__ = [
    "ResultFileError",
    "question_accuracy",
    "vqa_accuracy",
    "evaluate_files",
    "main",
]

# Decimals of the reported percentages; the official VQAEval default n=2.
_PRECISION = 2
# How many ids an error message lists before it stops.
_SHOW_IDS = 5

_RESULT_FORMAT = 'a json list [{"question_id": int, "answer": str}, ...]'


class ResultFileError(UserError, ValueError):
    """An input of the VQA scorer (a file or its content) cannot be evaluated.

    The message is one paragraph naming the file, the problem and the fix.
    """


def question_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Accuracy in [0, 1] of one prediction against its human answers, as the official code computes it.

    Reproduced on purpose from the official vqaEval.py:
    * the prediction always gets newline/tab -> space, strip, the punctuation
      step and the digit/article step (the official code applies both
      unconditionally, before it looks at the human answers);
    * the human answers get only the punctuation step, and only when they are
      not all identical -- so an all-identical "hot-dog" is compared raw, and
      human answers never get lower-cased or have number words mapped;
    * leave-one-out: for each human answer, min(1, matches among the others / 3),
      then the plain mean. The official code picks "the others" by comparing
      whole answer dicts; in the official files every dict carries a distinct
      answer_id, so that is the same as leaving out by position, which is what
      is done here (files without answer_id are then not scored 0).
    The float operations follow the official order so that sums agree bit for bit.
    """
    if len(human_answers) == 0:
        raise ValueError("question_accuracy needs at least one human answer")
    pred = normalize_prediction(prediction)
    if len(set(human_answers)) > 1:
        gts = [process_punctuation(a) for a in human_answers]
    else:
        gts = list(human_answers)
    is_match = [g == pred for g in gts]
    total = sum(is_match)
    per_left_out = [min(1, float(total - own) / 3) for own in is_match]
    return float(sum(per_left_out)) / len(per_left_out)


def _percent(values: list[float]) -> float:
    # Exactly the official expression: round(100*float(sum(accs))/len(accs), n).
    return round(100 * float(sum(values)) / len(values), _PRECISION)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _show(ids: Sequence[Any]) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:_SHOW_IDS])
    more = len(ids) - _SHOW_IDS
    return shown + (f" and {more} more" if more > 0 else "")


def _vqa_accuracy(
    questions: Any,
    annotations: Any,
    results: Any,
    names: tuple[str, str, str],
) -> dict[str, Any]:
    q_name, a_name, r_name = names

    # ---- annotations: one entry per question, in file order (the official
    # scorer iterates annotation order, which fixes the float summation order).
    if not isinstance(annotations, list) or not annotations:
        raise ResultFileError(
            f"{_cap(a_name)} holds no annotation list: expected a non-empty list of "
            f"annotation dicts (the official file is {{\"annotations\": [...]}}). Fix: pass the "
            f"v2_mscoco_<split>_annotations.json of the split the results were made for."
        )
    ann_by_id: dict[Any, Mapping[str, Any]] = {}
    dup_ann: list[Any] = []
    for k, ann in enumerate(annotations):
        if not isinstance(ann, Mapping) or not all(
            key in ann for key in ("question_id", "question_type", "answer_type", "answers")
        ):
            raise ResultFileError(
                f"{_cap(a_name)}: entry {k} is not an annotation dict with question_id, "
                f"question_type, answer_type and answers. Fix: pass an official VQA annotation "
                f"file (v2_mscoco_<split>_annotations.json)."
            )
        answers = ann["answers"]
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, Mapping) and isinstance(a.get("answer"), str) for a in answers)
        ):
            raise ResultFileError(
                f"{_cap(a_name)}: question {ann['question_id']!r} has no list of "
                f"{{\"answer\": str, ...}} human answers. Fix: pass an official VQA annotation "
                f"file with its 10 human answers per question (test annotations are not public; "
                f"score test results on EvalAI)."
            )
        qid = ann["question_id"]
        if qid in ann_by_id:
            dup_ann.append(qid)
        ann_by_id[qid] = ann
    if dup_ann:
        raise ResultFileError(
            f"{_cap(a_name)} lists question ids more than once ({_show(dup_ann)}). "
            f"Fix: pass an unmodified official annotation file, or de-duplicate it."
        )

    # ---- questions: the official API loads them alongside; here they only
    # guard against pairing the annotations with another split's questions.
    if not isinstance(questions, list):
        raise ResultFileError(
            f"{_cap(q_name)} holds no question list: expected a list of question dicts "
            f"(the official file is {{\"questions\": [...]}}). Fix: pass the "
            f"v2_OpenEnded_mscoco_<split>_questions.json of the annotations' split."
        )
    question_ids = set()
    for k, q in enumerate(questions):
        if not isinstance(q, Mapping) or "question_id" not in q:
            raise ResultFileError(
                f"{_cap(q_name)}: entry {k} is not a question dict with a question_id. "
                f"Fix: pass an official VQA questions file."
            )
        question_ids.add(q["question_id"])
    unasked = [qid for qid in ann_by_id if qid not in question_ids]
    if unasked:
        raise ResultFileError(
            f"{_cap(q_name)} lacks {len(unasked)} question id(s) of {a_name} "
            f"({_show(unasked)}). Fix: pass the questions file of the same split as the "
            f"annotations."
        )

    # ---- results: like the official loadRes, exactly the annotated ids.
    if not isinstance(results, list):
        raise ResultFileError(
            f"{_cap(r_name)} is not {_RESULT_FORMAT}. Fix: write the results in the "
            f"EvalAI format, one entry per question."
        )
    pred_by_id: dict[Any, str] = {}
    dup_res: list[Any] = []
    for k, res in enumerate(results):
        if (
            not isinstance(res, Mapping)
            or not isinstance(res.get("question_id"), int)
            or isinstance(res.get("question_id"), bool)
            or not isinstance(res.get("answer"), str)
        ):
            raise ResultFileError(
                f"{_cap(r_name)}: entry {k} ({res!r:.80}) is not {{\"question_id\": int, "
                f"\"answer\": str}}. Fix: write {_RESULT_FORMAT} with integer question ids and "
                f"string answers."
            )
        qid = res["question_id"]
        if qid in pred_by_id:
            dup_res.append(qid)
        pred_by_id[qid] = res["answer"]
    if dup_res:
        raise ResultFileError(
            f"{_cap(r_name)} answers question ids more than once ({_show(dup_res)}). "
            f"Fix: write exactly one answer per question of {a_name}."
        )
    missing = [qid for qid in ann_by_id if qid not in pred_by_id]
    extra = [qid for qid in pred_by_id if qid not in ann_by_id]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} annotated question id(s) have no answer ({_show(missing)})")
        if extra:
            parts.append(f"{len(extra)} answered question id(s) are not annotated ({_show(extra)})")
        raise ResultFileError(
            f"{_cap(r_name)} does not correspond to {a_name}: "
            + " and ".join(parts)
            + ". Like the official VQA API, every annotated question needs exactly one answer "
            "and nothing else. Fix: evaluate against the annotation file of the split the "
            "results were made for, with results covering all of its questions."
        )

    # ---- scoring, in annotation order.
    acc_all: list[float] = []
    acc_ques_type: dict[str, list[float]] = {}
    acc_ans_type: dict[str, list[float]] = {}
    for qid, ann in ann_by_id.items():
        acc = question_accuracy(pred_by_id[qid], [a["answer"] for a in ann["answers"]])
        acc_all.append(acc)
        acc_ques_type.setdefault(ann["question_type"], []).append(acc)
        acc_ans_type.setdefault(ann["answer_type"], []).append(acc)
    return {
        "overall": _percent(acc_all),
        "perAnswerType": {k: _percent(v) for k, v in acc_ans_type.items()},
        "perQuestionType": {k: _percent(v) for k, v in acc_ques_type.items()},
    }


def vqa_accuracy(
    questions: list[dict], annotations: list[dict], results: list[dict]
) -> dict[str, Any]:
    """Official VQA accuracy in percent, rounded as the official code rounds.

    Returns {"overall": float, "perAnswerType": {type: float},
    "perQuestionType": {type: float}} (type dicts in first-seen order).
    Raises ResultFileError when the results do not cover exactly the annotated
    question ids (missing, extra or duplicate ids) or an input is malformed.
    """
    return _vqa_accuracy(
        questions,
        annotations,
        results,
        ("the questions list", "the annotations list", "the results list"),
    )


def _load_json(path: str, role: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ResultFileError(
            f"Cannot read {role} file {path!r}: {e.strerror or e}. Fix: check the path "
            f"and that the file is readable."
        ) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultFileError(
            f"The {role} file {path!r} is not valid json ({e}). Fix: regenerate the file "
            f"(a truncated write is the usual cause) or point to the right file."
        ) from e


def _unwrap(data: Any, key: str) -> Any:
    # Official files wrap their lists ({"questions": [...]}, {"annotations": [...]});
    # a bare list is accepted too.
    if isinstance(data, Mapping) and key in data:
        return data[key]
    return data


def evaluate_files(questions_path: str, annotations_path: str, results_path: str) -> dict[str, Any]:
    """vqa_accuracy over the official questions/annotations json files and an EvalAI result file."""
    questions = _unwrap(_load_json(str(questions_path), "questions"), "questions")
    annotations = _unwrap(_load_json(str(annotations_path), "annotations"), "annotations")
    results = _load_json(str(results_path), "results")
    names = (
        f"questions file {str(questions_path)!r}",
        f"annotations file {str(annotations_path)!r}",
        f"results file {str(results_path)!r}",
    )
    return _vqa_accuracy(questions, annotations, results, names)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the accuracy of a result file as one json object; exit 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python3 -m mmnas.evaluation.vqa",
        description="Official VQA accuracy (VQA API vqaEval.py) of a result file.",
    )
    parser.add_argument("questions", help="v2_OpenEnded_mscoco_<split>_questions.json")
    parser.add_argument("annotations", help="v2_mscoco_<split>_annotations.json")
    parser.add_argument("results", help='result json: [{"question_id": int, "answer": str}, ...]')
    args = parser.parse_args(argv)
    try:
        accuracy = evaluate_files(args.questions, args.annotations, args.results)
    except ResultFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(accuracy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
