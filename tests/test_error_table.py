"""docs/errors.md lists every user-facing error: each raise site of a UserError / ConfigError (or a subclass, or a
helper that builds one) in mmnas/, tools/ and the top-level scripts has a row naming its file and an exact phrase of
its message, and every row names a test that makes the error happen. `test_error_message[...]` are those tests for
the rows no other test covers: each triggers its error with a small input and checks the row's phrase is in the
message and that the error was raised in the row's file.

A row of docs/errors.md::

    | `mmnas/data/vqa.py` — when … | `exact phrase of the message` … | fix | `tests/<file>.py::<test>` |

Adding a raise site without a row (or changing a message so that no row's phrase is in it) fails
`test_every_raise_site_is_listed`, which prints the sites and the phrase to start from."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import pickle
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.helpers import REPO, SMALL_GENOTYPE

TABLE = REPO / "docs" / "errors.md"
ROOT_ERRORS = {"UserError", "ConfigError"}   # every user-facing error class derives from one of these


# -- raise sites in the source -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Site:
    file: str                 # relative to the repository, e.g. mmnas/data/vqa.py
    line: int
    error: str                # the class (or the helper building one) named at the raise
    fragments: tuple[str, ...]  # the literal text of the message, between its {placeholders}

    def render(self) -> str:
        return " … ".join(f for f in self.fragments if f.strip())


def source_files() -> list[Path]:
    files = [*sorted((REPO / "mmnas").rglob("*.py")), *sorted((REPO / "tools").rglob("*.py")),
             *sorted(REPO.glob("*.py"))]  # the top-level scripts
    return [f for f in files if "__pycache__" not in f.parts]


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def raise_sites() -> list[Site]:
    """Every `raise X(...)` where X is a user-facing error class of the project or a function annotated to return
    one (e.g. regions._file_error). Classes are found by their bases, so a new subclass is included by itself."""
    trees = {f: ast.parse(f.read_text(encoding="utf-8"), str(f)) for f in source_files()}
    classes, grew = set(ROOT_ERRORS), True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (isinstance(node, ast.ClassDef) and node.name not in classes
                        and {_name(b) for b in node.bases} & classes):
                    classes.add(node.name)
                    grew = True
    builders = {node.name for tree in trees.values() for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and node.returns is not None
                and (_name(node.returns) in classes
                     or (isinstance(node.returns, ast.Constant) and node.returns.value in classes))}
    sites = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                error = _name(node.exc.func)
                if error in classes or error in builders:
                    args = [*node.exc.args, *(k.value for k in node.exc.keywords)]
                    fragments = tuple(c.value for a in args for c in ast.walk(a)
                                      if isinstance(c, ast.Constant) and isinstance(c.value, str))
                    sites.append(Site(str(path.relative_to(REPO)), node.lineno, error, fragments))
    return sorted(sites, key=lambda s: (s.file, s.line))


# -- the table -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    line: int                 # in docs/errors.md
    file: str
    phrase: str
    tests: tuple[str, ...]    # tests/<file>.py::<name>[<param>]


def _ticks(cell: str) -> list[str]:
    return [t.replace("\\|", "|") for t in re.findall(r"`([^`]+)`", cell)]


def table_rows() -> list[Row]:
    rows = []
    for number, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith("| `"):
            continue  # prose, headers and separator lines
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == 4, f"docs/errors.md:{number}: a row needs 4 cells (where, message, fix, test): {line}"
        where, message = _ticks(cells[0]), _ticks(cells[1])
        assert where and message, f"docs/errors.md:{number}: the first two cells must start with a `code` span"
        rows.append(Row(number, where[0], message[0], tuple(t for t in _ticks(cells[3]) if "::" in t)))
    return rows


def _assign(sites: list[Site], rows: list[Row]) -> list[Site]:
    """Match each distinct message of a file to its own row whose phrase it contains (bipartite matching, so one
    vague row cannot stand for several errors); returns the messages left without a row."""
    messages = list(dict.fromkeys(s.fragments for s in sites))
    fits = {m: [r for r in rows if any(r.phrase in f for f in m)] for m in messages}
    owner: dict[Row, tuple[str, ...]] = {}

    def place(m: tuple[str, ...], seen: set) -> bool:
        for r in fits[m]:
            if r not in seen:
                seen.add(r)
                if r not in owner or place(owner[r], seen):
                    owner[r] = m
                    return True
        return False

    unplaced = {m for m in messages if not place(m, set())}
    return [s for s in sites if s.fragments in unplaced]


def test_every_raise_site_is_listed():
    sites, rows = raise_sites(), table_rows()
    assert len(sites) > 100  # the scan itself works
    missing = []
    for file in sorted({s.file for s in sites}):
        missing += _assign([s for s in sites if s.file == file], [r for r in rows if r.file == file])
    assert not missing, ("raise sites without their own row in docs/errors.md (add a row: `file` and an exact "
                         "phrase of the message):\n" + "\n".join(f"  {s.file}:{s.line} {s.error}: {s.render()}"
                                                                  for s in missing))


def test_every_row_names_a_raise_site_and_an_existing_test():
    sites, rows = raise_sites(), table_rows()
    stale = [f"docs/errors.md:{r.line}: no raise site in {r.file} has {r.phrase!r}" for r in rows
             if not any(s.file == r.file and any(r.phrase in f for f in s.fragments) for s in sites)]
    untested = [f"docs/errors.md:{r.line} ({r.file}: {r.phrase!r})" for r in rows if not r.tests]
    unknown = []
    for r in rows:
        for ref in r.tests:
            path, _, name = ref.partition("::")
            name, _, param = name.partition("[")
            source = (REPO / path).read_text(encoding="utf-8") if (REPO / path).is_file() else ""
            if not re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE):
                unknown.append(f"docs/errors.md:{r.line}: {ref} does not exist")
            elif path == "tests/test_error_table.py" and param and param.rstrip("]") not in CASES:
                unknown.append(f"docs/errors.md:{r.line}: {ref}: no such case in CASES")
    assert not stale and not untested and not unknown, "\n".join(stale + [f"no test: {u}" for u in untested]
                                                                 + unknown)


# -- triggers for the rows no other test covers --------------------------------------------------------------------
@dataclass
class Trees:
    vqa: Path
    vgd: Path
    itm: Path
    tmp: Path

    def copy(self, tree: Path) -> Path:
        root = self.tmp / "copy" / tree.name
        shutil.copytree(tree, root)
        return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Trees:
    from mmnas.demo.easyvqa import prepare_easyvqa
    from mmnas.demo.shapes_vgd import prepare_shapes_vgd
    from tests.itm_helpers import make_tree
    base = tmp_path_factory.mktemp("error_table")
    return Trees(prepare_easyvqa(base / "easyvqa", limit=2, progress=False),
                 prepare_shapes_vgd(base / "shapes_vgd", limit=1, progress=False),
                 make_tree(base / "shapes_itm", n_train=2, n_dev=1, n_test=1), base)  # tmp: each case's own


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vqa_args(t: Trees, root: Path, *extra: str) -> list[str]:
    arch = t.tmp / "small_arch.json"
    arch.write_text(json.dumps({"epoch0": SMALL_GENOTYPE}))
    return ["--DATASET", "easyvqa", "--NO_PROGRESS", "--NW", "0", "--BS", "8", f"data.root={root}",
            f"run.log_dir={t.tmp / 'logs'}", f"run.arch_dir={t.tmp / 'arch'}", "model.hidden_size=64",
            "model.flat_mlp_size=32", "data.answer_min_count=1", "--ARCH_PATH", str(arch), *extra]


def _cli_error(capsys, code: int) -> str:
    assert code == 2
    return capsys.readouterr().err


def _cfg(task: str, dataset: str, root: Path, *overrides: str):
    from mmnas.check_data import config_for
    return config_for(task, dataset, str(root), overrides)


def _vgd_split_file(t: Trees, entries) -> Path:
    from mmnas.data.vgd import VGDData
    root = t.copy(t.vgd)
    (root / "shapes" / "val.json").write_text(json.dumps(entries) if not isinstance(entries, str) else entries)
    VGDData(root, "shapes", ("train", "val", "testA", "testB")).refs("val")
    return root


def _vgd_entry(**changes) -> dict:
    entry = {"tokens": ["the", "red", "circle"], "image_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "height": 128,
             "width": 128}
    entry.update(changes)
    return entry


def _npz(path: Path, **arrays) -> Path:
    base = {"x": np.ones((6, 2), np.float32), "bbox": np.array([[0, 0, 4, 4], [1, 1, 5, 5]], np.float32),
            "image_h": np.int64(10), "image_w": np.int64(10), "num_bbox": np.int64(2)}
    base.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **base)
    return path


def _itm_task(t: Trees, root: Path, *overrides: str):
    from mmnas.tasks import get_task
    task = get_task("itm")(_cfg("itm", "shapes", root, f"itm.pack_dir={t.tmp / 'packed'}", *overrides))
    task.prepare(need_vectors=False)
    return task


def _vqa_eval(questions, annotations, results):
    from mmnas.evaluation.vqa import vqa_accuracy
    vqa_accuracy(questions, annotations, results)


ANSWERS = [{"answer": "yes"}] * 10
ANN = {"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": ANSWERS}


def case_config_file_missing(t, capsys):
    from mmnas.config import load_yaml
    load_yaml(t.tmp / "nope.yaml")


def case_config_file_not_mapping(t, capsys):
    from mmnas.config import load_yaml
    (t.tmp / "list.yaml").write_text("- a\n- b\n")
    load_yaml(t.tmp / "list.yaml")


def case_config_file_bad_yaml(t, capsys):
    from mmnas.config import load_yaml
    (t.tmp / "bad.yaml").write_text("optim: [1, 2\n")
    load_yaml(t.tmp / "bad.yaml")


def case_config_override_form(t, capsys):
    from mmnas.config import parse_override
    parse_override("optim.lr_base")


def case_config_invalid_value(t, capsys):
    from mmnas.config import build_config
    build_config("vqa", "train", overrides=["search.mode=sometimes"])


def case_config_section_value(t, capsys):
    from mmnas.config import build_config
    build_config("vqa", "train", overrides=["optim=3"])


def case_no_feature_file_for_image(t, capsys):
    from mmnas.data.features import RegionStore
    RegionStore({}, 4, []).get(7)


def case_itm_missing_split_file(t, capsys):
    from mmnas.data.itm import ITMData
    root = t.copy(t.itm)
    (root / "f30k_precomp" / "dev_ids.txt").unlink()
    ITMData(root).split("dev")


def case_itm_not_utf8(t, capsys):
    from mmnas.data.itm import ITMData
    root = t.copy(t.itm)
    (root / "f30k_precomp" / "dev_caps.txt").write_bytes(b"\xff\xfe caption\n" * 5)
    ITMData(root).split("dev")


def case_itm_unknown_layout(t, capsys):
    from mmnas.data.itm import ITMData
    ITMData(t.itm, "cc3m")


def case_itm_empty_id_lines(t, capsys):
    from mmnas.data.itm import ITMData
    root = t.copy(t.itm)
    (root / "f30k_precomp" / "train_ids.txt").write_text("0\n\n")  # two images, the second id empty
    ITMData(root).split("train")


def case_itm_no_caption_file(t, capsys):
    from mmnas.data.itm import ITMData
    (t.tmp / "itm_empty" / "f30k_precomp").mkdir(parents=True)
    ITMData(t.tmp / "itm_empty").build_meta()


def case_itm_bad_karpathy_json(t, capsys):
    from mmnas.data.itm import ITMData
    root = t.copy(t.itm)
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": [{"file": "x.jpg"}]}))
    ITMData(root).feature_index()


def case_itm_training_needs_two_images(t, capsys):
    from mmnas.data.itm import ITMData, ITMDataset
    from tests.itm_helpers import make_tree
    root = make_tree(t.tmp / "itm_one", n_train=1, n_dev=1, n_test=1)
    data = ITMData(root)
    ITMDataset(data, "train", data.build_meta(), 50, 8, t.tmp / "packed_one", negatives=True, progress=False)


def case_itm_pack_widths_differ(t, capsys):
    from mmnas.data.features import PackedRegions
    a = _npz(t.tmp / "a.npz")
    b = _npz(t.tmp / "b.npz", x=np.ones((5, 2), np.float32))
    PackedRegions([str(a), str(b)], 4, t.tmp / "pack_widths", "widths", progress=False)


def case_region_scalar_shape(t, capsys):
    from mmnas.data.regions import load_region_npz
    load_region_npz(_npz(t.tmp / "scalar.npz", image_h=np.array([10, 12])))


def case_word_vectors_source(t, capsys):
    from mmnas.data.text import Vocab, resolve_word_vectors
    resolve_word_vectors(Vocab.build([["red", "circle"]]), str(t.tmp / "no_such_glove.txt"))


def case_vgd_not_a_list(t, capsys):
    _vgd_split_file(t, {"refs": []})


def case_vgd_missing_keys(t, capsys):
    _vgd_split_file(t, [{"tokens": ["a"], "image_id": 1}])


def case_vgd_tokens_not_strings(t, capsys):
    _vgd_split_file(t, [_vgd_entry(tokens="the red circle")])


def case_vgd_bbox_not_four(t, capsys):
    _vgd_split_file(t, [_vgd_entry(bbox=[1, 2, 3])])


def case_vgd_non_numeric(t, capsys):
    _vgd_split_file(t, [_vgd_entry(width="wide")])


def case_vgd_unknown_dataset(t, capsys):
    from mmnas.data.vgd import VGDData
    VGDData(t.vgd, "refclef")


def case_vgd_empty_split_expression(t, capsys):
    from mmnas.data.vgd import VGDData
    VGDData(t.vgd, "shapes", ("train", "val", "testA", "testB")).split_names("+")


def case_vgd_bad_json(t, capsys):
    _vgd_split_file(t, "[{not json")


def case_vqa_not_official_format(t, capsys):
    from mmnas.data.vqa import VQAData
    root = t.copy(t.vqa)
    (root / "annotations" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text("[]")
    VQAData(root).questions("val")


def case_vqa_bad_json(t, capsys):
    from mmnas.data.vqa import VQAData
    root = t.copy(t.vqa)
    (root / "annotations" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text("{")
    VQAData(root).questions("val")


def case_vqa_unknown_split(t, capsys):
    from mmnas.data.vqa import split_names
    split_names("train+minival")


def case_vqa_test_has_no_annotations(t, capsys):
    from mmnas.data.vqa import VQAData
    VQAData(t.vqa).annotations("test")


def case_vqa_no_question_file(t, capsys):
    from mmnas.data.vqa import VQAData
    (t.tmp / "vqa_empty" / "annotations").mkdir(parents=True)
    VQAData(t.tmp / "vqa_empty").build_meta()


def case_vqa_empty_answer_vocabulary(t, capsys):
    from mmnas.data.vqa import VQAData
    VQAData(t.vqa, answer_min_count=10**6).build_meta()


def case_vqa_question_without_annotation(t, capsys):
    from mmnas.data.vqa import VQAData, VQADataset
    root = t.copy(t.vqa)
    path = root / "annotations" / "v2_mscoco_train2014_annotations.json"
    data = json.loads(path.read_text())
    data["annotations"] = data["annotations"][1:]
    path.write_text(json.dumps(data))
    vqa = VQAData(root, answer_min_count=1)
    VQADataset(vqa, "train", vqa.build_meta(), 14, 16, progress=False)


def case_checkpoint_newer_format(t, capsys):
    from mmnas.engine.checkpoint import load_checkpoint, save_checkpoint
    save_checkpoint(t.tmp / "future.pkl", {"format_version": 10**6, "task": "vqa", "stage": "train"})
    load_checkpoint(t.tmp / "future.pkl")


def case_checkpoint_other_stage(t, capsys):
    from mmnas.engine.checkpoint import load_checkpoint, save_checkpoint
    save_checkpoint(t.tmp / "search.pkl", {"task": "vqa", "stage": "search"})
    load_checkpoint(t.tmp / "search.pkl", "vqa", "train")


def case_search_with_run_val(t, capsys):
    from mmnas.cli import main
    return _cli_error(capsys, main("vqa", "search", _vqa_args(t, t.vqa, "--VERSION", "s1", "--RUN", "val")))


def case_search_split_too_small(t, capsys):
    from mmnas.cli import main
    return _cli_error(capsys, main("vqa", "search", _vqa_args(t, t.vqa, "--VERSION", "s2", "--BS", "1000")))


def case_val_split_without_ground_truth(t, capsys):
    from mmnas.cli import main
    assert main("vqa", "train", _vqa_args(t, t.vqa, "--VERSION", "t1", "optim.max_epoch=1",
                                          "run.eval_every_epoch=false")) == 0
    ckpt = t.tmp / "logs" / "ckpts" / "t1_epoch1.pkl"
    return _cli_error(capsys, main("vqa", "train", _vqa_args(t, t.vqa, "--VERSION", "t1v", "--RUN", "val",
                                                             "--CKPT_PATH", str(ckpt), "data.val_split=test")))


def case_scores_not_real(t, capsys):
    from mmnas.evaluation.retrieval import retrieval_metrics
    retrieval_metrics(np.array([["a"] * 5]))


def case_caption_image_out_of_range(t, capsys):
    from mmnas.evaluation.retrieval import i2t_ranks
    i2t_ranks(np.zeros((2, 2)), caption_image=np.array([0, 5]))


def case_image_without_caption(t, capsys):
    from mmnas.evaluation.retrieval import i2t_ranks
    i2t_ranks(np.zeros((2, 2)), caption_image=np.array([0, 0]))


def case_scores_npz(t, capsys):
    from mmnas.evaluation.retrieval import load_scores
    with open(t.tmp / "scores.npy", "wb") as f:
        np.savez(f, a=np.zeros((1, 5)), b=np.zeros(1))
    load_scores(t.tmp / "scores.npy")


def case_captions_per_image_flag(t, capsys):
    from mmnas.evaluation.retrieval import main
    np.save(t.tmp / "ok.npy", np.zeros((1, 5)))
    return _cli_error(capsys, main([str(t.tmp / "ok.npy"), "--captions-per-image", "0"]))


def case_scores_file_shape(t, capsys):
    from mmnas.evaluation.retrieval import main
    np.save(t.tmp / "folds.npy", np.zeros((3, 15)))
    return _cli_error(capsys, main([str(t.tmp / "folds.npy"), "--folds", "2"]))


def case_results_no_annotation_list(t, capsys):
    _vqa_eval([], [], [])


def case_results_duplicate_annotations(t, capsys):
    _vqa_eval([{"question_id": 1}], [ANN, ANN], [])


def case_results_no_question_list(t, capsys):
    _vqa_eval({"questions": []}, [ANN], [])


def case_results_not_a_list(t, capsys):
    _vqa_eval([{"question_id": 1}], [ANN], {"question_id": 1, "answer": "yes"})


def case_results_bad_annotation_entry(t, capsys):
    _vqa_eval([{"question_id": 1}], [{"question_id": 1}], [])


def case_results_no_human_answers(t, capsys):
    _vqa_eval([{"question_id": 1}], [dict(ANN, answers=[])], [])


def case_results_bad_question_entry(t, capsys):
    _vqa_eval([{"id": 1}], [ANN], [])


def case_arch_epoch_form(t, capsys):
    from mmnas.nas.genotype import epoch_key
    epoch_key("last")


def _arch(t: Trees, content) -> None:
    from mmnas.nas.genotype import read_arch_file
    path = t.tmp / "arch_case.json"
    path.write_text(json.dumps(content))
    read_arch_file(path)


def case_arch_not_object(t, capsys):
    _arch(t, [SMALL_GENOTYPE])


def case_arch_cells(t, capsys):
    _arch(t, {"epoch0": {"enc": [["self_att_64"]]}})


def case_arch_key_form(t, capsys):
    _arch(t, {"final": SMALL_GENOTYPE})


def case_arch_empty_cell(t, capsys):
    _arch(t, {"epoch0": {"enc": [], "dec": [["feed_forward"]]}})


def case_arch_empty_node(t, capsys):
    _arch(t, {"epoch0": {"enc": [[]], "dec": [["feed_forward"]]}})


def case_itm_config_value(t, capsys):
    from mmnas.tasks import get_task
    get_task("itm")(_cfg("itm", "shapes", t.itm, "itm.neg_hardsize=0"))


def case_itm_feat_size(t, capsys):
    _itm_task(t, t.itm, "model.feat_size=7").dataset("train")


def case_itm_no_scores(t, capsys):
    task = _itm_task(t, t.itm, "run.run=test")
    evaluator = task.evaluator(task.dataset("test"))
    task.write_results(evaluator, str(t.tmp / "result_itm.json"))


def case_itm_scores_shape(t, capsys):
    task = _itm_task(t, t.itm, "run.run=test")
    evaluator = task.evaluator(task.dataset("test"))
    evaluator.scores = np.zeros((3, 3), np.float32)
    task.write_results(evaluator, str(t.tmp / "result_itm.json"))


def case_vgd_task_unknown_dataset(t, capsys):
    from mmnas.tasks import get_task
    get_task("vgd")(_cfg("vgd", "shapes", t.vgd, "data.dataset=refclef")).prepare(need_vectors=False)


def case_vgd_results_incomplete(t, capsys):
    from mmnas.tasks import get_task
    task = get_task("vgd")(_cfg("vgd", "shapes", t.vgd, "run.run=test"))
    task.prepare(need_vectors=False)
    evaluator = task.evaluator(task.dataset("testA"))
    task.write_results(evaluator, str(t.tmp / "result_vgd.json"))


def case_convert_no_lstm(t, capsys):
    _tool("convert_release_ckpt").hidden_size_of({})


def case_convert_missing_input(t, capsys):
    _tool("convert_release_ckpt").read_release(t.tmp / "ckpt_nope.pkl")


def case_convert_no_state_dict(t, capsys):
    import torch
    torch.save({"epoch": 13}, t.tmp / "no_state.pkl")
    _tool("convert_release_ckpt").read_release(t.tmp / "no_state.pkl")


def case_refer_not_a_list(t, capsys):
    (t.tmp / "refs_dict.p").write_bytes(pickle.dumps({"refs": []}))
    _tool("refer_to_vgd").load_refs(t.tmp / "refs_dict.p")


def case_refer_instances_missing(t, capsys):
    _tool("refer_to_vgd").load_instances(t.tmp / "instances_nope.json")


def case_refer_instances_lists(t, capsys):
    (t.tmp / "instances_partial.json").write_text(json.dumps({"images": []}))
    _tool("refer_to_vgd").load_instances(t.tmp / "instances_partial.json")


def case_refer_unreadable(t, capsys):
    (t.tmp / "refs_empty.p").write_bytes(b"")
    _tool("refer_to_vgd").load_refs(t.tmp / "refs_empty.p")


def case_refer_missing_keys(t, capsys):
    (t.tmp / "refs_keys.p").write_bytes(pickle.dumps([{"ref_id": 1}]))
    _tool("refer_to_vgd").load_refs(t.tmp / "refs_keys.p")


def case_refer_instances_json(t, capsys):
    (t.tmp / "instances_bad.json").write_text("{")
    _tool("refer_to_vgd").load_instances(t.tmp / "instances_bad.json")


def case_refer_no_inputs(t, capsys):
    return _cli_error(capsys, _tool("refer_to_vgd").main(["--dataset", "refcoco"]))


def case_refer_sentence_tokens(t, capsys):
    ref = {"ref_id": 1, "ann_id": 1, "image_id": 1, "split": "train", "sentences": [{"sent": "a dog"}],
           "file_name": "x.jpg", "category_id": 1}
    instances = {"images": [{"id": 1, "height": 5, "width": 5}], "annotations": [{"id": 1, "bbox": [0, 0, 1, 1]}],
                 "categories": [{"id": 1, "name": "dog"}]}
    _tool("refer_to_vgd").convert([ref], instances, "unc")


def case_check_data_unknown_task(t, capsys):
    from mmnas.check_data import check_dataset
    cfg = _cfg("vqa", "easyvqa", t.vqa)
    cfg.task = "gqa"
    check_dataset(cfg)


def case_viz_argument_count(t, capsys):
    from mmnas.viz.__main__ import metrics_file
    metrics_file(["logs", "s1", "extra"])


def case_stability_empty_arch_file(t, capsys):
    from mmnas.nas.stability import load_runs
    full, empty = t.tmp / "full.json", t.tmp / "empty.json"
    full.write_text(json.dumps({"epoch0": SMALL_GENOTYPE}))
    empty.write_text("{}")
    load_runs([full, empty])


def case_stability_metrics_node_counts(t, capsys):
    from mmnas.nas.stability import mean_probs

    def metrics(name: str, enc_nodes: int) -> Path:
        probs = {"enc": [{"self_att_64": 0.5, "feed_forward": 0.5}] * enc_nodes,
                 "dec": [{"guided_att_64": 1.0}]}
        (t.tmp / name).write_text(json.dumps({"stage": "search", "epoch": 1, "probs": probs}) + "\n")
        return t.tmp / name
    mean_probs([metrics("metrics_a.jsonl", 1), metrics("metrics_b.jsonl", 2)])


def _compare(t: Trees, *argv: str):
    from mmnas.compare import build_parser, compare
    args, passthrough = build_parser().parse_known_args(["--task", "vqa", "--arch", "random", "--dry-run",
                                                         "--out", str(t.tmp / "cmp"), *argv])
    compare(args, passthrough)


def case_compare_no_arch_file(t, capsys):
    from mmnas.compare import parse_arch
    parse_arch("x=")


def case_compare_epoch_budget(t, capsys):
    _compare(t, "--epochs", "0")


def case_compare_rejected_arguments(t, capsys):
    _compare(t, "--BOGUS")


def case_compare_run_command(t, capsys):
    _compare(t, "--name=-x")  # --VERSION -x_random_s1 reads as a flag


CASES: dict[str, Callable] = {name[len("case_"):].replace("_", "-"): fn for name, fn in list(globals().items())
                              if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_message(case, trees, tmp_path, capsys):
    """The row(s) naming this case: their phrase is in the message, raised in their file as a user-facing error
    (or printed by the command line that catches it)."""
    from mmnas.config import ConfigError
    from mmnas.errors import UserError
    rows = [r for r in table_rows() if f"tests/test_error_table.py::test_error_message[{case}]" in r.tests]
    assert rows, f"no row of docs/errors.md names test_error_message[{case}]"
    try:
        printed = CASES[case](dataclasses.replace(trees, tmp=tmp_path), capsys)
    except (UserError, ConfigError) as e:
        message = str(e)
        frames = [f.filename for f in traceback.extract_tb(e.__traceback__)]
        for r in rows:
            assert frames[-1].endswith(r.file), f"raised in {frames[-1]}, the row says {r.file}"
    else:
        assert isinstance(printed, str) and printed.startswith("error: "), "the case raised no user-facing error"
        message = printed
    for r in rows:
        assert r.phrase in message, f"{r.phrase!r} not in: {message}"
