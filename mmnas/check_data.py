"""The data checker: validates a VQA, VGD or ITM data tree in the formats of spec §6 before a long run, and reports
every problem found (file, what is wrong, how to fix it) instead of stopping at the first one.

Command line::

    python3 -m mmnas.check_data --task vqa|vgd|itm [--DATASET name] [--root PATH] [--full] [--sample K]
                                [--max-problems N] [section.key=value ...]

Exit code 0: no problem; 1: problems (listed); 2: bad command line or config.

Two depths. The default ("cheap") reads every question / expression / caption file of the tree, checks that every
image they name has a feature file (one directory listing per feature folder, no per-file stat) and opens an
evenly spread sample of K feature files; ``--full`` opens every referenced feature file. ``quick_check(cfg)`` is
the check a run makes before it starts: only the splits that run reads, a small sample, and the data objects the
task has already read (nothing is read twice).

The readers are the project's own (mmnas.data.vqa / vgd / itm / regions): the checker sees the files exactly as a
run would, and adds what a run does not look at (duplicate ids, split leakage, box and width checks of every
opened file). Problem kinds (``Problem.kind``):

=============================  =========================================================================
missing-file                   a split / annotation / id-map file the configured run needs is absent
bad-file                       a json or text file the project's reader refuses (format, JSON, keys)
bad-entry                      entries of a question / annotation file with a missing or mistyped key
split-file                     ITM caption / id files that disagree (counts, per-caption ids)
missing-feature                images named by a split file that have no feature file
bad-feature                    a feature file the region reader refuses (not .npz, keys, shapes)
feature-dtype                  ``x`` is not floating point
feature-width                  features per region differ from ``model.feat_size`` (or between files)
num-bbox                       ``num_bbox`` differs from the number of boxes / regions
no-regions                     a feature file with zero regions
non-finite                     NaN or infinite values in ``x`` or ``bbox``
feature-box-outside-image      region boxes of a feature file outside its ``image_w`` × ``image_h``
image-size                     image size of a feature file not positive, or (VGD) not the split file's
box-outside-image              (VGD) ground-truth boxes outside their image
duplicate-question-id          a question id twice in one file, or in two parts of one training split
duplicate-annotation           an annotation question id twice in one file
annotation-without-question    annotations whose question id is not in the matching question file
question-without-annotation    questions of an annotated split without an annotation
annotation-image-mismatch      an annotation's image_id differs from its question's
split-leakage                  ids (VQA question ids; VGD / ITM image ids) of an evaluation split also in
                               the training split
duplicate-image-id             (ITM) an image listed twice in one split
unknown-id                     (ITM) image ids of a split missing from Karpathy's json
answer-vocabulary              (VQA) no answer occurs more than ``data.answer_min_count`` times
empty-split                    a split file with no entries
=============================  =========================================================================
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmnas.config import Config, ConfigError, build_config
from mmnas.errors import DataError, UserError

DEFAULT_SAMPLE = 64        # feature files opened by the cheap check of the command line
QUICK_SAMPLE = 8           # feature files opened by the check a run makes before it starts
SHOW_IDS = 5               # ids a problem message lists before it stops
BOX_TOLERANCE = 1.0        # pixels a box may stick out of its image (as mmnas.data.vgd: float boxes round up)


# -- report --------------------------------------------------------------------------------------------------------
@dataclass
class Problem:
    """One problem: its kind, the file at fault, what is wrong and how to fix it; `count` items are affected."""

    kind: str
    file: str
    message: str
    count: int = 1

    def __str__(self) -> str:
        return f"[{self.kind}] {self.file}: {self.message}"


@dataclass
class Report:
    """What a check looked at (per split: its file, items, images, images with a feature file) and what it found."""

    task: str
    dataset: str
    root: str
    mode: str = "cheap"                                              # cheap | full | quick
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split name → counts and its file
    feature_files: int = 0                                           # distinct feature files referenced and found
    files_opened: int = 0
    notes: list[str] = field(default_factory=list)                   # facts worth knowing that are not problems
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, file: str | Path, message: str, count: int = 1) -> None:
        self.problems.append(Problem(kind, str(file), message, count))

    def kinds(self) -> Counter:
        """Affected items per problem kind."""
        out: Counter = Counter()
        for p in self.problems:
            out[p.kind] += p.count
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "dataset": self.dataset, "root": self.root, "mode": self.mode,
                "splits": self.splits, "feature_files": self.feature_files, "files_opened": self.files_opened,
                "notes": list(self.notes), "problems_by_kind": dict(self.kinds()),
                "problems": [vars(p) for p in self.problems]}

    def summary(self, max_problems: int = 20) -> str:
        """The printed report: counts per split, notes, problems by kind and the first `max_problems` problems."""
        head = (f"data check of {self.task} --DATASET {self.dataset} under {self.root} ({self.mode}: "
                f"{self.files_opened} of {self.feature_files} feature files opened)")
        lines = [head]
        if self.splits:
            width = max(len(s) for s in self.splits)
            for name, s in self.splits.items():
                lines.append(f"  {name:<{width}}  {s['items']:>8} {s['unit']:<11} {s['images']:>7} images  "
                             f"{s['with_features']:>7} with a feature file   {s['file']}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.ok:
            lines.append("OK: no problem found.")
            return "\n".join(lines)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds().items()))
        lines.append(f"PROBLEMS: {len(self.problems)} ({kinds})")
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  … and {len(self.problems) - max_problems} more (--max-problems N shows more).")
        return "\n".join(lines)

    def raise_if_problems(self, max_problems: int = 3) -> None:
        """A DataError naming the first problems and the command that lists them all (for a run's start)."""
        if self.ok:
            return
        first = "; ".join(str(p) for p in self.problems[:max_problems])
        more = f" (and {len(self.problems) - max_problems} more)" if len(self.problems) > max_problems else ""
        raise DataError(f"the data check found {len(self.problems)} problem(s) in {self.root}: {first}{more}. List "
                        f"them all with: python3 -m mmnas.check_data --task {self.task} --DATASET {self.dataset} "
                        f"--root {self.root}; fix the files it names before a long run.")


def _show(ids: Iterable[Any]) -> str:
    ids = list(ids)
    head = ", ".join(repr(i) for i in ids[:SHOW_IDS])
    return head + (", …" if len(ids) > SHOW_IDS else "")


# -- feature files -------------------------------------------------------------------------------------------------
def _npy_dtypes(path: str) -> dict[str, np.dtype]:
    """dtype of each array of an .npz from its header only (no data read); {} when unreadable (the reader says why)."""
    out: dict[str, np.dtype] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in ("x", "bbox"):
                with archive.open(f"{name}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    out[name] = read(f)[2]
    except Exception:  # any failure here is reported by load_region_npz with its own message
        return {}
    return out


def _sample(paths: Sequence[str], k: int) -> list[str]:
    """k paths spread evenly over the sorted list (first and last included): deterministic, and not only the
    files of one folder or one extraction batch."""
    paths = sorted(paths)
    if k <= 0 or k >= len(paths):
        return paths
    picks = np.linspace(0, len(paths) - 1, k).round().astype(int)
    return [paths[i] for i in sorted(set(picks.tolist()))]


def _check_feature_files(report: Report, cfg: Config, paths: Sequence[str], sample: int | None,
                         expected_size: dict[str, tuple[float, float, str]] | None = None,
                         progress: bool = False) -> None:
    """Open `paths` (all of them when `sample` is None) with the project's region reader and check each file's
    dtype, width, region count, boxes and values; `expected_size` maps a path to the (width, height) a split file
    gives its image (VGD)."""
    from mmnas.data.regions import RegionFileError, load_region_npz

    chosen = list(paths) if sample is None else _sample(paths, sample)
    report.files_opened = len(chosen)
    feat_size, max_regions = cfg.model.feat_size, cfg.data.max_regions
    widths: dict[int, list[str]] = {}
    cut = 0
    if progress:
        from tqdm import tqdm
        chosen = tqdm(chosen, desc="opening feature files", unit="file", leave=False)
    for path in chosen:
        try:
            npz = load_region_npz(path)
        except RegionFileError as e:
            report.add("bad-feature", path, str(e))
            continue
        dtypes = _npy_dtypes(path)
        if "x" in dtypes and dtypes["x"].kind != "f":
            report.add("feature-dtype", path, f"'x' has dtype {dtypes['x']}, not floating point: the features were "
                                              f"saved as integers or objects. Re-extract them as float32.")
        feat, boxes = npz["feat"], npz["bbox"]                         # [N,F], [N,4]
        n = len(boxes)
        widths.setdefault(feat.shape[1], []).append(path)
        if npz["num_bbox"] != n:
            report.add("num-bbox", path, f"num_bbox is {npz['num_bbox']} but 'bbox' and 'x' hold {n} regions. "
                                         f"Re-extract this file (it was truncated or edited by hand).")
        if n == 0:
            report.add("no-regions", path, "the file holds no region: every question on this image would attend "
                                           "to padding only. Re-extract it with at least one region.")
        cut += n > max_regions
        if not (np.isfinite(feat).all() and np.isfinite(boxes).all()):
            report.add("non-finite", path, "'x' or 'bbox' holds NaN or infinite values. Re-extract this file.")
            continue
        w, h = npz["image_w"], npz["image_h"]
        if w <= 0 or h <= 0:
            report.add("image-size", path, f"image_w × image_h is {w} × {h}; both must be positive (the image's "
                                           f"size in pixels). Re-extract this file.")
            continue
        bad = ((boxes[:, 0] < -BOX_TOLERANCE) | (boxes[:, 1] < -BOX_TOLERANCE) | (boxes[:, 2] > w + BOX_TOLERANCE)
               | (boxes[:, 3] > h + BOX_TOLERANCE) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            report.add("feature-box-outside-image", path,
                       f"{int(bad.sum())} of its {n} region boxes lie outside its {w}x{h} image or have x2 < x1 / "
                       f"y2 < y1 (first: region {i}, box {boxes[i].tolist()} as x1, y1, x2, y2). Boxes must be in "
                       f"pixels of the image whose size the file stores; re-extract it.", int(bad.sum()))
        if expected_size and path in expected_size:
            ew, eh, source = expected_size[path]
            if (ew, eh) != (w, h):
                report.add("image-size", path, f"the file's image is {w}x{h} but {source} gives its image as "
                                               f"{ew:g}x{eh:g}: the features come from another image or scale. "
                                               f"Use features extracted from the images the split file describes.")
    if cut:
        report.notes.append(f"{cut} opened feature file(s) hold more than data.max_regions = {max_regions} regions; "
                            f"the extra regions are dropped (spec §6: features are cut to N)")
    for width, files in sorted(widths.items(), key=lambda kv: -len(kv[1])):
        if width != feat_size:
            report.add("feature-width", files[0],
                       f"this and {len(files) - 1} other opened feature file(s) have {width} features per region but "
                       f"model.feat_size is {feat_size}. Set model.feat_size={width} if every file of the tree has "
                       f"{width}, else re-extract the odd ones: every file must come from the same extractor.",
                       len(files))


# -- helpers shared by the tasks -----------------------------------------------------------------------------------
def _split_row(report: Report, name: str, file: Path | str, items: int, unit: str, images: set,
               index: dict) -> None:
    report.splits[name] = {"file": str(file), "items": items, "unit": unit, "images": len(images),
                           "with_features": sum(1 for i in images if i in index)}


def _missing_features(report: Report, file: Path | str, images: Iterable[Any], index: dict, where: str) -> None:
    missing = sorted({i for i in images if i not in index}, key=str)
    if missing:
        report.add("missing-feature", file, f"{len(missing)} image(s) named here have no feature file in {where} "
                                            f"(image ids: {_show(missing)}). Extract or download their features, or "
                                            f"drop the entries that name them.", len(missing))


def _leakage(report: Report, train_ids: dict[str, set], eval_ids: dict[str, set], what: str, files: dict[str, Any],
             fix: str) -> None:
    """ids of each evaluation split also in a training part: an evaluation that would score training data."""
    for ev, ids in eval_ids.items():
        for tr, tids in train_ids.items():
            both = ids & tids
            if both:
                report.add("split-leakage", files[ev],
                           f"{len(both)} {what} of the evaluation split {ev!r} are also in the training split {tr!r} "
                           f"({files[tr]}): {_show(sorted(both, key=str))}. {fix}", len(both))


def _task_meta(task: str):
    from mmnas.tasks import get_task
    return get_task(task)


# -- VQA ----------------------------------------------------------------------------------------------------------
def _check_vqa(report: Report, cfg: Config, splits: Sequence[str] | None, data: Any, sample: int | None,
               answers: bool, progress: bool) -> None:
    from mmnas.data.answers import build_answer_vocab
    from mmnas.data.vqa import ANNOTATION_FILES, FEATURE_DIRS, FEATURE_ROOT, QUESTION_FILES, VQAData, split_names

    if data is None:
        try:
            data = VQAData(cfg.data.root, cfg.data.answer_min_count)
        except DataError as e:
            report.add("missing-file", Path(cfg.data.root) / "annotations", str(e))
            return
    ann_dir = data.root / "annotations"
    train_parts = split_names(cfg.data.train_split)
    configured = set(train_parts) | set(split_names(cfg.data.val_split)) | set(split_names(cfg.data.test_split))
    wanted = list(splits) if splits is not None else [s for s in QUESTION_FILES
                                                      if s in configured or (ann_dir / QUESTION_FILES[s]).is_file()]
    questions: dict[str, list[dict]] = {}
    for split in wanted:
        path = ann_dir / QUESTION_FILES[split]
        try:
            questions[split] = data.questions(split)
        except DataError as e:
            report.add("missing-file" if not path.is_file() else "bad-file", path, str(e))
    index = data.feature_index()
    folders = f"{data.root / FEATURE_ROOT}/{{{','.join(FEATURE_DIRS)}}}"
    qids: dict[str, set] = {}
    image_of: dict[str, dict] = {}   # split → question id → image id
    referenced: set = set()
    for split, qs in questions.items():
        path = ann_dir / QUESTION_FILES[split]
        cols, bad, _ = _columns(qs, {"question_id": int, "image_id": int, "question": str})
        if bad:
            report.add("bad-entry", path, f"{len(bad)} question(s) lack an integer question_id, an integer image_id "
                                          f"or a string question (entries {_show(bad)}). Use the official file "
                                          f"({{\"questions\": [{{\"image_id\", \"question\", \"question_id\"}}]}}).",
                       len(bad))
        counts = Counter(cols["question_id"])
        dups = [i for i, n in counts.items() if n > 1]
        if dups:
            report.add("duplicate-question-id", path, f"{len(dups)} question id(s) occur more than once "
                                                      f"({_show(dups)}). Question ids must be unique; use an "
                                                      f"unmodified official file or de-duplicate it.", len(dups))
        qids[split] = set(counts)
        image_of[split] = dict(zip(cols["question_id"], cols["image_id"]))
        images = set(cols["image_id"])
        if not qs and split != "vg":  # the VG files may be empty (the demo writes empty ones): they add nothing
            report.add("empty-split", path, "the file holds no question. Re-download or re-create it.")
        _split_row(report, split, path, len(qs), "questions", images, index)
        _missing_features(report, path, images, index, f"{folders} (COCO_<split>_<image id>.jpg.npz)")
        referenced |= {index[i] for i in images if i in index}

    # annotations: one per question of the same split, same image
    for split in [s for s in questions if s in ANNOTATION_FILES]:
        path = ann_dir / ANNOTATION_FILES[split]
        needed = split in train_parts or split in split_names(cfg.data.val_split)
        if not path.is_file() and not needed:
            continue
        try:
            anns = data.annotations(split)
        except DataError as e:
            report.add("missing-file" if not path.is_file() else "bad-file", path, str(e))
            continue
        cols, bad, kept = _columns(anns, {"question_id": int, "multiple_choice_answer": str, "answers": list})
        if bad:
            report.add("bad-entry", path, f"{len(bad)} annotation(s) lack an integer question_id, a string "
                                          f"multiple_choice_answer or a list of answers (entries {_show(bad)}). "
                                          f"Use the official file.", len(bad))
        counts = Counter(cols["question_id"])
        dups = [i for i, n in counts.items() if n > 1]
        if dups:
            report.add("duplicate-annotation", path, f"{len(dups)} question id(s) are annotated more than once "
                                                     f"({_show(dups)}). Use an unmodified official file.", len(dups))
        qpath = ann_dir / QUESTION_FILES[split]
        orphans = [i for i in counts if i not in qids[split]]
        if orphans:
            report.add("annotation-without-question", path,
                       f"{len(orphans)} annotation(s) name question ids that {qpath.name} does not have "
                       f"({_show(orphans)}). The question and annotation files must come from the same release "
                       f"and split.", len(orphans))
        unanswered = [i for i in qids[split] if i not in counts]
        if unanswered:
            report.add("question-without-annotation", qpath,
                       f"{len(unanswered)} question(s) have no annotation in {path.name} "
                       f"({_show(sorted(unanswered))}). The question and annotation files must come from the same "
                       f"release and split.",
                       len(unanswered))
        known = image_of[split]
        # (question id, image id) pairs of the annotations that no question has, as set operations in C
        pairs = dict(zip(cols["question_id"], (e.get("image_id") for e in kept))).items() - known.items()
        moved = sorted(q for q, _ in pairs if q in known)
        if moved:
            report.add("annotation-image-mismatch", path, f"{len(moved)} annotation(s) give another image_id than "
                                                          f"their question in {qpath.name} ({_show(moved)}). Use "
                                                          f"the files of the same release.", len(moved))

    # the parts of the training split must not repeat a question; no evaluation split may hold a training question
    present_train = [s for s in train_parts if s in qids]
    for i, a in enumerate(present_train):
        for b in present_train[i + 1:]:
            both = qids[a] & qids[b]
            if both and "vg" in (a, b):
                # Visual Genome ids come from another id space; a clash only matters to result files, which VG has
                # none of, so it is worth knowing but does not stop a run.
                report.notes.append(f"{len(both)} question id(s) of {QUESTION_FILES[b]} also occur in "
                                    f"{QUESTION_FILES[a]} ({_show(sorted(both))})")
            elif both:
                report.add("duplicate-question-id", ann_dir / QUESTION_FILES[b],
                           f"{len(both)} question id(s) are also in {QUESTION_FILES[a]}, and --SPLIT "
                           f"{cfg.data.train_split} trains on both ({_show(sorted(both))}): those questions would "
                           f"count twice. Use files whose question ids are disjoint.", len(both))
    files = {s: ann_dir / QUESTION_FILES[s] for s in qids}
    # VG ids are another id space (see above): equal ids there do not mean equal questions.
    _leakage(report, {s: qids[s] for s in present_train if s != "vg"},
             {s: ids for s, ids in qids.items() if s not in train_parts and s != "vg"}, "question id(s)", files,
             "Evaluating on questions the network was trained on inflates the score: use the official split "
             "files, or a training split (--SPLIT) that leaves this one out.")
    if "test" in qids and "test-dev" in qids and not qids["test-dev"] <= qids["test"]:
        outside = sorted(qids["test-dev"] - qids["test"])
        report.add("bad-file", files["test-dev"], f"{len(outside)} test-dev question id(s) are not in "
                                                  f"{QUESTION_FILES['test']} ({_show(outside)}); the official "
                                                  f"test-dev2015 questions are a subset of test2015. Use the "
                                                  f"official files.", len(outside))

    if answers and all(s in questions for s in ("train", "val")):
        try:
            anns = data.annotations("train") + data.annotations("val")
            vocab = build_answer_vocab(anns, cfg.data.answer_min_count)
        except (DataError, TypeError):
            vocab = None  # already reported above
        if vocab is not None:
            report.notes.append(f"answer vocabulary: {len(vocab)} answers occur more than "
                                f"data.answer_min_count = {cfg.data.answer_min_count} times in train+val")
            if not vocab:
                report.add("answer-vocabulary", ann_dir / ANNOTATION_FILES["train"],
                           f"no answer occurs more than {cfg.data.answer_min_count} times in the train+val "
                           f"annotations, so the answer vocabulary would be empty. Lower data.answer_min_count "
                           f"for a small dataset, or use the complete annotation files.")
    report.feature_files = len(referenced)
    _check_feature_files(report, cfg, sorted(referenced), sample, progress=progress)


def _columns(entries: list, spec: dict[str, type]) -> tuple[dict[str, list], list[int], list]:
    """The values of each key of `spec` over the entries whose keys all hold values of exactly that type (so a bool
    is no int), the positions of the other entries, and the entries kept. Whole columns are type-checked first (C
    loops): an official file of 443k questions takes a fraction of a second; a per-entry pass finds the bad ones."""
    try:
        cols = {k: [e[k] for e in entries] for k in spec}
        if all(set(map(type, cols[k])) <= {t} for k, t in spec.items()):
            return cols, [], entries
    except (KeyError, TypeError, IndexError):
        pass
    bad, kept = [], []
    for i, e in enumerate(entries):
        if isinstance(e, dict) and all(type(e.get(k)) is t for k, t in spec.items()):
            kept.append(e)
        else:
            bad.append(i)
    return {k: [e[k] for e in kept] for k in spec}, bad, kept


# -- VGD ----------------------------------------------------------------------------------------------------------
def _vgd_box_problems(report: Report, refs: Any, path: Path) -> bool:
    """Every ground-truth box outside its image (the reader stops at the first); True when any was found."""
    from mmnas.data.vgd import REQUIRED_KEYS
    if not isinstance(refs, list) or not refs or not all(isinstance(r, dict) and all(k in r for k in REQUIRED_KEYS)
                                                         for r in refs):
        return False
    try:
        boxes = np.asarray([r["bbox"] for r in refs], dtype=np.float64)                  # [E,4] x, y, w, h
        size = np.asarray([[r["width"], r["height"]] for r in refs], dtype=np.float64)   # [E,2]
    except (TypeError, ValueError):
        return False
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        return False
    x2, y2 = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    bad = ((boxes[:, 2] < 0) | (boxes[:, 3] < 0) | (boxes[:, 0] < -BOX_TOLERANCE) | (boxes[:, 1] < -BOX_TOLERANCE)
           | (x2 > size[:, 0] + BOX_TOLERANCE) | (y2 > size[:, 1] + BOX_TOLERANCE) | ~np.isfinite(boxes).all(1))
    if not bad.any():
        return False
    rows = np.flatnonzero(bad).tolist()
    first = refs[rows[0]]
    report.add("box-outside-image", path,
               f"{len(rows)} expression(s) have a box outside their image (entries {_show(rows)}; first: image "
               f"{first['image_id']}, box {first['bbox']} as [x, y, w, h] in a {first['width']}x{first['height']} "
               f"image). Fix or drop these entries, or re-create the file with tools/refer_to_vgd.py.", len(rows))
    return True


def _check_vgd(report: Report, cfg: Config, splits: Sequence[str] | None, data: Any, sample: int | None,
               progress: bool) -> None:
    from mmnas.data.vgd import FEATURE_DIR, VGDData
    from mmnas.tasks.vgd import SPLITS

    dataset = cfg.data.dataset
    if data is None:
        if dataset not in SPLITS:
            report.add("missing-file", cfg.data.root, f"unknown VGD dataset {dataset!r}; valid: {', '.join(SPLITS)}.")
            return
        try:
            data = VGDData(cfg.data.root, dataset, SPLITS[dataset])
        except DataError as e:
            report.add("missing-file", Path(cfg.data.root) / dataset, str(e))
            return
    train_parts = [s for s in cfg.data.train_split.split("+") if s]
    wanted = list(splits) if splits is not None else [s for s in data.splits if s in _vgd_configured(cfg)
                                                      or data.split_path(s).is_file()]
    refs: dict[str, list[dict]] = {}
    for split in wanted:
        path = data.split_path(split)
        try:
            refs[split] = data.refs(split)
        except DataError as e:
            raw = _read_json(path)
            if _vgd_box_problems(report, raw, path):
                refs[split] = raw  # well formed apart from its boxes: its images are still checked
            else:
                report.add("missing-file" if not path.is_file() else "bad-file", path, str(e))
    index = data.feature_index()
    where = str(data.root / FEATURE_DIR)
    images: dict[str, set] = {}
    referenced: dict[str, tuple[float, float, str]] = {}
    for split, entries in refs.items():
        path = data.split_path(split)
        ids = {int(r["image_id"]) for r in entries}
        images[split] = ids
        if not entries:
            report.add("empty-split", path, "the file holds no expression. Re-create it with tools/refer_to_vgd.py.")
        tags = Counter(r.get("split") for r in entries if r.get("split") is not None)
        foreign = {t: n for t, n in tags.items() if t != split}
        if foreign:
            report.add("bad-entry", path, f"{sum(foreign.values())} expression(s) are tagged with another split "
                                          f"({', '.join(f'{t!r}: {n}' for t, n in foreign.items())}). Each split "
                                          f"file holds only its own split; re-create it with tools/refer_to_vgd.py.",
                       sum(foreign.values()))
        _split_row(report, split, path, len(entries), "expressions", ids, index)
        _missing_features(report, path, ids, index, f"{where} (<name>_<image id>.jpg.npz, keyed by image_id)")
        for r in entries:
            i = int(r["image_id"])
            if i in index:
                referenced.setdefault(index[i], (float(r["width"]), float(r["height"]), f"{path} (image {i})"))
    files = {s: data.split_path(s) for s in images}
    _leakage(report, {s: images[s] for s in train_parts if s in images},
             {s: ids for s, ids in images.items() if s not in train_parts}, "image(s)", files,
             "RefCOCO-style splits are split by image; an image in both lets the evaluation see training scenes. "
             "Re-create the split files from refer's pickle with tools/refer_to_vgd.py.")
    report.feature_files = len(referenced)
    _check_feature_files(report, cfg, sorted(referenced), sample, expected_size=referenced, progress=progress)


def _vgd_configured(cfg: Config) -> set[str]:
    return {s for expr in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split)
            for s in expr.split("+") if s}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- ITM ----------------------------------------------------------------------------------------------------------
def _check_itm(report: Report, cfg: Config, splits: Sequence[str] | None, data: Any, sample: int | None,
               progress: bool) -> None:
    from mmnas.data.itm import LAYOUTS, ITMData, split_name

    layout_name = "coco" if cfg.data.dataset == "coco" else "flickr"
    layout = LAYOUTS[layout_name]
    if data is None:
        try:
            data = ITMData(cfg.data.root, layout_name)
        except DataError as e:
            report.add("missing-file", Path(cfg.data.root) / layout.precomp, str(e))
            return
    train_name = split_name(cfg.data.train_split, layout)
    configured = {split_name(s, layout) for s in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split)}
    wanted = ([split_name(s, layout) for s in splits] if splits is not None else
              [s for s in layout.splits if s in configured or (data.precomp / f"{s}_caps.txt").is_file()])
    read: dict[str, Any] = {}
    for name in wanted:
        caps = data.precomp / f"{name}_caps.txt"
        try:
            read[name] = data.split(name)
        except DataError as e:
            missing = not (caps.is_file() and (data.precomp / f"{name}_ids.txt").is_file())
            report.add("missing-file" if missing else "split-file", caps, str(e))
    try:
        index = data.feature_index()
    except DataError as e:
        report.add("missing-file", data.root / (layout.id_json or layout.feature_dirs[0]), str(e))
        index = {}
    json_ids = getattr(data, "_json_ids", None)  # the Karpathy json's imgids, read by feature_index (Flickr30K)
    folders = ", ".join(str(data.root / d) for d in layout.feature_dirs)
    images: dict[str, set] = {}
    referenced: set = set()
    for name, split in read.items():
        ids = split.image_ids
        images[name] = set(ids)
        dups = [i for i, n in Counter(ids).items() if n > 1]
        if dups:
            report.add("duplicate-image-id", split.ids_path, f"{len(dups)} image id(s) are listed more than once "
                                                             f"({_show(dups)}): their captions would be scored as "
                                                             f"different images. Use SCAN's split files.", len(dups))
        unknown = [i for i in dict.fromkeys(ids) if json_ids is not None and i not in json_ids]
        if unknown:
            report.add("unknown-id", split.ids_path, f"{len(unknown)} image id(s) are not imgids of "
                                                     f"{data.root / layout.id_json} ({_show(unknown)}). Use Karpathy's "
                                                     f"dataset_flickr30k.json, from which SCAN's split files were "
                                                     f"made.", len(unknown))
        _split_row(report, name, split.caps_path, len(split.captions), "captions", images[name], index)
        known = [i for i in images[name] if json_ids is None or i in json_ids]
        _missing_features(report, split.ids_path, known, index, f"{folders} (<file name>.jpg.npz)")
        referenced |= {index[i] for i in images[name] if i in index}
    files = {s: read[s].ids_path for s in read}
    _leakage(report, {train_name: images[train_name]} if train_name in images else {},
             {s: ids for s, ids in images.items() if s != train_name}, "image(s)", files,
             "Retrieval scored on training images is inflated: use SCAN's (Karpathy's) split files.")
    report.feature_files = len(referenced)
    _check_feature_files(report, cfg, sorted(referenced), sample, progress=progress)


# -- entry points ---------------------------------------------------------------------------------------------------
CHECKS = {"vqa": _check_vqa, "vgd": _check_vgd, "itm": _check_itm}


def check_dataset(cfg: Config, full: bool = False, sample: int = DEFAULT_SAMPLE, splits: Sequence[str] | None = None,
                  data: Any = None, progress: bool = False) -> Report:
    """Check the data tree of `cfg` (task, data.dataset, data.root, model.feat_size, data.max_regions, the
    configured splits): every split file present (and those the configured splits need), every image they name,
    `sample` feature files opened (every referenced one when `full`). `splits` limits the check to those split
    names; `data` reuses a task's already-read data object (VQAData / VGDData / ITMData)."""
    if cfg.task not in CHECKS:
        raise UserError(f"the data checker knows the tasks {', '.join(CHECKS)}, not {cfg.task!r}.")
    report = Report(cfg.task, cfg.data.dataset, str(cfg.data.root), "full" if full else "cheap")
    kwargs = {"answers": splits is None} if cfg.task == "vqa" else {}
    CHECKS[cfg.task](report, cfg, splits, data, None if full else sample, progress=progress, **kwargs)
    return report


def run_splits(cfg: Config) -> list[str]:
    """The splits a run of `cfg` reads: training (and per-epoch validation), --RUN val or --RUN test."""
    def parts(expr: str) -> list[str]:
        return [s for s in expr.split("+") if s] if cfg.task != "itm" else [expr]
    if cfg.run.run == "val":
        return parts(cfg.data.val_split)
    if cfg.run.run == "test":
        return parts(cfg.data.test_split)
    out = parts(cfg.data.train_split)
    if cfg.stage == "train" and cfg.run.eval_every_epoch:
        out += [s for s in parts(cfg.data.val_split) if s not in out]
    return out


def quick_check(cfg: Config, data: Any = None, sample: int = QUICK_SAMPLE) -> Report:
    """The check a run makes before it starts: the splits it reads, their images' feature files (existence from
    one listing per folder), `sample` files opened. Pass the task's data object (after `task.prepare()`) so that
    nothing is read twice; it takes well under a second beyond what the task reads anyway."""
    report = check_dataset(cfg, sample=sample, splits=run_splits(cfg), data=data)
    report.mode = "quick"
    return report


# -- command line ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m mmnas.check_data",
        description="Check a VQA / VGD / ITM data tree before a long run: every file, id and image reference, and "
                    "a sample (or, with --full, all) of the feature files. Exit 0: clean; 1: problems; 2: usage.")
    p.add_argument("--task", required=True, choices=sorted(CHECKS), help="vqa, vgd or itm")
    p.add_argument("--DATASET", dest="dataset", help="as for the run scripts (default: the task's first)")
    p.add_argument("--root", help="data root (default: data.root of the task's config)")
    p.add_argument("--full", action="store_true", help="open every referenced feature file (slow on real data)")
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                   help="feature files opened without --full (default: %(default)s)")
    p.add_argument("--max-problems", type=int, default=20, help="problems printed (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object instead")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. model.feat_size=2048 data.train_split=train+val")
    return p


def config_for(task: str, dataset: str | None = None, root: str | None = None,
               overrides: Sequence[str] = ()) -> Config:
    """The training config of `task` on `dataset` (as the run scripts build it), with `root` as data.root."""
    task_cls = _task_meta(task)
    dataset = dataset or task_cls.datasets[0]
    if dataset not in task_cls.datasets:
        raise UserError(f"--DATASET {dataset!r} is not a dataset of the {task} task; valid: "
                        f"{', '.join(task_cls.datasets)}.")
    extra = list(overrides) + ([f"data.root={root}"] if root else [])
    return build_config(task, "train", dataset=dataset, overrides=extra, demo=dataset in task_cls.demo_datasets)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.sample < 1 or args.max_problems < 0:
            raise UserError("--sample must be a positive integer and --max-problems 0 or more.")
        cfg = config_for(args.task, args.dataset, args.root, args.overrides)
        report = check_dataset(cfg, full=args.full, sample=args.sample, progress=args.full and sys.stderr.isatty())
    except (UserError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict()) if args.json else report.summary(args.max_problems))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
