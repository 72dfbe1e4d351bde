"""Built-in image-text matching demo (spec §6 ITM formats): synthetic scenes of coloured shapes with five different
captions each, written exactly like Flickr30K in the release's layout — SCAN precomputed split files, a
Karpathy-style ``dataset_flickr30k.json`` and 36-region bottom-up-style ``.npz`` features made without any
pretrained weights.

A scene is a light 96×96 picture with 2 or 3 shapes (colour × shape × size × position on a 3×3 grid, never two in
one grid cell). Every caption names the colour and shape of every object and adds sizes, positions, a count or a
spatial relation, so a caption singles out its scene among thousands.

Regions (36 per image, in the order a detector would rank them): the tight box of every object, two jittered boxes
per object (partial or loose views; first one for each object, then the second), then distractor boxes (the whole
image and random boxes, mostly background). A config that keeps the first N regions (data.max_regions) keeps the
best ones, as with a detector's top-N boxes.
Each region's feature is colour/shape statistics of its box, see :data:`FEATURE_NAMES`.

    python3 -m mmnas.demo.shapes_itm --root datasets/shapes_itm
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mmnas.demo.files import npz_bytes, run_generator, write_bytes_atomic

__all__ = ["VERSION", "DONE_FILE", "FEATURE_DIM", "FEATURE_NAMES", "REGIONS", "IMAGE_SIZE", "COLOURS", "SHAPES",
           "render_scene", "region_boxes", "region_features", "scene_captions", "prepare_shapes_itm", "main"]

# Bump whenever the produced bytes change, so that an existing tree is rebuilt.
VERSION = "shapes-itm-v2"
DONE_FILE = "DONE"
IMAGE_SIZE = 96
GRID = 3                     # objects sit in distinct cells of a 3×3 grid
REGIONS = 36                 # fixed 36 regions, as bua-r101-fix36
JITTERED_PER_OBJECT = 2
PRECOMP_DIR = "f30k_precomp"
FEATURE_DIR = "flickr_bua-r101-fix36"
KARPATHY_JSON = "dataset_flickr30k.json"
FILE_ID_BASE = 1_000_000_000  # feature file stems differ from the Karpathy imgids, as in Flickr30K

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 215), "yellow": (225, 195, 25),
    "purple": (135, 60, 185), "orange": (240, 135, 30), "brown": (125, 75, 35), "black": (30, 30, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"big": (22, 28), "small": (11, 15)}   # side length range in pixels
SIZE_WORDS = {"big": ("big", "large"), "small": ("small", "little")}
POSITION_WORDS = {
    (0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
    (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
    (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right",
}
COUNT_WORDS = {2: "two", 3: "three"}

# Feature layout of one region (box), all values roughly in [0, 1]:
SUBGRID = 4
DIRECTION_BINS = 8
FEATURE_NAMES: tuple[str, ...] = (
    ("mean_r", "mean_g", "mean_b",                 # mean colour of the box (/255)
     "fg_frac",                                    # share of the box covered by shapes (far from the background)
     "fg_r", "fg_g", "fg_b",                       # mean colour of those foreground pixels (/255; 0 if none)
     "fg_opp_a", "fg_opp_b", "fg_sat", "fg_val")   # opponent colour axes, saturation and value of that mean
    + tuple(f"fg_sub_{r}{c}" for r in range(SUBGRID) for c in range(SUBGRID))  # 4×4 silhouette in the box
    + tuple(f"edge_dir_{45 * k}" for k in range(DIRECTION_BINS))  # boundary length per direction / box side
    + ("centre_x", "centre_y", "width", "height")  # box geometry / image size
)
FEATURE_DIM = len(FEATURE_NAMES)  # 39
SPLIT_NAMES = {"train": "train", "dev": "val", "test": "test"}  # SCAN name → Karpathy's split name
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}


# -- scenes ---------------------------------------------------------------------------------------------------------
def _scene_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    count = int(rng.integers(2, 4))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    cell_px = IMAGE_SIZE // GRID
    objects = []
    for cell in cells:
        row, col = divmod(int(cell), GRID)
        size = "big" if rng.random() < 0.5 else "small"
        side = int(rng.integers(SIZES[size][0], SIZES[size][1] + 1))
        slack = cell_px - side - 2
        x1 = col * cell_px + 1 + int(rng.integers(0, slack + 1))
        y1 = row * cell_px + 1 + int(rng.integers(0, slack + 1))
        colour = str(rng.choice(list(COLOURS)))
        rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + rng.integers(-15, 16, size=3), 0, 255))
        objects.append({"colour": colour, "shape": str(rng.choice(SHAPES)), "size": size, "cell": (row, col),
                        "box": (x1, y1, x1 + side - 1, y1 + side - 1), "rgb": rgb})
    return objects


def render_scene(objects: Sequence[dict[str, Any]], rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] uint8: a light, slightly noisy background with the objects drawn on it."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(215, 251, size=3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        x1, y1, x2, y2 = obj["box"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if obj["shape"] == "circle":
            draw.ellipse((x1, y1, x2, y2), fill=obj["rgb"])
        elif obj["shape"] == "square":
            draw.rectangle((x1, y1, x2, y2), fill=obj["rgb"])
        elif obj["shape"] == "triangle":
            draw.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=obj["rgb"])
        else:  # diamond
            draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=obj["rgb"])
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-4, 5, size=pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def region_boxes(objects: Sequence[dict[str, Any]], rng: np.random.Generator) -> np.ndarray:
    """[36, 4] float32 x1,y1,x2,y2 (inclusive pixels): tight object boxes, jittered object boxes, distractors."""
    last = IMAGE_SIZE - 1
    boxes = [list(obj["box"]) for obj in objects]
    for _ in range(JITTERED_PER_OBJECT):  # round-robin: the first few regions hold a jittered view of each object
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            side = x2 - x1 + 1
            w = h = max(4.0, side * rng.uniform(0.6, 1.5))
            cx = (x1 + x2) / 2 + rng.uniform(-0.35, 0.35) * side
            cy = (y1 + y2) / 2 + rng.uniform(-0.35, 0.35) * side
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    boxes.append([0, 0, last, last])
    while len(boxes) < REGIONS:
        w, h = rng.uniform(8, 48, size=2)
        x1, y1 = rng.uniform(0, IMAGE_SIZE - w), rng.uniform(0, IMAGE_SIZE - h)
        boxes.append([x1, y1, x1 + w, y1 + h])
    out = np.round(np.asarray(boxes[:REGIONS], dtype=np.float64))
    out[:, [0, 1]] = np.clip(out[:, [0, 1]], 0, last - 3)
    out[:, [2, 3]] = np.clip(np.maximum(out[:, [2, 3]], out[:, [0, 1]] + 3), 0, last)
    return out.astype(np.float32)


def _integral(channels: np.ndarray) -> np.ndarray:
    """Summed-area tables [H+1, W+1, K] of [H, W, K] maps (float64), for box sums in O(1)."""
    table = np.zeros((channels.shape[0] + 1, channels.shape[1] + 1, channels.shape[2]), dtype=np.float64)
    table[1:, 1:] = channels.cumsum(0, dtype=np.float64).cumsum(1)
    return table


def _box_sums(table: np.ndarray, x1, y1, x2, y2) -> np.ndarray:
    """Sums over inclusive integer boxes (arrays of the same shape S) of every channel: [*S, K]."""
    return table[y2 + 1, x2 + 1] - table[y1, x2 + 1] - table[y2 + 1, x1] + table[y1, x1]


def region_features(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Features ``x [F, N]`` float32 (features × regions, as the release stores them) of ``[N, 4]`` inclusive pixel
    boxes over an ``[H, W, 3]`` uint8 image; see :data:`FEATURE_NAMES`."""
    image = np.asarray(image)
    height, width = image.shape[:2]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    distance = np.abs(image.astype(np.float32) - background).max(axis=-1)
    foreground = (distance > 48.0).astype(np.float32)
    pixels = image.astype(np.float32) / 255.0
    # Boundary directions of the foreground mask (central differences), split linearly into 8 direction bins.
    padded = np.pad(foreground, 1, mode="edge")
    grad_x = (padded[1:-1, 2:] - padded[1:-1, :-2]) * 0.5
    grad_y = (padded[2:, 1:-1] - padded[:-2, 1:-1]) * 0.5
    magnitude = np.hypot(grad_x, grad_y)
    position = (np.arctan2(grad_y, grad_x) % (2 * np.pi)) / (2 * np.pi / DIRECTION_BINS)
    lower = np.floor(position).astype(np.int64) % DIRECTION_BINS
    upper_w = position - np.floor(position)
    bins = np.zeros((height, width, DIRECTION_BINS), dtype=np.float32)
    rows, cols = np.indices((height, width))
    bins[rows, cols, lower] += magnitude * (1 - upper_w)
    bins[rows, cols, (lower + 1) % DIRECTION_BINS] += magnitude * upper_w
    maps = np.concatenate([pixels, foreground[..., None], pixels * foreground[..., None], bins], axis=-1)
    table = _integral(maps)  # channels: rgb 0-2, fg 3, fg·rgb 4-6, direction bins 7-14

    b = boxes.astype(np.int64)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = x2 - x1 + 1, y2 - y1 + 1
    area = (w * h).astype(np.float64)
    sums = _box_sums(table, x1, y1, x2, y2)                          # [N, 15]
    mean = sums[:, 0:3] / area[:, None]
    fg_count = sums[:, 3]
    fg_frac = fg_count / area
    fg_mean = sums[:, 4:7] / np.maximum(fg_count, 1.0)[:, None]
    red, green, blue = fg_mean[:, 0], fg_mean[:, 1], fg_mean[:, 2]
    value = fg_mean.max(axis=1)
    saturation = (value - fg_mean.min(axis=1)) / np.maximum(value, 1e-6)
    opp_a = (2 * red - green - blue) * 0.5
    opp_b = (green - blue) * (np.sqrt(3.0) * 0.5)
    # 4×4 silhouette: the box cut at integer sub-boundaries (each part at least one pixel wide).
    edges_x = x1[:, None] + np.floor(np.arange(SUBGRID + 1)[None, :] * w[:, None] / SUBGRID).astype(np.int64)
    edges_y = y1[:, None] + np.floor(np.arange(SUBGRID + 1)[None, :] * h[:, None] / SUBGRID).astype(np.int64)
    sx1, sx2 = edges_x[:, None, :-1], np.maximum(edges_x[:, None, 1:] - 1, edges_x[:, None, :-1])
    sy1, sy2 = edges_y[:, :-1, None], np.maximum(edges_y[:, 1:, None] - 1, edges_y[:, :-1, None])
    fg_table = table[..., 3:4]
    sub_sums = _box_sums(fg_table, *np.broadcast_arrays(sx1, sy1, sx2, sy2))[..., 0]   # [N, 4, 4]
    sub_area = ((sx2 - sx1 + 1) * (sy2 - sy1 + 1)).astype(np.float64)
    silhouette = (sub_sums / sub_area).reshape(len(b), SUBGRID * SUBGRID)
    directions = sums[:, 7:] / np.sqrt(area)[:, None]
    geometry = np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, w / width, h / height], axis=1)
    feat = np.concatenate([mean, fg_frac[:, None], fg_mean, opp_a[:, None], opp_b[:, None], saturation[:, None],
                           value[:, None], silhouette, directions, geometry], axis=1).astype(np.float32)
    assert feat.shape == (len(b), FEATURE_DIM)
    return np.ascontiguousarray(feat.T)


