"""Tests for the easy-VQA → VQA-v2 demo converter (spec §6 layout and formats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("easy_vqa")

from mmnas.demo import easyvqa  # noqa: E402

LIMIT = 3  # images per split: keeps the test well under a second

QUESTION_FILES = {
    "train2014": "v2_OpenEnded_mscoco_train2014_questions.json",
    "val2014": "v2_OpenEnded_mscoco_val2014_questions.json",
    "test2015": "v2_OpenEnded_mscoco_test2015_questions.json",
    "test-dev2015": "v2_OpenEnded_mscoco_test-dev2015_questions.json",
}
ANNOTATION_FILES = {
    "train2014": "v2_mscoco_train2014_annotations.json",
    "val2014": "v2_mscoco_val2014_annotations.json",
}
# Which feature folder / file prefix serves each question file.
FEATURE_OF = {
    "train2014": ("train2014", "COCO_train2014_"),
    "val2014": ("val2014", "COCO_val2014_"),
    "test2015": ("test2015", "COCO_test2015_"),
    "test-dev2015": ("test2015", "COCO_test2015_"),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return easyvqa.prepare_easyvqa(tmp_path_factory.mktemp("easyvqa"), progress=False, limit=LIMIT)


def _load(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _feature_path(root: Path, subtype: str, image_id: int) -> Path:
    folder, prefix = FEATURE_OF[subtype]
    return root / "bua-r101-max100" / folder / f"{prefix}{image_id:012d}.jpg.npz"


def test_layout(tree: Path) -> None:
    annotations = tree / "annotations"
    for name in [*QUESTION_FILES.values(), *ANNOTATION_FILES.values(), "VG_questions.json", "VG_annotations.json"]:
        assert (annotations / name).is_file(), name
    for folder in ("train2014", "val2014", "test2015"):
        files = sorted((tree / "bua-r101-max100" / folder).glob("*.npz"))
        assert len(files) == LIMIT, folder
    assert (tree / "DONE").read_text().startswith(easyvqa.VERSION)
    # No temporary files left behind by the atomic writes.
    assert not [p for p in tree.rglob("*") if ".tmp" in p.name]


def test_question_files(tree: Path) -> None:
    for subtype, name in QUESTION_FILES.items():
        data = _load(tree / "annotations" / name)
        assert data["data_subtype"] == subtype
        assert data["task_type"] == "Open-Ended" and data["data_type"] == "mscoco"
        assert isinstance(data["questions"], list) and data["questions"]
        for question in data["questions"]:
            assert set(question) == {"image_id", "question", "question_id"}
            assert type(question["image_id"]) is int and type(question["question_id"]) is int
            assert isinstance(question["question"], str) and question["question"].endswith("?")
            # Every question's image has a feature file.
            assert _feature_path(tree, subtype, question["image_id"]).is_file()


def test_annotation_files(tree: Path) -> None:
    answers = set(__import__("easy_vqa").get_answers())
    for subtype, name in ANNOTATION_FILES.items():
        annotations = _load(tree / "annotations" / name)["annotations"]
        questions = _load(tree / "annotations" / QUESTION_FILES[subtype])["questions"]
        assert [a["question_id"] for a in annotations] == [q["question_id"] for q in questions]
        assert [a["image_id"] for a in annotations] == [q["image_id"] for q in questions]
        for entry in annotations:
            assert set(entry) == {
                "question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer", "answers",
            }
            assert entry["multiple_choice_answer"] in answers
            expected_type = "yes/no" if entry["multiple_choice_answer"] in ("yes", "no") else "other"
            assert entry["answer_type"] == expected_type
            assert isinstance(entry["question_type"], str) and entry["question_type"]
            assert len(entry["answers"]) == 10
            assert [a["answer_id"] for a in entry["answers"]] == list(range(1, 11))
            for answer in entry["answers"]:
                assert set(answer) == {"answer", "answer_confidence", "answer_id"}
                assert answer["answer"] == entry["multiple_choice_answer"]
                assert answer["answer_confidence"] == "yes"


def test_vg_files_are_empty_but_well_formed(tree: Path) -> None:
    assert _load(tree / "annotations" / "VG_questions.json")["questions"] == []
    assert _load(tree / "annotations" / "VG_annotations.json")["annotations"] == []


def test_ids_unique_across_splits(tree: Path) -> None:
    train = _load(tree / "annotations" / QUESTION_FILES["train2014"])["questions"]
    val = _load(tree / "annotations" / QUESTION_FILES["val2014"])["questions"]
    question_ids = [q["question_id"] for q in train + val]
    assert len(question_ids) == len(set(question_ids))
    assert not {q["image_id"] for q in train} & {q["image_id"] for q in val}
    # The test files carry exactly the val (easy-VQA test) questions.
    for subtype in ("test2015", "test-dev2015"):
        assert _load(tree / "annotations" / QUESTION_FILES[subtype])["questions"] == val


def test_npz_contents(tree: Path) -> None:
    files = sorted((tree / "bua-r101-max100").rglob("*.npz"))
    assert files
    regions = 16  # default grid 4 x 4
    for path in files:
        with np.load(path, allow_pickle=False) as archive:
            assert set(archive.files) == {"x", "bbox", "image_h", "image_w", "num_bbox"}
            x, bbox = archive["x"], archive["bbox"]
            assert x.dtype == np.float32 and x.shape == (easyvqa.FEATURE_DIM, regions)  # [F, N]
            assert bbox.dtype == np.float32 and bbox.shape == (regions, 4)
            assert int(archive["image_h"]) == 64 and int(archive["image_w"]) == 64
            assert int(archive["num_bbox"]) == regions
        assert np.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 2.0
        assert (bbox >= 0).all() and (bbox[:, [0, 2]] <= 63).all() and (bbox[:, [1, 3]] <= 63).all()
        assert (bbox[:, 2] > bbox[:, 0]).all() and (bbox[:, 3] > bbox[:, 1]).all()
        # Every image holds one shape, so some cell must see foreground.
        assert x[easyvqa.FEATURE_NAMES.index("fg_frac")].max() > 0


def test_project_loader_reads_the_files(tree: Path) -> None:
    regions = pytest.importorskip("mmnas.data.regions")
    path = next((tree / "bua-r101-max100" / "train2014").glob("*.npz"))
    loaded = regions.load_region_npz(path)
    assert loaded["feat"].shape == (16, easyvqa.FEATURE_DIM)
    assert regions.image_id_from_filename(path.name) == int(path.name.split("_")[-1].split(".")[0])


def test_idempotent(tree: Path) -> None:
    files = [p for p in tree.rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    assert easyvqa.prepare_easyvqa(tree, progress=False, limit=LIMIT) == tree
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_deterministic(tmp_path: Path, tree: Path) -> None:
    other = easyvqa.prepare_easyvqa(tmp_path / "again", progress=False, limit=LIMIT)
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        assert (other / path.relative_to(tree)).read_bytes() == path.read_bytes(), path.name


def test_other_parameters_rebuild(tmp_path: Path) -> None:
    root = easyvqa.prepare_easyvqa(tmp_path, grid=2, progress=False, limit=1)
    path = next((root / "bua-r101-max100" / "train2014").glob("*.npz"))
    with np.load(path) as archive:
        assert archive["x"].shape == (easyvqa.FEATURE_DIM, 4)
        assert archive["bbox"][-1].tolist() == [32.0, 32.0, 63.0, 63.0]
    easyvqa.prepare_easyvqa(tmp_path, grid=4, progress=False, limit=1)
    with np.load(path) as archive:
        assert archive["x"].shape == (easyvqa.FEATURE_DIM, 16)


def test_bad_grid() -> None:
    with pytest.raises(ValueError):
        easyvqa.region_features(np.zeros((64, 64, 3), dtype=np.uint8), grid=3)


def test_question_type() -> None:
    assert easyvqa.question_type("what is the color of the shape?") == "what is the color of the"
    assert easyvqa.question_type("what is the blue shape?") == "what is the"
    assert easyvqa.question_type("what shape is in the image?") == "what shape"
    assert easyvqa.question_type("does the image not contain a gray shape?") == "does the image not contain a"
    assert easyvqa.question_type("is there not a blue shape?") == "is there not a"
    assert easyvqa.question_type("is a teal shape present?") == "is a"
    assert easyvqa.question_type("how many shapes are there?") == "how many shapes"


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert easyvqa.main(["--root", str(tmp_path / "cli"), "--limit", "1", "--quiet"]) == 0
    assert (tmp_path / "cli" / "DONE").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")


@pytest.mark.parametrize("generator", ["easyvqa", "shapes_vgd", "shapes_itm"])
def test_generator_cli_reports_an_unwritable_root_and_exits_2(generator: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Every demo generator ends as the project's other CLIs: one `error:` line naming the path, exit code 2."""
    import importlib
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    main = importlib.import_module(f"mmnas.demo.{generator}").main
    assert main(["--root", str(blocker / "root"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and str(blocker / "root") in captured.err
