"""Region features by image id (spec §1, §6): an index of `.npz` files, padded features, boxes and pair geometry,
read per sample, preloaded once into memory, or read from a packed, memory-mapped copy of each feature folder.

The packed store (`tools/pack_features.py`) holds, for one folder of `.npz` files, the features as one float32
array ``[images, N, F]`` memory-mapped by every process and DataLoader worker (the pages live once, in the OS page
cache), the boxes, region counts and image sizes, and an index (image id → row, with each source file's name, size
and modification time); optionally the pair geometry ``[images, N, N, 4]`` computed once per image. It is written
by `PackedRegions` (the ITM task's packer too: the same `.feat.npy` / `.meta.npz` files) plus an `.index.npz`, under
``<folder's parent>/packed/<folder name>_n<N>.*``. A RegionStore uses it when it is present and its index matches the
`.npz` files on disk (else it warns and reads the `.npz` files); both give the same arrays.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from mmnas.data.regions import (RegionFileError, box_feature, box_geometry, image_id_from_filename,
                                load_region_npz, pad_regions)
from mmnas.errors import DataError
from mmnas.fileio import atomic_write

PACK_DIR = "packed"  # beside the feature folders: <parent>/packed/<folder>_n<N>.{feat.npy,meta.npz,index.npz}


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


# -- packed store ---------------------------------------------------------------------------------------------------
def pack_name(folder: str | os.PathLike, max_regions: int) -> str:
    return f"{Path(folder).name}_n{max_regions}"


def default_pack_dir(folder: str | os.PathLike) -> Path:
    return Path(folder).resolve().parent / PACK_DIR


def _files_fingerprint(paths: Sequence[str], max_regions: int) -> str:
    h = hashlib.sha256(f"v1 {max_regions}\n".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class PackedRegions:
    """The region features of a list of `.npz` files (an ITM split, or a feature folder for RegionStore) as
    ``feat [I,N,F]`` float32 (memory-mapped), ``boxes [I,N,4]``, ``count [I]`` and ``size [I,2]`` (w, h); built once
    and reused while the files are unchanged."""

    def __init__(self, paths: Sequence[str], max_regions: int, pack_dir: Path, name: str,
                 progress: bool = True) -> None:
        self.max_regions = max_regions
        pack_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = _files_fingerprint(paths, max_regions)
        stem = pack_dir / f"{name}_n{max_regions}"
        self.feat_path = stem.with_name(stem.name + ".feat.npy")
        self.meta_path = stem.with_name(stem.name + ".meta.npz")
        if not self._valid(fingerprint):
            self._build(paths, fingerprint, progress)
        with np.load(self.meta_path, allow_pickle=False) as meta:
            self.boxes = meta["boxes"]
            self.count = meta["count"]
            self.size = meta["size"]
        self._feat: np.ndarray | None = None

    def _valid(self, fingerprint: str) -> bool:
        if not (self.feat_path.is_file() and self.meta_path.is_file()):
            return False
        try:
            with np.load(self.meta_path, allow_pickle=False) as meta:
                return str(meta["fingerprint"]) == fingerprint
        except Exception:  # a damaged pack is rebuilt
            return False

    def _build(self, paths: Sequence[str], fingerprint: str, progress: bool) -> None:
        n, nr = len(paths), self.max_regions
        first = load_region_npz(paths[0])
        dim = first["feat"].shape[1]
        tmp = self.feat_path.with_name(f".{self.feat_path.name}.tmp{os.getpid()}")
        feat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, nr, dim))
        boxes = np.zeros((n, nr, 4), dtype=np.float32)
        count = np.zeros(n, dtype=np.int32)
        size = np.zeros((n, 2), dtype=np.float32)
        try:
            for i, path in enumerate(tqdm(paths, desc=f"packing region features ({self.feat_path.name})",
                                          disable=not progress, leave=False)):
                npz = first if i == 0 else load_region_npz(path)
                if npz["feat"].shape[1] != dim:
                    raise RegionFileError(f"region feature file {path} has {npz['feat'].shape[1]} features per "
                                          f"region but {paths[0]} has {dim}; every file must come from the same "
                                          f"extractor.")
                k = min(len(npz["bbox"]), nr)
                feat[i, :k] = npz["feat"][:k]
                boxes[i, :k] = npz["bbox"][:k]
                count[i] = k
                size[i] = (npz["image_w"], npz["image_h"])
            feat.flush()
            del feat
            os.replace(tmp, self.feat_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        atomic_write(self.meta_path, lambda f: np.savez(f, boxes=boxes, count=count, size=size,
                                                        fingerprint=np.array(fingerprint)), binary=True)

    @property
    def feat(self) -> np.ndarray:
        # Opened lazily in each process (never pickled into DataLoader workers): pages are shared by the OS.
        if self._feat is None:
            self._feat = np.load(self.feat_path, mmap_mode="r")
        return self._feat

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_feat"] = None
        return state

    def __len__(self) -> int:
        return len(self.count)

    @property
    def feat_size(self) -> int:
        return int(self.feat.shape[2])

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """feat [N,F], pair geometry [N,N,4], box feature [N,5] of image i (float32, zero-padded)."""
        k = int(self.count[i])
        feat = np.array(self.feat[i])  # a private copy of one image only
        geometry = box_geometry(self.boxes[i, :k], self.max_regions)
        boxf = np.zeros((self.max_regions, 5), dtype=np.float32)
        boxf[:k] = box_feature(self.boxes[i, :k], self.size[i, 0], self.size[i, 1])
        return feat, geometry, boxf

    def batch(self, indices: Sequence[int], with_box_feature: bool = False) -> dict[str, torch.Tensor]:
        """{'img_feat' [B,N,F], 'img_rel' [B,N,N,4] (, 'img_box_feat' [B,N,5])} of the given images."""
        parts = [self.get(int(i)) for i in indices]
        out = {"img_feat": torch.from_numpy(np.stack([p[0] for p in parts])),
               "img_rel": torch.from_numpy(np.stack([p[1] for p in parts]))}
        if with_box_feature:
            out["img_box_feat"] = torch.from_numpy(np.stack([p[2] for p in parts]))
        return out


def pack_feature_folder(folder: str | os.PathLike, max_regions: int = 100, pack_dir: str | os.PathLike | None = None,
                        geometry: bool = False, progress: bool = True) -> Path:
    """Pack every `.npz` of `folder` (sorted by image id) for RegionStore; returns the index file written.

    Features, boxes, counts and sizes are packed by `PackedRegions` (reused as is: it rebuilds only when a source
    file changed); the index adds the image ids and each file's name, size and mtime, which a RegionStore checks
    before trusting the pack. `geometry` also stores each image's pair geometry (160 kB per image
    at N = 100: +20 % disk, no per-sample box_geometry)."""
    folder = Path(folder)
    index = index_feature_dirs([folder])
    if not index:
        raise DataError(f"no .npz feature files in {folder}; point the packer at a folder of bottom-up features.")
    ids = sorted(index)
    paths = [index[i] for i in ids]
    out = Path(pack_dir) if pack_dir is not None else default_pack_dir(folder)
    name = pack_name(folder, max_regions)
    packed = PackedRegions(paths, max_regions, out, folder.name, progress)  # it names its files <name>_n<N>.*
    stats = [os.stat(p) for p in paths]
    geom_path = out / f"{name}.geom.npy"
    if geometry:
        tmp = geom_path.with_name(f".{geom_path.name}.tmp{os.getpid()}")
        geom = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                         shape=(len(ids), max_regions, max_regions, 4))
        for row in tqdm(range(len(ids)), desc=f"pair geometry ({name})", disable=not progress, leave=False):
            geom[row] = box_geometry(packed.boxes[row, :int(packed.count[row])], max_regions)
        geom.flush()
        del geom
        os.replace(tmp, geom_path)
    elif geom_path.exists():
        geom_path.unlink()  # a geometry file of an earlier pack would not match this one
    index_path = out / f"{name}.index.npz"
    arrays = {"ids": np.asarray(ids, dtype=np.int64), "names": np.asarray([os.path.basename(p) for p in paths]),
              "sizes": np.asarray([s.st_size for s in stats], dtype=np.int64),
              "mtimes": np.asarray([s.st_mtime_ns for s in stats], dtype=np.int64),
              "max_regions": np.asarray(max_regions), "geometry": np.asarray(geometry)}
    atomic_write(index_path, lambda fobj: np.savez(fobj, **arrays), binary=True)
    return index_path


class PackedFolder:
    """A packed feature folder opened for reading: rows by image id; features (and geometry) memory-mapped lazily
    in each process, never pickled into DataLoader workers."""

    def __init__(self, pack_dir: Path, name: str) -> None:
        self.pack_dir, self.name = pack_dir, name
        self.feat_path = pack_dir / f"{name}.feat.npy"
        self.geom_path = pack_dir / f"{name}.geom.npy"
        with np.load(pack_dir / f"{name}.index.npz", allow_pickle=False) as ix:
            self.ids = ix["ids"]
            self.names = ix["names"]
            self.sizes = ix["sizes"]
            self.mtimes = ix["mtimes"]
            self.max_regions = int(ix["max_regions"])
            self.has_geometry = bool(ix["geometry"]) and self.geom_path.is_file()
        with np.load(pack_dir / f"{name}.meta.npz", allow_pickle=False) as meta:
            self.boxes = meta["boxes"]
            self.count = meta["count"]
            self.size = meta["size"]  # (w, h)
        if len(self.count) != len(self.ids):
            raise DataError(f"packed features {pack_dir / name}.*: index and arrays disagree; re-run "
                            f"tools/pack_features.py.")
        self.row = {int(i): r for r, i in enumerate(self.ids.tolist())}
        self._feat: np.ndarray | None = None
        self._geom: np.ndarray | None = None

    # Copy-on-write mappings: the arrays handed out are views of the shared pages (the collate copies each sample
    # once, straight into the batch), writable as torch.from_numpy wants; nothing ever writes to them.
    @property
    def feat(self) -> np.ndarray:
        if self._feat is None:
            self._feat = np.load(self.feat_path, mmap_mode="c")
        return self._feat

    @property
    def geometry(self) -> np.ndarray:
        if self._geom is None:
            self._geom = np.load(self.geom_path, mmap_mode="c")
        return self._geom

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_feat"] = state["_geom"] = None
        return state

    def stale(self, image_id: int, path: str) -> str | None:
        """Why the pack's row of `image_id` may not match `path` (None: it matches)."""
        r = self.row.get(image_id)
        if r is None:
            return f"image id {image_id} ({path}) is not in it"
        if str(self.names[r]) != os.path.basename(path):
            return f"image id {image_id} was packed from {self.names[r]}, the index has {os.path.basename(path)}"
        st = os.stat(path)
        if st.st_size != int(self.sizes[r]) or st.st_mtime_ns != int(self.mtimes[r]):
            return f"{path} changed after packing"
        return None


