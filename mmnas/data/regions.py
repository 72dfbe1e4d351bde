"""Bottom-up region features on disk, padding, pair geometry and box features (spec §1, §6)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mmnas.errors import DataError

__all__ = [
    "RegionFileError",
    "image_id_from_filename",
    "load_region_npz",
    "pad_regions",
    "box_geometry",
    "box_feature",
]

_REQUIRED_KEYS = ("x", "bbox", "image_h", "image_w", "num_bbox")


class RegionFileError(DataError, ValueError):
    """A region-feature ``.npz`` file is missing, unreadable or not in the bottom-up format."""


def image_id_from_filename(name: str | os.PathLike) -> int:
    """Image id: the integer after the last ``_`` (``COCO_train2014_000000000009.jpg.npz`` → 9)."""
    base = os.path.basename(os.fspath(name))
    tail = base.rsplit("_", 1)[-1]
    # Strip every extension (".jpg.npz"): the id is the leading run of digits.
    digits = tail.split(".", 1)[0]
    if not digits.isdigit():
        raise ValueError(
            f"cannot read an image id from file name {base!r}: expected an integer after the "
            "last '_' (e.g. COCO_train2014_000000000009.jpg.npz -> 9)"
        )
    return int(digits)


def _file_error(path: str, problem: str) -> RegionFileError:
    return RegionFileError(
        f"region feature file {path}: {problem}. Expected a bottom-up-attention .npz with keys "
        f"{', '.join(_REQUIRED_KEYS)} (x is [F, N], features x regions; bbox is [N, 4] x1,y1,x2,y2 "
        "in pixels). Re-extract or re-download this file, or remove it and point the data root "
        "at a complete feature folder."
    )


def _scalar(path: str, key: str, value: np.ndarray) -> int:
    if value.size != 1:
        raise _file_error(path, f"key '{key}' should hold one number, found shape {value.shape}")
    return int(value.reshape(-1)[0])


def load_region_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read one bottom-up ``.npz``: ``feat [N,F]`` float32, ``bbox [N,4]`` float32, ``image_h``,
    ``image_w``, ``num_bbox`` ints; raises :class:`RegionFileError` on any problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _file_error(path, "the file does not exist")
    try:
        with open(path, "rb") as handle:
            signature = handle.read(4)
        # Check the zip signature first: np.load would otherwise report garbage as "pickled data".
        if signature[:2] != b"PK":
            raise _file_error(path, f"it is not an .npz (zip) archive (first bytes {signature!r})")
        # allow_pickle=False: feature files are data, never code (spec §9).
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in _REQUIRED_KEYS if key not in archive.files]
            if missing:
                found = ", ".join(archive.files) or "none"
                raise _file_error(path, f"missing key(s) {', '.join(missing)} (found: {found})")
            arrays = {key: np.asarray(archive[key]) for key in _REQUIRED_KEYS}
    except RegionFileError:
        raise
    except Exception as error:  # OS, zip, zlib and header errors all mean an unreadable file
        raise _file_error(path, f"cannot be read as .npz ({type(error).__name__}: {error})") from error

    x, bbox = arrays["x"], arrays["bbox"]
    if x.ndim != 2:
        raise _file_error(path, f"key 'x' should be 2-D [F, N], found shape {x.shape}")
    if bbox.ndim != 2 or bbox.shape[1] != 4:
        raise _file_error(path, f"key 'bbox' should be [N, 4], found shape {bbox.shape}")
    # The release stores features transposed ([F, N]); regions must match boxes.
    if x.shape[1] != bbox.shape[0]:
        raise _file_error(
            path, f"'x' has {x.shape[1]} regions (shape {x.shape}, read as [F, N]) but 'bbox' has "
            f"{bbox.shape[0]}"
        )
    return {
        "feat": np.ascontiguousarray(x.T, dtype=np.float32),  # [N, F]
        "bbox": bbox.astype(np.float32),  # [N, 4]
        "image_h": _scalar(path, "image_h", arrays["image_h"]),
        "image_w": _scalar(path, "image_w", arrays["image_w"]),
        "num_bbox": _scalar(path, "num_bbox", arrays["num_bbox"]),
    }


def pad_regions(feat: np.ndarray, boxes: np.ndarray, max_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut to and zero-pad to ``max_regions``: ``feat [N,F]`` and ``boxes [N,4]`` float32."""
    feat = np.asarray(feat, dtype=np.float32)[:max_regions]
    boxes = np.asarray(boxes, dtype=np.float32)[:max_regions]
    count = feat.shape[0]
    padded_feat = np.zeros((max_regions, feat.shape[1]), dtype=np.float32)
    padded_boxes = np.zeros((max_regions, 4), dtype=np.float32)
    padded_feat[:count] = feat
    padded_boxes[:boxes.shape[0]] = boxes
    return padded_feat, padded_boxes


def box_geometry(boxes: np.ndarray, max_regions: int) -> np.ndarray:
    """Pair geometry ``float32 [N,N,4]`` of spec §1 for the first ``max_regions`` boxes, zero-padded.

    With w = x2−x1+1, h = y2−y1+1 and centres (cx, cy), entry (i, j) is
    ``[log(max(|cx_i−cx_j|/w_i, 1e-3)), log(max(|cy_i−cy_j|/h_i, 1e-3)), log(w_i/w_j), log(h_i/h_j)]``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)[:max_regions]  # float64: logs of ratios, then cast
    count = boxes.shape[0]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    width = x2 - x1 + 1.0  # +1 pixel convention of the release
    height = y2 - y1 + 1.0
    centre_x = (x1 + x2) * 0.5
    centre_y = (y1 + y2) * 0.5
    # Row i is the query box: distances are scaled by box i's own size.
    delta_x = np.abs(centre_x[:, None] - centre_x[None, :]) / width[:, None]
    delta_y = np.abs(centre_y[:, None] - centre_y[None, :]) / height[:, None]
    geometry = np.zeros((max_regions, max_regions, 4), dtype=np.float32)
    geometry[:count, :count, 0] = np.log(np.maximum(delta_x, 1e-3))
    geometry[:count, :count, 1] = np.log(np.maximum(delta_y, 1e-3))
    geometry[:count, :count, 2] = np.log(width[:, None] / width[None, :])
    geometry[:count, :count, 3] = np.log(height[:, None] / height[None, :])
    return geometry


def box_feature(boxes: np.ndarray, image_w: float, image_h: float) -> np.ndarray:
    """5-d box feature ``float32 [n,5]``: x1/W, y1/H, x2/W, y2/H, area/(W·H) (spec §1, §6)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    # The release's area term has no +1, unlike the IoU and geometry code (spec §6, VGD).
    area = (x2 - x1) * (y2 - y1)
    feature = np.stack(
        [x1 / image_w, y1 / image_h, x2 / image_w, y2 / image_h, area / (image_w * image_h)], axis=1
    )
    return feature.astype(np.float32)
