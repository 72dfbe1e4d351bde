"""The built-in visual grounding demo (`--DATASET shapes`): synthetic scenes of coloured shapes with referring
expressions that need attributes and spatial relations, written in the RefCOCO formats of spec §6 (per-split json,
one flat folder of bottom-up-style ``.npz`` region features keyed by image id).

A scene holds 4–6 non-overlapping shapes (circle, square, triangle; red, green, blue, yellow; small or big) on a
light background, rendered with PIL. An expression names some of the target's attributes and relates it to a
uniquely named landmark (left of, right of, above, below, next to): "the small red circle left of the blue square".
In the `relation` subset (about half the expressions) another object shares every attribute the expression names
and clearly fails the relation, so only the relation tells them apart; in the `attribute` subset the named
attributes already single the target out. Each entry carries its subset under the extra key "subset". A direction
can be read off the candidates' order ("the left one of the two red circles"); "next to" needs the landmark, so it is
drawn more often.

Regions come from a deterministic detector-like step: per object a jittered tight box (IoU ≥ 0.6 with the object)
and a loose, shifted one, plus 3–5 random background boxes, shuffled. Features are computed from the pixels inside
each box (see FEATURE_NAMES) — no pretrained weights. Images are not stored (pass ``--images`` to keep PNGs).

    python3 -m mmnas.demo.shapes_vgd --root datasets/shapes_vgd
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmnas.demo.files import npz_bytes, run_generator, write_bytes_atomic

__all__ = ["VERSION", "NAME", "DONE_FILE", "FEATURE_NAMES", "FEATURE_DIM", "MAX_REGIONS", "SPLIT_IMAGES",
           "render_scene", "detect_regions", "region_features", "scene_expressions", "prepare_shapes_vgd", "main"]

# Bump whenever the produced bytes change, so that an existing tree is rebuilt.
VERSION = "shapes-vgd-v1"
NAME = "shapes"                      # the --DATASET name and the folder of the split files
DONE_FILE = "DONE"
FEATURE_DIR = "bua-r101-fix100"
IMAGE_SIZE = 128
MAX_REGIONS = 20                     # at most 6 objects x 2 boxes + 5 background boxes = 17
SEED = 20200612
# images per split and the image-id offset of the split (ids are unique over all splits)
SPLIT_IMAGES: dict[str, int] = {"train": 3000, "val": 250, "testA": 250, "testB": 250}
SPLIT_ID_OFFSET = {"train": 0, "val": 100_000, "testA": 200_000, "testB": 300_000}
EXPRESSIONS_PER_IMAGE = 3
RELATION_SHARE = 0.5                 # chance that an expression is drawn from the relation-ambiguous candidates

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 40), "green": (40, 160, 65), "blue": (45, 85, 215), "yellow": (225, 190, 35)}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, tuple[int, int]] = {"small": (7, 10), "big": (14, 19)}  # half-extent in pixels
ATTRIBUTES = ("size", "colour", "shape")
# Attribute sets an expression may name for its target / its landmark.
TARGET_NAMINGS = (("colour", "shape"), ("size", "colour", "shape"), ("size", "shape"), ("colour",))
LANDMARK_NAMINGS = (("colour", "shape"), ("size", "colour", "shape"))
RELATIONS = ("left", "right", "above", "below", "near")
RELATION_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "left": (("left", "of"), ("to", "the", "left", "of")),
    "right": (("right", "of"), ("to", "the", "right", "of")),
    "above": (("above",), ("over",)),
    "below": (("below",), ("under",)),
    "near": (("next", "to"), ("near",), ("beside",)),
}
MARGIN = 6.0                         # pixels between centres for a direction to hold (and to clearly fail)
NEAR, FAR = 12.0, 28.0               # gap between the boxes for "near" to hold / to clearly fail
NEAR_WEIGHT = 4.0                    # "near" needs the landmark (a direction can be read off the candidates'
                                     # order): favour it when drawing an expression

FEATURE_NAMES: tuple[str, ...] = (
    ("mean_r", "mean_g", "mean_b", "fg_frac", "fg_r", "fg_g", "fg_b", "fg_opp_a", "fg_opp_b", "fg_sat", "fg_val")
    + tuple(f"fg_sub_{row}{col}" for row in range(4) for col in range(4))
    + tuple(f"edge_dir_{45 * k}" for k in range(8))
    + ("x1", "y1", "x2", "y2", "box_area", "centre_x", "centre_y", "fg_area")
)
FEATURE_DIM = len(FEATURE_NAMES)  # 43


# -- scenes -------------------------------------------------------------------------------------------------------
def _sample_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    """4–6 objects; often a 'twin' that repeats another object's colour and shape (maybe its size too), so that
    relation-ambiguous expressions exist."""
    n = int(rng.integers(4, 7))
    objs = [{"size": str(rng.choice(list(SIZES))), "colour": str(rng.choice(list(COLOURS))),
             "shape": str(rng.choice(SHAPES))} for _ in range(n)]
    if rng.random() < 0.75:
        objs[1]["colour"], objs[1]["shape"] = objs[0]["colour"], objs[0]["shape"]
        if rng.random() < 0.5:
            objs[1]["size"] = objs[0]["size"]
    for o in objs:
        lo, hi = SIZES[o["size"]]
        o["r"] = int(rng.integers(lo, hi + 1))
    # place without overlap: bounding squares at least 4 px apart
    for _ in range(200):
        placed: list[tuple[float, float, int]] = []
        for o in objs:
            for _ in range(100):
                cx, cy = rng.uniform(o["r"] + 2, IMAGE_SIZE - o["r"] - 3, size=2)
                if all(abs(cx - px) > o["r"] + pr + 4 or abs(cy - py) > o["r"] + pr + 4 for px, py, pr in placed):
                    placed.append((float(cx), float(cy), o["r"]))
                    break
            else:
                break
        if len(placed) == len(objs):
            for o, (cx, cy, _) in zip(objs, placed):
                o["cx"], o["cy"] = round(cx), round(cy)
            return objs
    raise RuntimeError("could not place the shapes of a scene")  # not reached with these sizes


def render_scene(objs: list[dict[str, Any]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB image ``[H,W,3]`` uint8, the background colour ``[3]`` and the objects' tight boxes ``[n,4]`` (x1,y1,x2,y2,
    inclusive pixels, read from a label map drawn alongside)."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    labels = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    for k, o in enumerate(objs):
        colour = tuple(int(np.clip(c + v, 0, 255)) for c, v in zip(COLOURS[o["colour"]], rng.integers(-15, 16, 3)))
        cx, cy, r = o["cx"], o["cy"], o["r"]
        for d, fill in ((draw, colour), (draw_label, k + 1)):
            if o["shape"] == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            elif o["shape"] == "square":
                s = round(r * 0.88)
                d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
            else:
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    lab = np.asarray(labels)
    boxes = np.empty((len(objs), 4), dtype=np.float64)
    for k, o in enumerate(objs):  # read each object's extent from its own window of the label map
        x0, y0 = max(o["cx"] - o["r"] - 2, 0), max(o["cy"] - o["r"] - 2, 0)
        ys, xs = np.nonzero(lab[y0:o["cy"] + o["r"] + 3, x0:o["cx"] + o["r"] + 3] == k + 1)
        boxes[k] = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max(), y0 + ys.max()]
    return np.asarray(image), np.asarray(background, dtype=np.float32), boxes


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
    inter = iw * ih
    return inter / (area(a) + area(b) - inter)


def _clip(boxes: np.ndarray) -> np.ndarray:
    boxes = np.clip(boxes, 0, IMAGE_SIZE - 1)
    boxes[:, 2] = np.maximum(boxes[:, 2], np.minimum(boxes[:, 0] + 3, IMAGE_SIZE - 1))
    boxes[:, 3] = np.maximum(boxes[:, 3], np.minimum(boxes[:, 1] + 3, IMAGE_SIZE - 1))
    return boxes


def detect_regions(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Detector-like proposals ``[R,4]`` float32 for the objects' boxes ``gt [n,4]``: a tight jittered box per object
    (IoU ≥ 0.6), a loose shifted one, and 3–5 random background boxes; shuffled, one decimal."""
    w, h = gt[:, 2] - gt[:, 0] + 1, gt[:, 3] - gt[:, 1] + 1
    size = np.stack([w, h, w, h], axis=1)
    tight = gt.copy()
    todo = np.ones(len(gt), dtype=bool)
    for _ in range(20):  # redraw the jitter of the boxes still below IoU 0.6
        cand = _clip(gt + rng.normal(0.0, 0.1, gt.shape) * size)
        ok = todo & (_iou(cand, gt) >= 0.6)
        tight[ok] = cand[ok]
        todo &= ~ok
        if not todo.any():
            break
    centre = np.stack([(gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2], axis=1)
    shift = rng.uniform(-0.35, 0.35, (len(gt), 2)) * np.stack([w, h], axis=1)
    half = rng.uniform(1.25, 1.8, (len(gt), 1)) * np.stack([w, h], axis=1) / 2
    loose = _clip(np.concatenate([centre + shift - half, centre + shift + half], axis=1))
    n_bg = int(rng.integers(3, 6))
    bw = rng.uniform(8, 40, (n_bg, 2))
    start = rng.uniform(0, 1, (n_bg, 2)) * (IMAGE_SIZE - bw)
    background = _clip(np.concatenate([start, start + bw], axis=1))
    boxes = np.concatenate([tight, loose, background])
    return np.round(boxes[rng.permutation(len(boxes))], 1).astype(np.float32)


def region_features(image: np.ndarray, background: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Features ``[R, FEATURE_DIM]`` float32 of the pixels inside each box (integral images: vectorised over boxes)."""
    height, width = image.shape[:2]
    pixels = image.astype(np.float32) / 255.0
    diff = np.abs(image.astype(np.float32) - background)
    distance = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])   # [H,W], 0-255
    fg = (distance > 40.0).astype(np.float32)
    soft = np.clip(distance / max(float(distance.max()), 24.0), 0.0, 1.0)
    padded = np.pad(soft, 1, mode="edge")
    gx = (padded[1:-1, 2:] - padded[1:-1, :-2]) * 0.5
    gy = (padded[2:, 1:-1] - padded[:-2, 1:-1]) * 0.5
    # boundary directions, only where the mask changes: linear interpolation between the two nearest of 8 bins
    edge = np.flatnonzero((gx != 0) | (gy != 0))
    ex, ey = gx.ravel()[edge], gy.ravel()[edge]
    magnitude = np.hypot(ex, ey)
    position = (np.arctan2(ey, ex) % (2 * np.pi)) / (2 * np.pi / 8)
    lower = np.floor(position).astype(np.int64) % 8
    frac = position - np.floor(position)
    bins = np.zeros((len(edge), 8))                                        # [E,8] boundary length per bin
    bins[np.arange(len(edge)), lower] = magnitude * (1 - frac)
    bins[np.arange(len(edge)), (lower + 1) % 8] += magnitude * frac
    edge_y, edge_x = np.divmod(edge, width)
    channels = np.concatenate([pixels, fg[..., None], pixels * fg[..., None]], axis=-1)  # [H,W,7]
    integral = np.zeros((height + 1, width + 1, channels.shape[-1]), dtype=np.float32)
    np.cumsum(channels, axis=1, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=0, out=integral[1:, 1:])

    b = np.round(boxes).astype(np.int64)
    x1, y1 = np.clip(b[:, 0], 0, width - 1), np.clip(b[:, 1], 0, height - 1)
    x2, y2 = np.clip(b[:, 2], x1, width - 1) + 1, np.clip(b[:, 3], y1, height - 1) + 1   # exclusive ends

    def box_sum(ya, yb, xa, xb):
        return integral[yb, xb] - integral[ya, xb] - integral[yb, xa] + integral[ya, xa]

    sums = box_sum(y1, y2, x1, x2)                                         # [R,7]
    area = ((x2 - x1) * (y2 - y1)).astype(np.float64)
    mean = sums[:, 0:3] / area[:, None]
    count = sums[:, 3]
    fg_mean = sums[:, 4:7] / np.maximum(count, 1.0)[:, None]
    red, green, blue = fg_mean[:, 0], fg_mean[:, 1], fg_mean[:, 2]
    value = fg_mean.max(axis=1)
    saturation = (value - fg_mean.min(axis=1)) / np.maximum(value, 1e-6)
    k = np.arange(5)
    xe = x1[:, None] + np.round(k * (x2 - x1)[:, None] / 4).astype(np.int64)   # [R,5] cell edges
    ye = y1[:, None] + np.round(k * (y2 - y1)[:, None] / 4).astype(np.int64)
    ya, yb = ye[:, :4, None], ye[:, 1:, None]                              # [R,4,1]
    xa, xb = xe[:, None, :4], xe[:, None, 1:]                              # [R,1,4]
    cell_fg = (integral[yb, xb, 3] - integral[ya, xb, 3] - integral[yb, xa, 3] + integral[ya, xa, 3])
    sub = (cell_fg / np.maximum((yb - ya) * (xb - xa), 1)).reshape(len(b), 16)
    inside = ((edge_x >= x1[:, None]) & (edge_x < x2[:, None]) & (edge_y >= y1[:, None]) & (edge_y < y2[:, None]))
    edges = (inside.astype(np.float64) @ bins) / np.sqrt(area)[:, None]   # [R,8]
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    feat = np.concatenate([
        mean, (count / area)[:, None], fg_mean,
        ((2 * red - green - blue) / 2)[:, None], ((green - blue) * np.sqrt(3) / 2)[:, None],
        saturation[:, None], value[:, None], sub, edges,
        boxes[:, 0:1] / width, boxes[:, 1:2] / height, boxes[:, 2:3] / width, boxes[:, 3:4] / height,
        (bw * bh / (width * height))[:, None],
        ((boxes[:, 0] + boxes[:, 2]) / 2 / width)[:, None], ((boxes[:, 1] + boxes[:, 3]) / 2 / height)[:, None],
        (count / (width * height) * 20)[:, None],
    ], axis=1).astype(np.float32)
    assert feat.shape == (len(b), FEATURE_DIM)
    return feat


# -- expressions --------------------------------------------------------------------------------------------------
def _gap(a: dict, b: dict) -> float:
    """Pixels between the boxes of a and b along the axis where they are furthest apart (0 when they touch)."""
    return max(abs(a["cx"] - b["cx"]) - a["hw"] - b["hw"], abs(a["cy"] - b["cy"]) - a["hh"] - b["hh"], 0.0)


def _holds(rel: str, a: dict, b: dict, margin: float = MARGIN) -> bool:
    """Whether object a is `rel` of object b: by more than `margin` pixels between centres for a direction, by a
    gap of at most NEAR pixels for "near"."""
    if rel == "near":
        return _gap(a, b) <= NEAR
    if rel == "left":
        return a["cx"] < b["cx"] - margin
    if rel == "right":
        return a["cx"] > b["cx"] + margin
    if rel == "above":
        return a["cy"] < b["cy"] - margin
    return a["cy"] > b["cy"] + margin


def _fails(rel: str, a: dict, b: dict) -> bool:
    """Whether object a is clearly not `rel` of object b (the opposite direction holds; far apart for "near")."""
    if rel == "near":
        return _gap(a, b) >= FAR
    return _holds({"left": "right", "right": "left", "above": "below", "below": "above"}[rel], a, b)


def scene_expressions(objs: list[dict[str, Any]]) -> tuple[list[tuple], list[tuple]]:
    """Every valid (target, naming, landmark, landmark naming, relation), split into the relation-ambiguous ones
    (another object shares the target's named attributes and clearly fails the relation) and the others."""
    def matches(naming, k):
        return [j for j, o in enumerate(objs) if all(o[a] == objs[k][a] for a in naming)]

    landmark_naming = {}
    for k in range(len(objs)):
        for naming in LANDMARK_NAMINGS:
            if len(matches(naming, k)) == 1:
                landmark_naming[k] = naming
                break
    relation, attribute = [], []
    for t in range(len(objs)):
        for naming in TARGET_NAMINGS:
            others = [j for j in matches(naming, t) if j != t]
            for lm, lm_naming in landmark_naming.items():
                if lm == t or lm in others:
                    continue
                for rel in RELATIONS:
                    if not _holds(rel, objs[t], objs[lm]):
                        continue
                    item = (t, naming, lm, lm_naming, rel)
                    if not others:
                        attribute.append(item)
                    elif all(_fails(rel, objs[j], objs[lm]) for j in others):
                        relation.append(item)
    return relation, attribute


def _phrase(obj: dict, naming: Sequence[str], noun_if_no_shape: str = "one") -> list[str]:
    words = ["the"] + [obj[a] for a in ("size", "colour") if a in naming]
    return words + [obj["shape"] if "shape" in naming else noun_if_no_shape]


def _tokens(item: tuple, objs: list[dict], rng: np.random.Generator) -> list[str]:
    t, naming, lm, lm_naming, rel = item
    words = RELATION_WORDS[rel][int(rng.integers(len(RELATION_WORDS[rel])))]
    return _phrase(objs[t], naming) + list(words) + _phrase(objs[lm], lm_naming)


def _pick(relation: list, attribute: list, rng: np.random.Generator, k: int) -> list[tuple[tuple, str]]:
    """k expressions of a scene, each drawn from the relation candidates with probability RELATION_SHARE (when there
    are any), preferring targets not yet used."""
    chosen: list[tuple[tuple, str]] = []
    used: set[int] = set()
    for _ in range(k):
        pools = [(relation, "relation"), (attribute, "attribute")]
        if not relation or (attribute and rng.random() >= RELATION_SHARE):
            pools.reverse()
        pool, subset = next((p, s) for p, s in pools if p)
        fresh = [c for c in pool if c[0] not in used] or pool
        weight = np.array([NEAR_WEIGHT if c[4] == "near" else 1.0 for c in fresh])
        item = fresh[int(rng.choice(len(fresh), p=weight / weight.sum()))]
        used.add(item[0])
        chosen.append((item, subset))
    return chosen


# -- files --------------------------------------------------------------------------------------------------------


def _done_text(limit: int | None) -> str:
    return f"{VERSION} limit={limit}\n"


def _scene(split: str, i: int) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict]]:
    """Image, region boxes and features (as the npz keys), and the expression entries of image i of a split."""
    rng = np.random.default_rng([SEED, list(SPLIT_IMAGES).index(split), i])
    while True:  # a scene without any valid expression (no uniquely named landmark …) is drawn again
        objs = _sample_objects(rng)
        image, background, gt = render_scene(objs, rng)
        for o, box in zip(objs, gt):  # relations are judged on the rendered boxes
            o["cx"], o["cy"] = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            o["hw"], o["hh"] = (box[2] - box[0] + 1) / 2, (box[3] - box[1] + 1) / 2
        relation, attribute = scene_expressions(objs)
        if relation or attribute:
            break
    regions = detect_regions(gt, rng)
    feat = region_features(image, background, regions)
    image_id = SPLIT_ID_OFFSET[split] + i
    refs = []
    for k, (item, subset) in enumerate(_pick(relation, attribute, rng, EXPRESSIONS_PER_IMAGE)):
        x1, y1, x2, y2 = (float(v) for v in gt[item[0]])
        refs.append({"tokens": _tokens(item, objs, rng), "image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "split": split, "file_name": f"SHAPES_{image_id:012d}_{k}.jpg", "name": objs[item[0]]["shape"],
                     "height": IMAGE_SIZE, "width": IMAGE_SIZE, "subset": subset,
                     "ref_id": image_id * 10 + k, "sent_id": image_id * 10 + k})
    npz = {"x": np.ascontiguousarray(feat.T), "bbox": regions, "image_h": np.int64(IMAGE_SIZE),
           "image_w": np.int64(IMAGE_SIZE), "num_bbox": np.int64(len(regions))}
    return image, npz, refs, objs


def prepare_shapes_vgd(root: str | os.PathLike, progress: bool = True, limit: int | None = None,
                       save_images: bool = False) -> Path:
    """Write the demo under ``root``: ``shapes/{train,val,testA,testB}.json`` and ``bua-r101-fix100/*.npz``, then
    the ``DONE`` marker. ``limit`` keeps the first ``limit`` images of each split (a prefix of the full data: image i
    of a split is the same whatever the limit). Returns at once when a complete tree of the same version and limit
    exists. Deterministic: the same bytes on every run."""
    root = Path(root)
    done = root / DONE_FILE
    expected = _done_text(limit)
    if done.is_file() and done.read_text() == expected:
        return root
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit}")
    ref_dir, feat_dir, image_dir = root / NAME, root / FEATURE_DIR, root / "images"
    for folder in (ref_dir, feat_dir) + ((image_dir,) if save_images else ()):
        folder.mkdir(parents=True, exist_ok=True)
    if done.exists():
        done.unlink()  # a stale marker must not survive a half-finished rebuild
    jobs = [(split, i) for split, n in SPLIT_IMAGES.items() for i in range(min(n, limit or n))]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="shapes VGD demo", unit="img")
    refs: dict[str, list[dict]] = {split: [] for split in SPLIT_IMAGES}
    for split, i in jobs:
        image, npz, split_refs, _ = _scene(split, i)
        image_id = SPLIT_ID_OFFSET[split] + i
        write_bytes_atomic(feat_dir / f"SHAPES_{image_id:012d}.jpg.npz", npz_bytes(npz))
        if save_images:
            from PIL import Image
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            write_bytes_atomic(image_dir / f"SHAPES_{image_id:012d}.png", buf.getvalue())
        refs[split].extend(split_refs)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    # Features first, json after: a split file never names an image without features.
    for split, entries in refs.items():
        write_bytes_atomic(ref_dir / f"{split}.json", json.dumps(entries, separators=(",", ":")).encode("utf-8"))
    write_bytes_atomic(done, expected.encode("utf-8"))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mmnas.demo.shapes_vgd",
                                     description="Generate the synthetic visual grounding demo (RefCOCO formats).")
    parser.add_argument("--root", default="datasets/shapes_vgd", help="output folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    parser.add_argument("--images", action="store_true", help="also write the rendered scenes as PNG under images/")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run_generator(lambda: prepare_shapes_vgd(args.root, progress=not args.quiet, limit=args.limit,
                                                    save_images=args.images))


if __name__ == "__main__":
    sys.exit(main())