def find_pack(folder: Path, max_regions: int, pack_dir: Path | None = None) -> PackedFolder | None:
    """The pack of `folder` with the fewest regions ≥ max_regions, if any (a larger N is cut, as pad_regions cuts)."""
    where = pack_dir if pack_dir is not None else default_pack_dir(folder)
    if not where.is_dir():
        return None
    pattern = re.compile(re.escape(folder.name) + r"_n(\d+)\.index\.npz$")
    found = sorted((int(m.group(1)), m.group(0)) for m in map(pattern.match, os.listdir(where)) if m)
    for n, _ in found:
        if n >= max_regions:
            return PackedFolder(where, pack_name(folder, n))
    return None


class RegionStore:
    """Padded region features and boxes, pair geometry and box features of each image, read once if preloaded;
    from the packed store of a feature folder when there is a valid one (`packed=False`: always the .npz files)."""

    def __init__(self, index: dict[int, str], max_regions: int, image_ids: Iterable[int], preload: bool = False,
                 progress: bool = True, packed: bool = True, pack_dir: str | os.PathLike | None = None) -> None:
        self.index = index
        self.max_regions = max_regions
        self._cache: dict[int, dict[str, Any]] = {}
        ids = sorted(set(image_ids))
        self._rows: dict[int, tuple[PackedFolder, int]] = {}
        if packed:
            self._use_packs(ids, Path(pack_dir) if pack_dir is not None else None)
        if preload:
            for image_id in tqdm(ids, desc="loading region features", disable=not progress, leave=False):
                self._cache[image_id] = self._read(image_id)

    def _use_packs(self, ids: Sequence[int], pack_dir: Path | None) -> None:
        by_folder: dict[str, list[int]] = {}
        for image_id in ids:
            path = self.index.get(image_id)
            if path is not None:
                by_folder.setdefault(os.path.dirname(path), []).append(image_id)
        for folder, folder_ids in by_folder.items():
            pack = find_pack(Path(folder), self.max_regions, pack_dir)
            if pack is None:
                continue
            problems = [p for p in (pack.stale(i, self.index[i]) for i in folder_ids) if p]
            if problems:
                warnings.warn(f"packed features {pack.pack_dir / pack.name}.* do not match {folder} "
                              f"({len(problems)} image(s); first: {problems[0]}); reading the .npz files instead. "
                              f"Re-run tools/pack_features.py {folder}.", stacklevel=3)
                continue
            for image_id in folder_ids:
                self._rows[image_id] = (pack, pack.row[image_id])

    @property
    def packed_images(self) -> int:
        """How many of the store's images come from a packed store."""
        return len(self._rows)

    def _read(self, image_id: int) -> dict[str, Any]:
        packed = self._rows.get(image_id)
        if packed is not None:
            return self._read_packed(*packed)
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

    def _read_packed(self, pack: PackedFolder, row: int) -> dict[str, Any]:
        # The same arrays as the .npz branch: the pack holds the first N ≥ max_regions rows, zero-padded.
        m = self.max_regions
        n = min(int(pack.count[row]), m)
        boxes = np.array(pack.boxes[row, :m])
        w, h = (float(v) for v in pack.size[row])
        boxf = np.zeros((m, 5), dtype=np.float32)
        boxf[:n] = box_feature(boxes[:n], w, h)
        geometry = pack.geometry[row, :m, :m] if pack.has_geometry else box_geometry(boxes[:n], m)
        return {"feat": pack.feat[row, :m], "geometry": geometry, "box_feat": boxf, "boxes": boxes,
                "count": n, "image_hw": np.array([h, w], dtype=np.float32)}

    def get(self, image_id: int) -> dict[str, Any]:
        """feat [N,F], geometry [N,N,4], box_feat [N,5], boxes [N,4] (padded), count, image_hw (h, w)."""
        cached = self._cache.get(image_id)
        return cached if cached is not None else self._read(image_id)
