"""Validation of a VQA result file before it goes to EvalAI (spec §7): exactly one `{"question_id": int, "answer":
str}` per question of the test file, and the challenge phases the file fits.

The official VQA-v2 test questions: `test2015` (v2_OpenEnded_mscoco_test2015_questions.json) holds every test
question; `test-dev2015` (…_test-dev2015_questions.json) is a subset of it. A file answering all of test2015 fits
the test-dev, test-standard and test-challenge phases (EvalAI scores each phase on its own part); a file answering
only the test-dev questions fits test-dev alone.

Command line::

    python3 -m mmnas.evaluation.validate RESULTS.json --questions QUESTIONS.json [--test-dev QUESTIONS_DEV.json]

prints the verdict and the phases; exit 0 when the file is valid, 1 when it is not, 2 when an input cannot be read.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmnas.evaluation.vqa import ResultFileError

__all__ = ["PHASES", "ResultsReport", "main", "validate_vqa_results"]

TEST = "test2015"
TEST_DEV = "test-dev2015"
# EvalAI phases a complete answer file of each official question file fits.
PHASES: dict[str, tuple[str, ...]] = {TEST: ("test-dev", "test-standard", "test-challenge"), TEST_DEV: ("test-dev",)}
SPLIT_NAMES = {"test": TEST, TEST: TEST, "test-dev": TEST_DEV, TEST_DEV: TEST_DEV}  # the project's --RUN test splits
SHOW = 5  # ids or entries a message lists before it stops


@dataclass
class ResultsReport:
    """The verdict on one result list: what it covers, what is wrong, and the EvalAI phases it fits."""

    questions_source: str
    split: str | None                    # test2015 | test-dev2015 | another split name | None (unknown)
    questions: int                       # questions the results must answer
    entries: int                         # entries of the result list
    bad_entries: list[str] = field(default_factory=list)   # "entry k: why"
    duplicates: list[int] = field(default_factory=list)    # question ids answered more than once
    missing: list[int] = field(default_factory=list)       # question ids without an answer
    extra: list[int] = field(default_factory=list)         # answered ids that are not questions of the file
    problems: list[str] = field(default_factory=list)      # one sentence each
    notes: list[str] = field(default_factory=list)
    phases: tuple[str, ...] = ()                           # EvalAI phases the file fits (empty when invalid)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (f"{self.entries} result entries for the {self.questions} questions of {self.questions_source}"
                f"{f' ({self.split})' if self.split else ''}")
        lines = [head]
        if self.ok:
            phases = (f"fits the EvalAI phase(s): {', '.join(self.phases)}" if self.phases else
                      "fits the given questions; EvalAI phase unknown")
            lines.append(f"VALID: {phases}.")
        else:
            lines.append(f"INVALID: {len(self.problems)} problem(s); EvalAI would refuse or mis-score it.")
            lines += [f"  - {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _show(items: Sequence[Any]) -> str:
    items = list(items)
    return ", ".join(repr(i) for i in items[:SHOW]) + (", …" if len(items) > SHOW else "")


def _load(source: Any, role: str) -> tuple[Any, str]:
    """A json value and a name for messages: `source` is a path or the value itself."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, encoding="utf-8") as f:
                return json.load(f), str(source)
        except OSError as e:
            raise ResultFileError(f"cannot read the {role} file {str(source)!r}: {e.strerror or e}. Fix: check the "
                                  f"path and that the file is readable.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultFileError(f"the {role} file {str(source)!r} is not valid JSON ({e}). Fix: regenerate it "
                                  f"(a truncated write is the usual cause) or point to the right file.") from None
    return source, f"the {role} list"


def _question_ids(source: Any, role: str) -> tuple[list[int], str, str | None]:
    """The question ids of a questions file or list ({"questions": [...]} or a bare list), the name for messages and
    the file's own split name (the official files say it under 'data_subtype')."""
    data, name = _load(source, role)
    subtype = data.get("data_subtype") if isinstance(data, Mapping) else None
    qs = data.get("questions") if isinstance(data, Mapping) else data
    if not isinstance(qs, list):
        raise ResultFileError(f"{name} holds no question list (the official file is {{\"questions\": [...]}}). "
                              f"Fix: pass v2_OpenEnded_mscoco_test2015_questions.json or its test-dev2015 subset.")
    ids = []
    for k, q in enumerate(qs):
        qid = q.get("question_id") if isinstance(q, Mapping) else None
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise ResultFileError(f"{name}: entry {k} is not a question with an integer question_id. Fix: pass an "
                                  f"official VQA questions file.")
        ids.append(qid)
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise ResultFileError(f"{name} lists question ids more than once ({_show(dups)}). Fix: pass an unmodified "
                              f"official questions file.")
    return ids, name, subtype if isinstance(subtype, str) else None


def _split_of(name: str, subtype: str | None, hint: str | None) -> str | None:
    if hint:
        return SPLIT_NAMES.get(hint, hint)
    if subtype:
        return SPLIT_NAMES.get(subtype, subtype)
    base = os.path.basename(name)
    for split in (TEST_DEV, TEST):
        if f"_{split}_" in base:  # v2_OpenEnded_mscoco_<split>_questions.json
            return split
    return None