# -- captions -------------------------------------------------------------------------------------------------------
def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    (ra, ca), (rb, cb) = a["cell"], b["cell"]
    if ca != cb:
        return "to the left of" if ca < cb else "to the right of"
    return "above" if ra < rb else "below"


def scene_captions(objects: Sequence[dict[str, Any]], rng: np.random.Generator) -> list[str]:
    """Five different captions; each names the colour and shape of every object (in its own random order)."""
    def order() -> list[dict[str, Any]]:
        return [objects[i] for i in rng.permutation(len(objects))]

    def size_word(o) -> str:
        return str(rng.choice(SIZE_WORDS[o["size"]]))

    def noun(o, size: bool = False) -> str:
        words = f"{size_word(o) + ' ' if size else ''}{o['colour']} {o['shape']}"
        return ("an " if words[0] in "aeiou" else "a ") + words

    objs = order()
    full = _join([f"{noun(o, size=True)} {POSITION_WORDS[o['cell']]}" for o in objs])
    objs = order()
    counted = f"{COUNT_WORDS[len(objs)]} shapes: {_join([noun(o) for o in objs])}"
    objs = order()
    there = "there is " + _join([f"{noun(o)} {POSITION_WORDS[o['cell']]}" for o in objs])
    objs = order()
    sized = (f"{noun(objs[0], size=True)} next to {noun(objs[1], size=True)}" if len(objs) == 2
             else _join([noun(o, size=True) for o in objs]))
    objs = order()
    related = f"{noun(objs[0])} {_relation(objs[0], objs[1])} {noun(objs[1])}"
    if len(objs) == 3:
        related += f" and {noun(objs[2])} {POSITION_WORDS[objs[2]['cell']]}"
    captions = [full, counted, there, sized, related]
    # Capitalised with a final full stop, like Flickr30K's captions (the tokenizer drops both).
    return [c[0].upper() + c[1:] + " ." for c in captions]


