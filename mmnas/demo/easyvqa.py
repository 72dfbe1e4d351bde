"""Convert the easy-VQA dataset (PyPI ``easy-vqa``) into the VQA-v2 folder layout and file formats of spec §6."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mmnas.demo.files import npz_bytes, run_generator, write_bytes_atomic

__all__ = [
    "VERSION",
    "FEATURE_DIM",
    "FEATURE_NAMES",
    "TEST_IMAGE_OFFSET",
    "TEST_QUESTION_OFFSET",
    "QUESTION_TYPE_PREFIXES",
    "question_type",
    "answer_type",
    "region_features",
    "prepare_easyvqa",
    "main",
]

# Bump whenever the produced bytes change, so that an existing tree is rebuilt.
VERSION = "easyvqa-vqa2-v1"

# Feature layout of one region (cell); every value lies roughly in [-1, 1] or [0, 1].
#   0-2   mean R, G, B of the cell (/255)
#   3-5   std of R, G, B of the cell (/255, x2 so that a half-foreground cell reaches ~1)
#   6     foreground fraction of the cell (pixels far from the image's background colour)
#   7-9   mean R, G, B of the cell's foreground pixels (/255; 0 when the cell has none)
#   10-11 opponent colour of that foreground mean: (2R-G-B)/2 and (G-B)*sqrt(3)/2, i.e.
#         chroma*cos(hue), chroma*sin(hue) — a smooth hue that needs no angle wrap-around
#   12    saturation of the foreground mean (chroma / max channel)
#   13    value of the foreground mean (max channel)
#   14-29 4x4 sub-grid of foreground fractions inside the cell (row-major): the coarse
#         silhouette that tells circles, rectangles and triangles apart
#   30-37 8-bin histogram of boundary directions inside the cell: gradient of the soft
#         foreground mask, direction bins 0°, 45°, ..., 315° (image axes, y down), each bin
#         the boundary length in the cell divided by the cell side. Translation-invariant
#         shape evidence: rectangles give only 0/90/180/270°, upright triangles slanted
#         upper sides over a flat base, circles every direction
#   38-39 cell centre x / W and y / H, so a region knows where it is without box features
SUBGRID = 4
DIRECTION_BINS = 8
FEATURE_NAMES: tuple[str, ...] = (
    ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "fg_frac",
     "fg_r", "fg_g", "fg_b", "fg_opp_a", "fg_opp_b", "fg_sat", "fg_val")
    + tuple(f"fg_sub_{row}{col}" for row in range(SUBGRID) for col in range(SUBGRID))
    + tuple(f"edge_dir_{45 * k}" for k in range(DIRECTION_BINS))
    + ("centre_x", "centre_y")
)
FEATURE_DIM = len(FEATURE_NAMES)  # 40

# Ids: easy-VQA numbers train and test images (and questions) from 0 each; VQA needs them
# unique across splits, so test ids are shifted past every train id.
TEST_IMAGE_OFFSET = 100_000
TEST_QUESTION_OFFSET = 1_000_000

FEATURE_DIR = "bua-r101-max100"
ANNOTATION_DIR = "annotations"
DONE_FILE = "DONE"

# question_type is the longest of these prefixes that the (lower-cased) question starts
# with, else its first three words. The prefixes cover every easy-VQA template, and keep
# negated questions apart from plain ones so that per-type accuracy shows negation errors.
QUESTION_TYPE_PREFIXES: tuple[str, ...] = (
    "what is the color of the",
    "what color is the",
    "what shape",
    "what is the",
    "does the image not contain a",
    "does the image contain a",
    "is there not a",
    "is there a",
    "is no",
    "is a",
)

_LICENSE = {"name": "MIT (easy-VQA by Victor Zhou)", "url": "https://github.com/vzhou842/easy-VQA"}


def question_type(question: str) -> str:
    """VQA-style question type: the longest :data:`QUESTION_TYPE_PREFIXES` entry the question starts with."""
    words = question.lower().rstrip("?").split()
    text = " ".join(words)
    matches = [prefix for prefix in QUESTION_TYPE_PREFIXES if text == prefix or text.startswith(prefix + " ")]
    if matches:
        return max(matches, key=len)
    return " ".join(words[:3])


def answer_type(answer: str) -> str:
    """``"yes/no"`` for yes/no answers, ``"other"`` otherwise (easy-VQA has no counting questions)."""
    return "yes/no" if answer in ("yes", "no") else "other"


def region_features(image: np.ndarray, grid: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Features ``x [F, grid²]`` float32 (transposed, as the release stores them) and boxes
    ``[grid², 4]`` float32 x1,y1,x2,y2 (inclusive pixels) of a ``grid × grid`` cell grid over an
    ``[H, W, 3]`` uint8 image; cells are numbered row-major."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height % (grid * SUBGRID) or width % (grid * SUBGRID):
        raise ValueError(
            f"image size {width}x{height} must be divisible by grid*{SUBGRID} = {grid * SUBGRID} "
            f"(grid={grid}); for 64x64 easy-VQA images use grid 1, 2, 4, 8 or 16"
        )
    cell_h, cell_w = height // grid, width // grid
    sub_h, sub_w = cell_h // SUBGRID, cell_w // SUBGRID
    regions = grid * grid

    # easy-VQA backgrounds are one flat near-white colour (each channel 230-255) that differs
    # per image; the border median recovers it exactly (checked on all 5,000 images).
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    pixels = image.astype(np.float32) / 255.0
    distance = np.abs(image.astype(np.float32) - background).max(axis=-1)  # [H, W], 0-255
    # Half the image's largest contrast splits anti-aliased edges at half coverage for every
    # palette colour (grey is only ~110 away from the background, yellow ~240); the floor
    # keeps a shape-less image from turning noise into foreground.
    threshold = max(0.5 * float(distance.max()), 24.0)
    foreground = (distance > threshold).astype(np.float32)
    # The soft mask keeps anti-aliasing, which makes boundary directions far less jagged.
    soft = np.clip(distance / max(float(distance.max()), 24.0), 0.0, 1.0)

    # [grid, cell_h, grid, cell_w, ...] -> [regions, cell pixels, ...], row-major cells.
    cells = pixels.reshape(grid, cell_h, grid, cell_w, 3).transpose(0, 2, 1, 3, 4).reshape(regions, -1, 3)
    mask = foreground.reshape(grid, cell_h, grid, cell_w).transpose(0, 2, 1, 3).reshape(regions, -1)

    mean = cells.mean(axis=1)
    std = np.minimum(cells.std(axis=1) * 2.0, 1.0)
    fraction = mask.mean(axis=1)
    count = mask.sum(axis=1)
    fg_mean = (cells * mask[:, :, None]).sum(axis=1) / np.maximum(count, 1.0)[:, None]
    red, green, blue = fg_mean[:, 0], fg_mean[:, 1], fg_mean[:, 2]
    opponent_a = (2.0 * red - green - blue) * 0.5
    opponent_b = (green - blue) * (np.sqrt(3.0) * 0.5)
    value = fg_mean.max(axis=1)
    saturation = (value - fg_mean.min(axis=1)) / np.maximum(value, 1e-6)
    sub = (
        foreground.reshape(grid, SUBGRID, sub_h, grid, SUBGRID, sub_w)
        .transpose(0, 3, 1, 4, 2, 5)
        .mean(axis=(4, 5))
        .reshape(regions, SUBGRID * SUBGRID)
    )
    directions = _direction_histogram(soft, grid, cell_h, cell_w)
    rows, cols = np.divmod(np.arange(regions), grid)
    centre_x = (cols + 0.5) / grid
    centre_y = (rows + 0.5) / grid

    feat = np.concatenate(
        [
            mean,
            std,
            fraction[:, None],
            fg_mean,
            opponent_a[:, None],
            opponent_b[:, None],
            saturation[:, None],
            value[:, None],
            sub,
            directions,
            centre_x[:, None],
            centre_y[:, None],
        ],
        axis=1,
    ).astype(np.float32)  # [N, F]
    assert feat.shape == (regions, FEATURE_DIM)

    # Inclusive pixel boxes (x2 = last column), the bottom-up convention the +1 box maths expects.
    boxes = np.stack(
        [cols * cell_w, rows * cell_h, (cols + 1) * cell_w - 1, (rows + 1) * cell_h - 1], axis=1
    ).astype(np.float32)
    return np.ascontiguousarray(feat.T), boxes


def _direction_histogram(soft: np.ndarray, grid: int, cell_h: int, cell_w: int) -> np.ndarray:
    """``[grid², 8]`` boundary length per gradient direction bin in each cell, / cell side."""
    padded = np.pad(soft, 1, mode="edge")
    # Central differences: a sharp 0→1 step gives a total of 1 per pixel of boundary length.
    grad_x = (padded[1:-1, 2:] - padded[1:-1, :-2]) * 0.5
    grad_y = (padded[2:, 1:-1] - padded[:-2, 1:-1]) * 0.5
    magnitude = np.hypot(grad_x, grad_y)
    # Linear interpolation between the two nearest of 8 direction bins: smooth in the angle.
    position = (np.arctan2(grad_y, grad_x) % (2.0 * np.pi)) / (2.0 * np.pi / DIRECTION_BINS)
    lower = np.floor(position).astype(np.int64) % DIRECTION_BINS
    upper_weight = position - np.floor(position)
    upper = (lower + 1) % DIRECTION_BINS
    height, width = soft.shape
    cell_index = (np.arange(height)[:, None] // cell_h) * grid + np.arange(width)[None, :] // cell_w
    size = grid * grid * DIRECTION_BINS
    histogram = np.bincount(
        (cell_index * DIRECTION_BINS + lower).ravel(), (magnitude * (1.0 - upper_weight)).ravel(), size
    ) + np.bincount((cell_index * DIRECTION_BINS + upper).ravel(), (magnitude * upper_weight).ravel(), size)
    return (histogram.reshape(grid * grid, DIRECTION_BINS) / float(min(cell_h, cell_w))).astype(np.float32)




def _write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs no disk; file systems without links (some mounts) get a copy.
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    if temporary.exists():
        temporary.unlink()
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _info(subtype: str) -> dict[str, Any]:
    return {
        "description": f"easy-VQA converted to the VQA-v2 format by mmnas ({VERSION}), split {subtype}",
        "url": "https://github.com/vzhou842/easy-VQA",
        "version": VERSION,
        "year": 2020,
        "contributor": "Victor Zhou (easy-VQA)",
        "date_created": "2020-01-01",
    }


def _questions_json(subtype: str, questions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "info": _info(subtype),
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "license": _LICENSE,
        "data_subtype": subtype,
        "questions": questions,
    }


def _annotations_json(subtype: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "info": _info(subtype),
        "license": _LICENSE,
        "data_subtype": subtype,
        "data_type": "mscoco",
        "annotations": annotations,
    }


def _split_records(
    texts: Sequence[str],
    answers: Sequence[str],
    image_ids: Sequence[int],
    keep_images: set[int],
    image_offset: int,
    question_offset: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    questions: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, (text, answer, easy_image) in enumerate(zip(texts, answers, image_ids)):
        if easy_image not in keep_images:
            continue
        question_id = question_offset + index
        image_id = image_offset + int(easy_image)
        questions.append({"image_id": image_id, "question": text, "question_id": question_id})
        annotations.append(
            {
                "question_id": question_id,
                "image_id": image_id,
                "question_type": question_type(text),
                "answer_type": answer_type(answer),
                "multiple_choice_answer": answer,
                # easy-VQA has one exact answer; ten identical human answers give accuracy 1 or 0.
                "answers": [
                    {"answer": answer, "answer_confidence": "yes", "answer_id": k} for k in range(1, 11)
                ],
            }
        )
    return questions, annotations


def _done_text(grid: int, limit: int | None) -> str:
    # The parameters are part of the marker: a tree built with another grid or limit is rebuilt.
    return f"{VERSION} grid={grid} limit={limit}\n"


def _progress(items: Iterable[Any], total: int, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="easy-VQA -> VQA-v2 features", unit="img")


def prepare_easyvqa(
    root: str | os.PathLike,
    grid: int = 4,
    progress: bool = True,
    limit: int | None = None,
) -> Path:
    """Write easy-VQA under ``root`` in the VQA-v2 layout of spec §6 and return ``root``.

    easy-VQA train → ``train2014``; easy-VQA test → ``val2014`` (annotated, so it can be scored)
    and, with the same questions, ``test2015`` / ``test-dev2015`` (for ``--RUN test`` result
    files); empty ``VG_*`` files. Region features: ``grid × grid`` cells, :data:`FEATURE_DIM`
    features each (see :data:`FEATURE_NAMES`). ``limit`` keeps only the first ``limit`` images of
    each split (and their questions). Returns at once when a complete tree (the ``DONE`` marker,
    written last) with the same version, grid and limit exists.
    """
    import easy_vqa  # imported here: only the demo needs the package
    from PIL import Image

    root = Path(root)
    done = root / DONE_FILE
    expected = _done_text(grid, limit)
    if done.is_file() and done.read_text() == expected:
        return root
    if grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit}")

    annotation_dir = root / ANNOTATION_DIR
    train_dir = root / FEATURE_DIR / "train2014"
    val_dir = root / FEATURE_DIR / "val2014"
    test_dir = root / FEATURE_DIR / "test2015"
    for folder in (annotation_dir, train_dir, val_dir, test_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # A stale marker from other parameters must not survive a half-finished rebuild.
    if done.exists():
        done.unlink()

    train_paths = easy_vqa.get_train_image_paths()
    test_paths = easy_vqa.get_test_image_paths()
    train_ids = sorted(train_paths)[:limit]
    test_ids = sorted(test_paths)[:limit]

    # Features first, json after: the json never names an image without a feature file.
    jobs = [("train", easy_id, train_paths[easy_id]) for easy_id in train_ids]
    jobs += [("test", easy_id, test_paths[easy_id]) for easy_id in test_ids]
    for split, easy_id, image_path in _progress(jobs, len(jobs), progress):
        with Image.open(image_path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        feat, boxes = region_features(pixels, grid)
        payload = npz_bytes(
            {
                "x": feat,
                "bbox": boxes,
                "image_h": np.int64(pixels.shape[0]),
                "image_w": np.int64(pixels.shape[1]),
                "num_bbox": np.int64(boxes.shape[0]),
            }
        )
        if split == "train":
            write_bytes_atomic(train_dir / f"COCO_train2014_{easy_id:012d}.jpg.npz", payload)
        else:
            image_id = TEST_IMAGE_OFFSET + easy_id
            val_file = val_dir / f"COCO_val2014_{image_id:012d}.jpg.npz"
            write_bytes_atomic(val_file, payload)
            _link_or_copy(val_file, test_dir / f"COCO_test2015_{image_id:012d}.jpg.npz")

    train_q, train_a = _split_records(*easy_vqa.get_train_questions(), set(train_ids), 0, 0)
    test_q, test_a = _split_records(
        *easy_vqa.get_test_questions(), set(test_ids), TEST_IMAGE_OFFSET, TEST_QUESTION_OFFSET
    )
    _write_json(annotation_dir / "v2_OpenEnded_mscoco_train2014_questions.json", _questions_json("train2014", train_q))
    _write_json(annotation_dir / "v2_mscoco_train2014_annotations.json", _annotations_json("train2014", train_a))
    _write_json(annotation_dir / "v2_OpenEnded_mscoco_val2014_questions.json", _questions_json("val2014", test_q))
    _write_json(annotation_dir / "v2_mscoco_val2014_annotations.json", _annotations_json("val2014", test_a))
    _write_json(annotation_dir / "v2_OpenEnded_mscoco_test2015_questions.json", _questions_json("test2015", test_q))
    _write_json(
        annotation_dir / "v2_OpenEnded_mscoco_test-dev2015_questions.json", _questions_json("test-dev2015", test_q)
    )
    # Empty Visual Genome files, so that the train+val+vg split loads (and adds nothing).
    _write_json(annotation_dir / "VG_questions.json", _questions_json("vg", []))
    _write_json(annotation_dir / "VG_annotations.json", _annotations_json("vg", []))

    write_bytes_atomic(done, expected.encode("utf-8"))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python3 -m mmnas.demo.easyvqa --root datasets/easyvqa``."""
    parser = argparse.ArgumentParser(
        prog="python3 -m mmnas.demo.easyvqa",
        description="Convert easy-VQA into the VQA-v2 layout (annotations/ and bua-r101-max100/).",
    )
    parser.add_argument("--root", default="datasets/easyvqa", help="output folder (default: %(default)s)")
    parser.add_argument("--grid", type=int, default=4, help="regions per side (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N images per split")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run_generator(lambda: prepare_easyvqa(args.root, grid=args.grid, progress=not args.quiet, limit=args.limit))


if __name__ == "__main__":
    sys.exit(main())
