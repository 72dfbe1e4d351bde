"""Region features by image id (spec §1, §6): an index of `.npz` files, padded features, boxes and pair geometry,
read per sample or preloaded once into memory."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from mmnas.data.regions import box_feature, box_geometry, image_id_from_filename, load_region_npz, pad_regions
from mmnas.errors import DataError


def index_feature_dirs(dirs: Iterable[Path]) -> dict[int, str]:
    """image id → .npz path over the given folders (missing folders are skipped; the caller checks coverage)."""
    index: dict[int, str] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for entry in it:
                if entry.name.endswith(".npz"):
                    index[image_id_from_filename(entry.name)] = entry.path
    return index


class RegionStore:
    """Padded region features and boxes, pair geometry and box features of each image, read once if preloaded."""

    def __init__(self, index: dict[int, str], max_regions: int, image_ids: Iterable[int], preload: bool = False,
                 progress: bool = True) -> None:
        self.index = index
        self.max_regions = max_regions
        self._cache: dict[int, dict[str, Any]] = {}
        if preload:
            ids = sorted(set(image_ids))
            for image_id in tqdm(ids, desc="loading region features", disable=not progress, leave=False):
                self._cache[image_id] = self._read(image_id)

    def _read(self, image_id: int) -> dict[str, Any]:
        try:
            path = self.index[image_id]
        except KeyError:
            raise DataError(f"no feature file for image id {image_id}.") from None
        npz = load_region_npz(path)
        feat, boxes = pad_regions(npz["feat"], npz["bbox"], self.max_regions)
        n = min(len(npz["bbox"]), self.max_regions)
        boxf = np.zeros((self.max_regions, 5), dtype=np.float32)
        boxf[:n] = box_feature(npz["bbox"][:n], npz["image_w"], npz["image_h"])
        return {"feat": feat, "geometry": box_geometry(npz["bbox"], self.max_regions), "box_feat": boxf,
                "boxes": boxes, "count": n, "image_hw": np.array([npz["image_h"], npz["image_w"]], dtype=np.float32)}

    def get(self, image_id: int) -> dict[str, Any]:
        """feat [N,F], geometry [N,N,4], box_feat [N,5], boxes [N,4] (padded), count, image_hw (h, w)."""
        cached = self._cache.get(image_id)
        return cached if cached is not None else self._read(image_id)
