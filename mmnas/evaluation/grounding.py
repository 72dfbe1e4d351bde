"""Box maths of visual grounding (spec §3 VGD, §7): IoU with the +1 pixel convention, the Fast R-CNN box transform and
its inverse (normalised by stds 0.1, 0.1, 0.2, 0.2), clipping to the image, and accuracy at IoU ≥ 0.5.

Boxes are x1, y1, x2, y2 in pixels with inclusive ends: a box's width is x2 − x1 + 1. Everything is vectorised numpy
(float64); torch tensors are accepted and converted."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "BOX_STDS",
    "BOX_MEANS",
    "OVERLAP_THRESHOLD",
    "xywh_to_xyxy",
    "box_iou",
    "paired_iou",
    "box_transform",
    "box_transform_inv",
    "clip_boxes",
    "grounding_accuracy",
]

BOX_STDS = (0.1, 0.1, 0.2, 0.2)   # BBOX_NORM_STDS: the regression targets are divided by these
BOX_MEANS = (0.0, 0.0, 0.0, 0.0)  # BBOX_NORM_MEANS
OVERLAP_THRESHOLD = 0.5           # OVERLAP_THRESHOLD: a positive region, and a correct prediction


def _boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise ValueError(f"boxes must have 4 coordinates in the last axis, got shape {arr.shape}")
    return arr


def xywh_to_xyxy(boxes) -> np.ndarray:
    """RefCOCO/COCO [x, y, w, h] → [x1, y1, x2, y2] with x2 = x + w, y2 = y + h (the release's conversion)."""
    b = _boxes(boxes)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def _sizes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return b[..., 2] - b[..., 0] + 1.0, b[..., 3] - b[..., 1] + 1.0


def box_iou(a, b) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of boxes ``a [N,4]`` and ``b [M,4]``; area = (x2−x1+1)(y2−y1+1), and boxes that do not
    overlap by at least one pixel's worth (intersection width or height ≤ 0) have IoU 0."""
    a, b = _boxes(a), _boxes(b)
    aw, ah = _sizes(a)
    bw, bh = _sizes(b)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1.0
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1.0
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = (aw * ah)[:, None] + (bw * bh)[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def paired_iou(a, b) -> np.ndarray:
    """IoU of row i of ``a [..., 4]`` with row i of ``b [..., 4]`` (the diagonal of :func:`box_iou`)."""
    a, b = np.broadcast_arrays(_boxes(a), _boxes(b))
    aw, ah = _sizes(a)
    bw, bh = _sizes(b)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1.0
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1.0
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = aw * ah + bw * bh - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_transform(regions, gt, stds: Sequence[float] = BOX_STDS, means: Sequence[float] = BOX_MEANS) -> np.ndarray:
    """Normalised Fast R-CNN deltas ``[..., 4]`` that move each region onto ``gt`` (broadcast against ``regions``).

    With +1 sizes w = x2−x1+1 and centres cx = x1 + w/2 (Fast R-CNN's): (dx, dy, dw, dh) = ((gx−ex)/ew, (gy−ey)/eh,
    log(gw/ew), log(gh/eh)), then (d − means) / stds."""
    e, g = np.broadcast_arrays(_boxes(regions), _boxes(gt))
    ew, eh = _sizes(e)
    gw, gh = _sizes(g)
    ex, ey = e[..., 0] + 0.5 * ew, e[..., 1] + 0.5 * eh
    gx, gy = g[..., 0] + 0.5 * gw, g[..., 1] + 0.5 * gh
    deltas = np.stack([(gx - ex) / ew, (gy - ey) / eh, np.log(gw / ew), np.log(gh / eh)], axis=-1)
    return (deltas - np.asarray(means, dtype=np.float64)) / np.asarray(stds, dtype=np.float64)


def box_transform_inv(regions, deltas, stds: Sequence[float] = BOX_STDS,
                      means: Sequence[float] = BOX_MEANS) -> np.ndarray:
    """Boxes ``[..., 4]`` decoded from normalised deltas: un-normalise (× stds + means), then centre ± half the
    predicted size, where size = exp(dw)·(x2−x1+1). There is deliberately no −1 on the decoded x2/y2 (a release
    quirk, spec §3): decoding the exact target of a box gives x2 + 1, so even a perfect regression scores an IoU a
    little below 1."""
    e = _boxes(regions)
    d = _boxes(deltas) * np.asarray(stds, dtype=np.float64) + np.asarray(means, dtype=np.float64)
    ew, eh = _sizes(e)
    cx = e[..., 0] + 0.5 * ew + d[..., 0] * ew
    cy = e[..., 1] + 0.5 * eh + d[..., 1] * eh
    w = np.exp(d[..., 2]) * ew
    h = np.exp(d[..., 3]) * eh
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def clip_boxes(boxes, width, height) -> np.ndarray:
    """Clip x to [0, width − 1] and y to [0, height − 1]; ``width``/``height`` are numbers or arrays broadcast over
    the leading axes of ``boxes [..., 4]`` (one image size per box)."""
    b = _boxes(boxes).copy()
    xmax = np.asarray(width, dtype=np.float64)[..., None] - 1.0
    ymax = np.asarray(height, dtype=np.float64)[..., None] - 1.0
    b[..., 0::2] = np.maximum(np.minimum(b[..., 0::2], xmax), 0.0)
    b[..., 1::2] = np.maximum(np.minimum(b[..., 1::2], ymax), 0.0)
    return b


def grounding_accuracy(pred_boxes, gt_boxes, threshold: float = OVERLAP_THRESHOLD) -> float:
    """Percentage of predictions whose IoU with their ground truth is ≥ ``threshold`` (spec §7)."""
    iou = paired_iou(pred_boxes, gt_boxes)
    return float(100.0 * np.mean(iou >= threshold)) if iou.size else 0.0