def validate_vqa_results(results: Any, questions: Any, test_dev: Any = None,
                         split: str | None = None) -> ResultsReport:
    """Check that `results` (a result list or its file) answers every question of `questions` (a questions list,
    {"questions": [...]} or its file) exactly once, with int ids and str answers, and say which EvalAI phases it
    fits. `test_dev` (the test-dev2015 questions, optional) lets a test2015 check accept a file that answers exactly
    the test-dev questions (it then fits test-dev only) and tells the two files apart when their names do not.
    `split` names the questions' split when the caller knows it ('test' / 'test2015', 'test-dev' / 'test-dev2015').
    Unreadable question inputs raise ResultFileError; everything wrong with the results is in the report."""
    qids, q_name, subtype = _question_ids(questions, "questions")
    dev_ids: set[int] | None = None
    if test_dev is not None:
        dev_list, dev_name, _ = _question_ids(test_dev, "test-dev questions")
        dev_ids = set(dev_list)
    kind = _split_of(q_name, subtype, split)
    q_set = set(qids)
    if kind is None and dev_ids is not None:
        kind = TEST_DEV if q_set == dev_ids else TEST if dev_ids < q_set else None
    report = ResultsReport(q_name, kind, len(qids), 0)
    if dev_ids is not None and kind == TEST and not dev_ids <= q_set:
        report.problems.append(f"the test-dev questions ({dev_name}) are not a subset of {q_name}: "
                               f"{len(dev_ids - q_set)} of them are missing there ({_show(sorted(dev_ids - q_set))}); "
                               f"pass the official test2015 and test-dev2015 files.")

    try:
        data, r_name = _load(results, "results")
    except ResultFileError as e:
        report.problems.append(str(e))
        return report
    if not isinstance(data, list):
        report.problems.append(f"{r_name} is not a JSON list of {{\"question_id\": int, \"answer\": str}} (found "
                               f"{type(data).__name__}); EvalAI needs exactly that list.")
        return report
    report.entries = len(data)
    answered: list[int] = []
    for k, r in enumerate(data):
        if not isinstance(r, Mapping):
            report.bad_entries.append(f"entry {k} is a {type(r).__name__}, not an object")
            continue
        qid, answer = r.get("question_id"), r.get("answer")
        why = []
        if "question_id" not in r:
            why.append("has no question_id")
        elif not isinstance(qid, int) or isinstance(qid, bool):
            why.append(f"has question_id {qid!r} ({type(qid).__name__}, not int)")
        if "answer" not in r:
            why.append("has no answer")
        elif not isinstance(answer, str):
            why.append(f"has answer {answer!r} ({type(answer).__name__}, not str)")
        if why:
            report.bad_entries.append(f"entry {k} {' and '.join(why)}")
        else:
            answered.append(qid)
    counts = Counter(answered)
    report.duplicates = sorted(i for i, n in counts.items() if n > 1)
    ans_set = set(counts)
    target, target_name, dev_only = q_set, q_name, False
    if dev_ids is not None and kind == TEST and ans_set == dev_ids and ans_set != q_set:
        # Only the test-dev part answered: a valid test-dev submission, and nothing else.
        target, target_name, dev_only = dev_ids, dev_name, True
        report.notes.append(f"the file answers only the {len(dev_ids)} test-dev questions of test2015: it fits the "
                            f"test-dev phase only; test-standard and test-challenge need all {len(q_set)} test2015 "
                            f"questions answered.")
    report.missing = sorted(target - ans_set)
    report.extra = sorted(ans_set - target)

    if report.bad_entries:
        n = len(report.bad_entries)
        report.problems.append(f"{n} entr{'y' if n == 1 else 'ies'} of {r_name} not of the form "
                               f"{{\"question_id\": int, \"answer\": str}}: {'; '.join(report.bad_entries[:SHOW])}"
                               f"{'; …' if len(report.bad_entries) > SHOW else ''}.")
    if report.duplicates:
        report.problems.append(f"{len(report.duplicates)} question id(s) are answered more than once "
                               f"({_show(report.duplicates)}); give exactly one answer per question.")
    if report.missing:
        report.problems.append(f"{len(report.missing)} question(s) of {target_name} have no answer "
                               f"({_show(report.missing)}); answer every question of the test file.")
    if report.extra:
        hint = (" If these are test2015 results, validate against v2_OpenEnded_mscoco_test2015_questions.json."
                if kind == TEST_DEV else "")
        report.problems.append(f"{len(report.extra)} answered question id(s) are not questions of {target_name} "
                               f"({_show(report.extra)}): results of another split or file.{hint}")
    if report.ok:
        if dev_only:
            report.phases = PHASES[TEST_DEV]
        elif kind in PHASES:
            report.phases = PHASES[kind]
        elif kind is None:
            report.notes.append("cannot tell whether the questions are test2015 or test-dev2015 (no data_subtype, "
                                "file name or --test-dev): pass the official file, or --test-dev.")
        else:
            report.notes.append(f"{kind!r} is no VQA-v2 test split; EvalAI takes test2015 or test-dev2015 results.")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the verdict on a result file; exit 0 valid, 1 invalid, 2 unreadable question input."""
    parser = argparse.ArgumentParser(
        prog="python3 -m mmnas.evaluation.validate",
        description="Check a VQA result file for EvalAI: one {question_id: int, answer: str} per question of the "
                    "test file, and the challenge phases it fits.")
    parser.add_argument("results", help='result json: [{"question_id": int, "answer": str}, ...]')
    parser.add_argument("--questions", required=True,
                        help="the questions the results answer: v2_OpenEnded_mscoco_test2015_questions.json "
                             "(or test-dev2015)")
    parser.add_argument("--test-dev", dest="test_dev",
                        help="v2_OpenEnded_mscoco_test-dev2015_questions.json: accept a file answering test-dev only")
    args = parser.parse_args(argv)
    try:
        report = validate_vqa_results(Path(args.results), Path(args.questions),
                                      Path(args.test_dev) if args.test_dev else None)
    except ResultFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
