"""Image-text retrieval metrics of spec §7 (ITM): ranks, R@1/5/10, median and mean rank both ways, rsum, the COCO 1K
(5-fold) protocol, and a scorer CLI over a saved scores matrix.

The scores matrix is ``[images, captions]``; caption k belongs to image ``k // 5`` (SCAN's precomputed layout),
or to ``caption_image[k]`` where an explicit map is given (a subset of a split).

Ranks are 1-based and ties count against the ground truth (pessimistic): a wrong candidate whose score equals the
ground truth's is ranked above it. So

* image → text: rank = 1 + number of *wrong* captions scoring ≥ the best of the image's own captions
  (a tie between two of its own captions does not hurt);
* text → image: rank = 1 + number of *other* images scoring ≥ the caption's own image.

A network that gives every pair the same score (e.g. saturated sigmoids) therefore gets the worst ranks, never
R@1 = 100 %. The release sorted with ``np.argsort`` and broke ties by index order; for distinct scores the two
conventions give the same ranks. Median rank is ``floor(median)`` as in the release (its 0-based median plus one).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmnas.errors import UserError

__all__ = ["RetrievalInputError", "CAPTIONS_PER_IMAGE", "RECALL_KS", "i2t_ranks", "t2i_ranks", "rank_summary",
           "retrieval_metrics", "fold_metrics", "flatten_metrics", "main"]

CAPTIONS_PER_IMAGE = 5
RECALL_KS = (1, 5, 10)
DECIMALS = 4  # places of the reported recalls (%), mean ranks and rsum
_ROW_BLOCK = 256  # images per block when counting ranks (bounds the temporary [block, captions] arrays)


class RetrievalInputError(UserError, ValueError):
    """A scores matrix (or caption → image map) that cannot be evaluated; the message names the fix."""


def _check(scores: np.ndarray, caption_image: np.ndarray | None, per_image: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise RetrievalInputError(f"the scores must be a non-empty 2-D matrix [images, captions], got shape "
                                  f"{scores.shape}.")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise RetrievalInputError(f"the scores must be real numbers, got dtype {scores.dtype}.")
    if not np.isfinite(scores).all():
        raise RetrievalInputError(f"the scores hold {int((~np.isfinite(scores)).sum())} NaN or infinite value(s); "
                                  f"rescore with a network whose outputs are finite.")
    n_img, n_cap = scores.shape
    if caption_image is None:
        if n_cap != per_image * n_img:
            raise RetrievalInputError(
                f"the scores matrix has {n_img} images and {n_cap} captions, but caption k must belong to image "
                f"k // {per_image}, so there must be exactly {per_image * n_img} captions. Save the matrix as "
                f"[images, captions] (transpose it if needed) with every image's {per_image} captions in image order.")
        caption_image = np.arange(n_cap) // per_image
    caption_image = np.asarray(caption_image, dtype=np.int64)
    if caption_image.shape != (n_cap,) or (n_cap and (caption_image.min() < 0 or caption_image.max() >= n_img)):
        raise RetrievalInputError(f"caption_image must give an image index in [0, {n_img}) for each of the {n_cap} "
                                  f"captions.")
    if np.bincount(caption_image, minlength=n_img).min() == 0:
        raise RetrievalInputError("every image needs at least one caption for image → text ranks.")
    return scores, caption_image


def i2t_ranks(scores: np.ndarray, caption_image: np.ndarray | None = None,
              per_image: int = CAPTIONS_PER_IMAGE) -> np.ndarray:
    """1-based rank of the best of each image's captions among all captions, ties against the ground truth: int64
    [images]."""
    scores, caption_image = _check(scores, caption_image, per_image)
    n_img = scores.shape[0]
    ranks = np.empty(n_img, dtype=np.int64)
    for start in range(0, n_img, _ROW_BLOCK):
        rows = np.arange(start, min(start + _ROW_BLOCK, n_img))
        block = scores[rows]                                        # [b, C]
        own = caption_image[None, :] == rows[:, None]               # [b, C] True on the image's own captions
        best = np.where(own, block, -np.inf).max(axis=1)            # [b]
        ranks[rows] = 1 + ((block >= best[:, None]) & ~own).sum(axis=1)
    return ranks


def t2i_ranks(scores: np.ndarray, caption_image: np.ndarray | None = None,
              per_image: int = CAPTIONS_PER_IMAGE) -> np.ndarray:
    """1-based rank of each caption's image among all images, ties against the ground truth: int64 [captions]."""
    scores, caption_image = _check(scores, caption_image, per_image)
    n_cap = scores.shape[1]
    truth = scores[caption_image, np.arange(n_cap)]                 # [C]
    ranks = np.zeros(n_cap, dtype=np.int64)
    for start in range(0, scores.shape[0], _ROW_BLOCK):
        # Counting the caption's own image too (score ≥ itself) supplies the +1.
        ranks += (scores[start:start + _ROW_BLOCK] >= truth[None, :]).sum(axis=0)
    return ranks