# -- files ----------------------------------------------------------------------------------------------------------


def _lines(items: Iterable[str]) -> bytes:
    return "".join(f"{item}\n" for item in items).encode("utf-8")


def _done_text(sizes: dict[str, int], seed: int) -> str:
    # The parameters are part of the marker: a tree built with other sizes or seed is rebuilt.
    return f"{VERSION} " + " ".join(f"{k}={v}" for k, v in sizes.items()) + f" seed={seed}\n"


def _progress(items, total: int, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="shapes ITM demo", unit="img", leave=False)


def prepare_shapes_itm(root: str | os.PathLike, n_train: int = 2000, n_dev: int = 100, n_test: int = 1000,
                       seed: int = 0, progress: bool = True) -> Path:
    """Write the demo under ``root`` in the Flickr30K layout of spec §6 and return ``root``:

    * ``f30k_precomp/{train,dev,test}_caps.txt`` — five captions per image, in image order;
    * ``f30k_precomp/{train,dev,test}_ids.txt`` — Karpathy imgids, one per image for train and one per caption for
      dev/test (as SCAN's files);
    * ``dataset_flickr30k.json`` — Karpathy-style ``{"images": [{"filename", "imgid", "split", "sentences", …}]}``
      (dev is Karpathy's ``val``), file names ``<stem>.jpg`` whose stems differ from the imgids;
    * ``flickr_bua-r101-fix36/<stem>.jpg.npz`` — 36 regions: ``x [F, 36]``, ``bbox``, ``image_h``, ``image_w``,
      ``num_bbox``.

    Deterministic for a given seed and sizes; returns at once when a complete tree (the ``DONE`` marker, written
    last) with the same version, sizes and seed exists."""
    root = Path(root)
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    if min(sizes.values()) < 1:
        raise ValueError(f"every split needs at least one image, got {sizes}")
    done = root / DONE_FILE
    expected = _done_text(sizes, seed)
    if done.is_file() and done.read_text() == expected:
        return root
    precomp, features = root / PRECOMP_DIR, root / FEATURE_DIR
    precomp.mkdir(parents=True, exist_ok=True)
    features.mkdir(parents=True, exist_ok=True)
    if done.exists():
        done.unlink()  # a stale marker must not survive a half-finished rebuild

    images: list[dict[str, Any]] = []
    captions: dict[str, list[str]] = {s: [] for s in sizes}
    ids: dict[str, list[int]] = {s: [] for s in sizes}
    jobs = [(split, i) for split, n in sizes.items() for i in range(n)]
    sentid = 0
    for split, i in _progress(jobs, len(jobs), progress):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
        objects = _scene_objects(rng)
        pixels = render_scene(objects, rng)
        boxes = region_boxes(objects, rng)
        feat = region_features(pixels, boxes)
        imgid = len(images)
        stem = str(FILE_ID_BASE + 37 * imgid + 11)
        # Features first, text files after: the split files never name an image without a feature file.
        write_bytes_atomic(features / f"{stem}.jpg.npz", npz_bytes({
            "x": feat, "bbox": boxes, "image_h": np.int64(IMAGE_SIZE), "image_w": np.int64(IMAGE_SIZE),
            "num_bbox": np.int64(len(boxes))}))
        texts = scene_captions(objects, rng)
        captions[split].extend(texts)
        ids[split].extend([imgid] if split == "train" else [imgid] * len(texts))
        images.append({
            "filepath": "", "filename": f"{stem}.jpg", "imgid": imgid, "split": SPLIT_NAMES[split],
            "sentids": list(range(sentid, sentid + len(texts))),
            "sentences": [{"raw": t, "tokens": t.lower().rstrip(" .").replace(",", "").replace(":", "").split(),
                           "imgid": imgid, "sentid": sentid + k} for k, t in enumerate(texts)],
        })
        sentid += len(texts)
    for split in sizes:
        write_bytes_atomic(precomp / f"{split}_caps.txt", _lines(captions[split]))
        write_bytes_atomic(precomp / f"{split}_ids.txt", _lines(map(str, ids[split])))
    write_bytes_atomic(root / KARPATHY_JSON, json.dumps({"images": images, "dataset": "flickr30k"},
                                                   separators=(",", ":")).encode("utf-8"))
    write_bytes_atomic(done, expected.encode("utf-8"))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python3 -m mmnas.demo.shapes_itm --root datasets/shapes_itm``."""
    parser = argparse.ArgumentParser(prog="python3 -m mmnas.demo.shapes_itm",
                                     description="Write the synthetic image-text matching demo in the Flickr30K "
                                                 "layout (f30k_precomp/, dataset_flickr30k.json, "
                                                 "flickr_bua-r101-fix36/).")
    parser.add_argument("--root", default="datasets/shapes_itm", help="output folder (default: %(default)s)")
    parser.add_argument("--train", type=int, default=2000, help="training images (default: %(default)s)")
    parser.add_argument("--dev", type=int, default=100, help="dev images (default: %(default)s)")
    parser.add_argument("--test", type=int, default=1000, help="test images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run_generator(lambda: prepare_shapes_itm(args.root, args.train, args.dev, args.test, args.seed,
                                                    progress=not args.quiet))


if __name__ == "__main__":
    sys.exit(main())