def rank_summary(ranks: Sequence[int] | np.ndarray) -> dict[str, float]:
    """R@1/5/10 in %, median rank (floor, as the release) and mean rank of 1-based ranks, to DECIMALS places."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"r{k}": round(float(100.0 * (ranks <= k).mean()), DECIMALS) for k in RECALL_KS}
    out["medr"] = float(np.floor(np.median(ranks)))
    out["meanr"] = round(float(ranks.mean()), DECIMALS)
    return out


def retrieval_metrics(scores: np.ndarray, caption_image: np.ndarray | None = None,
                      per_image: int = CAPTIONS_PER_IMAGE) -> dict[str, Any]:
    """{"i2t": {r1, r5, r10, medr, meanr}, "t2i": {…}, "rsum": sum of the six recalls}."""
    i2t = rank_summary(i2t_ranks(scores, caption_image, per_image))
    t2i = rank_summary(t2i_ranks(scores, caption_image, per_image))
    rsum = sum(i2t[f"r{k}"] + t2i[f"r{k}"] for k in RECALL_KS)
    return {"i2t": i2t, "t2i": t2i, "rsum": round(float(rsum), DECIMALS)}


def fold_metrics(scores: np.ndarray, folds: int = 5, per_image: int = CAPTIONS_PER_IMAGE) -> dict[str, Any]:
    """The COCO 1K protocol: the images cut into `folds` equal consecutive folds (5 × 1,000 of the 5K test set), each
    scored against its own captions only; every number averaged over the folds (as VSE++/SCAN report it)."""
    scores, _ = _check(scores, None, per_image)
    n_img = scores.shape[0]
    if folds < 1 or n_img % folds:
        raise RetrievalInputError(f"{n_img} images cannot be cut into {folds} equal folds; the COCO 1K protocol "
                                  f"needs the 5,000-image test set (testall) and --folds 5.")
    size = n_img // folds
    parts = [retrieval_metrics(scores[f * size:(f + 1) * size, f * size * per_image:(f + 1) * size * per_image],
                               per_image=per_image) for f in range(folds)]
    avg = {d: {k: round(float(np.mean([p[d][k] for p in parts])), DECIMALS) for k in parts[0][d]}
           for d in ("i2t", "t2i")}
    avg["rsum"] = round(float(sum(avg[d][f"r{k}"] for d in ("i2t", "t2i") for k in RECALL_KS)), DECIMALS)
    return avg


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"i2t": {"r1": …}} → {"i2t_r1": …, …, "rsum": …} (flat numbers for run logs)."""
    flat = {f"{prefix}{d}_{k}": v for d in ("i2t", "t2i") for k, v in metrics[d].items()}
    flat[f"{prefix}rsum"] = metrics["rsum"]
    return flat


def load_scores(path: str | Path) -> np.ndarray:
    path = Path(path)
    fix = "Give the [images, captions] scores matrix written by `train_itm.py --RUN test` (scores_<VERSION>.npy)."
    if not path.is_file():
        raise RetrievalInputError(f"scores file {path} does not exist. {fix}")
    try:
        scores = np.load(path, allow_pickle=False)
    except Exception as e:  # not an .npy, pickled objects, truncated file
        raise RetrievalInputError(f"scores file {path} cannot be read as a numpy .npy array "
                                  f"({type(e).__name__}: {e}). {fix}") from None
    if not isinstance(scores, np.ndarray):
        raise RetrievalInputError(f"scores file {path} holds several arrays (an .npz); {fix}")
    return scores


def main(argv: list[str] | None = None) -> int:
    """CLI: print the retrieval metrics of a scores matrix as one json object; exit 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python3 -m mmnas.evaluation.retrieval",
        description="Image-text retrieval metrics (R@1/5/10, median and mean rank both ways, rsum) of a scores "
                    "matrix [images, captions] where caption k belongs to image k // 5. Ties count against the "
                    "ground truth.")
    parser.add_argument("scores", help="scores .npy, [images, captions] (e.g. logs/ckpts/result_test/"
                                       "scores_<VERSION>.npy)")
    parser.add_argument("--captions-per-image", type=int, default=CAPTIONS_PER_IMAGE,
                        help="captions per image (default %(default)s)")
    parser.add_argument("--folds", type=int, default=1,
                        help="average over this many consecutive image folds (COCO 1K protocol: 5 on the 5K test "
                             "set); default 1 = the whole matrix (Flickr30K 1K, COCO 5K)")
    args = parser.parse_args(argv)
    try:
        if args.captions_per_image < 1:
            raise RetrievalInputError("--captions-per-image must be a positive integer.")
        scores = load_scores(args.scores)
        try:
            metrics = (retrieval_metrics(scores, per_image=args.captions_per_image) if args.folds == 1
                       else fold_metrics(scores, args.folds, args.captions_per_image))
        except RetrievalInputError as e:
            raise RetrievalInputError(f"scores file {args.scores}: {e}") from None
    except RetrievalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
