"""Image-text matching data in the release's layout (spec §6 ITM): SCAN's precomputed caption/id split files,
Karpathy's json as the feature-file → imgid map (Flickr30K), 36-region ``.npz`` features packed once into
memory-mapped arrays, the caption vocabulary, and training samples with hard negatives (spec §3, §5).

Flickr30K, under ``data.root`` (default ``datasets/itm``)::

    f30k_precomp/{train,dev,test}_caps.txt   one caption a line, 5 per image, in image order
    f30k_precomp/{train,dev,test}_ids.txt    Karpathy imgids: one a line per image, or per caption (SCAN's dev/test)
    dataset_flickr30k.json                   Karpathy's; its file-name stem → imgid map finds each image's features
    flickr_bua-r101-fix36/<stem>.jpg.npz     36 regions per image (feature files absent from the json are skipped)

COCO (as the release): ``coco_precomp/{train,dev,test,testall}_{caps,ids}.txt`` whose ids are COCO image ids,
features in ``bua-r101-fix36/{train2014,val2014}/COCO_<split>_<id>.jpg.npz`` keyed by the id in the file name.

Memory: the features of each split are packed once into ``<pack_dir>/<layout>_<split>_n<N>.feat.npy`` (float32
``[images, N, F]``; rebuilt when a feature file changes) and every process and DataLoader worker reads them through
``np.load(..., mmap_mode='r')``: they live once, in the OS page cache, never in a process's private memory. For
Flickr30K (N = 36, F = 2048: 294,912 bytes per image) that is 8.55 GB for train (29,000 images), 0.30 GB for dev
(1,014) and 0.29 GB for test (1,000), 9.15 GB (8.5 GiB) of disk and, to mine hard negatives without disk reads,
of page cache; per process only the boxes (17 MB) and token ids (58 MB for 145,000 captions) are private.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmnas.data.features import PackedRegions
from mmnas.data.text import TextMeta, Vocab, tokenize
from mmnas.errors import DataError

CAPTIONS_PER_IMAGE = 5
ITM_GUIDE = ("See 'Real data: Flickr30K, COCO (image-text matching)' in README.md for the expected tree, or run "
             "on the built-in demo with --DATASET shapes.")


@dataclass(frozen=True)
class Layout:
    precomp: str                      # folder of the SCAN split files
    feature_dirs: tuple[str, ...]     # folders of the .npz region features
    id_json: str | None               # Karpathy json mapping feature-file stems to imgids (None: ids in file names)
    splits: tuple[str, ...]           # caption files in the vocabulary's (the release's) order


LAYOUTS = {
    "flickr": Layout("f30k_precomp", ("flickr_bua-r101-fix36",), "dataset_flickr30k.json", ("train", "dev", "test")),
    "coco": Layout("coco_precomp", ("bua-r101-fix36/train2014", "bua-r101-fix36/val2014"), None,
                   ("train", "dev", "test", "testall")),
}
SPLIT_ALIASES = {"val": "dev"}  # --RUN val and data.val_split 'val' read SCAN's dev (Karpathy's val)


def split_name(split: str, layout: Layout) -> str:
    """'val' → 'dev'; anything else must be one of the layout's splits."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in layout.splits:
        raise DataError(f"unknown ITM split {split!r}; valid: {', '.join(layout.splits)} (val = dev).")
    return name


def file_key(name: str) -> str:
    """The id of a feature file name as the release reads it: the integer after the last '_' and before the first
    '.', as a string without leading zeros ('1000092795.jpg.npz' → '1000092795', 'COCO_val2014_000000000042.jpg.npz'
    → '42'); names without such an integer keep their stem."""
    tail = os.path.basename(name).rsplit("_", 1)[-1].split(".", 1)[0]
    return str(int(tail)) if tail.isdigit() else tail


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing ITM {what} file {path}. {ITM_GUIDE}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"ITM {what} file {path} is not UTF-8 text ({e}); re-download it.") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]


@dataclass
class ITMSplit:
    name: str
    captions: list[str]       # 5 per image, in image order
    image_ids: list[str]      # one per image (ids as written in the ids file)
    caps_path: Path
    ids_path: Path




class ITMData:
    """One ITM tree (Flickr30K or COCO layout): split files, vocabulary and the feature index."""

    def __init__(self, root: str | Path, layout: str = "flickr") -> None:
        self.root = Path(root)
        if layout not in LAYOUTS:
            raise DataError(f"unknown ITM layout {layout!r}; valid: {', '.join(LAYOUTS)}.")
        self.layout_name = layout
        self.layout = LAYOUTS[layout]
        self.precomp = self.root / self.layout.precomp
        if not self.precomp.is_dir():
            raise DataError(f"ITM data tree {self.root} not found (no {self.precomp} folder with SCAN's "
                            f"precomputed split files). {ITM_GUIDE}")
        self._splits: dict[str, ITMSplit] = {}
        self._index: dict[str, str] | None = None
        self._json_ids: set[str] | None = None

    # -- text ---------------------------------------------------------------------------------------------------
    def split(self, split: str) -> ITMSplit:
        name = split_name(split, self.layout)
        if name not in self._splits:
            self._splits[name] = self._read_split(name)
        return self._splits[name]

    def _read_split(self, name: str) -> ITMSplit:
        caps_path, ids_path = self.precomp / f"{name}_caps.txt", self.precomp / f"{name}_ids.txt"
        captions = _read_lines(caps_path, "caption")
        ids = [line.strip() for line in _read_lines(ids_path, "id")]
        n_caps, n_ids = len(captions), len(ids)
        if n_caps == 0 or n_caps % CAPTIONS_PER_IMAGE:
            raise DataError(f"{caps_path} has {n_caps} captions: it must hold {CAPTIONS_PER_IMAGE} captions per "
                            f"image, one a line, in image order (SCAN's precomputed format). Re-create it.")
        n_img = n_caps // CAPTIONS_PER_IMAGE
        if n_ids == n_img:  # one id per image (SCAN's train files)
            image_ids = ids
        elif n_ids == n_caps:  # one id per caption (SCAN's dev/test files): caption k belongs to image k // 5
            image_ids = ids[::CAPTIONS_PER_IMAGE]
            for k, i in enumerate(ids):
                if i != image_ids[k // CAPTIONS_PER_IMAGE]:
                    raise DataError(f"{ids_path} line {k + 1} has id {i!r} but caption {k + 1} of {caps_path} "
                                    f"belongs to image {image_ids[k // CAPTIONS_PER_IMAGE]!r} (captions are "
                                    f"{CAPTIONS_PER_IMAGE} per image, in image order). Use the id and caption "
                                    f"files of the same SCAN release.")
        else:
            raise DataError(f"{caps_path} has {n_caps} captions ({n_img} images) but {ids_path} has {n_ids} ids; "
                            f"the ids file must have one line per image ({n_img}) or one per caption ({n_caps}). "
                            f"Use the caption and id files of the same SCAN release.")
        if any(not i for i in image_ids):
            raise DataError(f"{ids_path} has empty lines; it must hold one image id a line.")
        return ITMSplit(name, captions, image_ids, caps_path, ids_path)

    def build_meta(self) -> TextMeta:
        """Vocabulary over every caption file present, in the release's order (train, dev, test[, testall])."""
        token_lists = []
        for name in self.layout.splits:
            path = self.precomp / f"{name}_caps.txt"
            if path.is_file():
                token_lists.extend(tokenize(c) for c in _read_lines(path, "caption"))
        if not token_lists:
            raise DataError(f"no caption file (*_caps.txt) found under {self.precomp}. {ITM_GUIDE}")
        return TextMeta(Vocab.build(token_lists))

    # -- features -----------------------------------------------------------------------------------------------
    def feature_index(self) -> dict[str, str]:
        """image id (as in the ids files) → .npz path."""
        if self._index is not None:
            return self._index
        id_map = self._id_map() if self.layout.id_json else None
        index: dict[str, str] = {}
        for folder in self.layout.feature_dirs:
            d = self.root / folder
            if not d.is_dir():
                continue
            with os.scandir(d) as it:
                for entry in it:
                    if not entry.name.endswith(".npz"):
                        continue
                    key = file_key(entry.name)
                    if id_map is not None:
                        if key not in id_map:
                            continue  # feature files of images the json does not know are skipped (as the release)
                        key = id_map[key]
                    index[key] = entry.path
        self._index = index
        return index

    def _id_map(self) -> dict[str, str]:
        path = self.root / self.layout.id_json
        if not path.is_file():
            raise DataError(f"missing {path}: Karpathy's json maps the feature file names of "
                            f"{self.root / self.layout.feature_dirs[0]} to the imgids of SCAN's id files. Download "
                            f"dataset_flickr30k.json (Karpathy's splits) into {self.root}. {ITM_GUIDE}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            images = data["images"]
            id_map = {str(im["filename"]).split(".", 1)[0]: str(im["imgid"]) for im in images}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path} is not Karpathy's dataset json ({type(e).__name__}: {e}); it must be "
                            f"{{\"images\": [{{\"filename\", \"imgid\", …}}]}}. Re-download it.") from None
        self._json_ids = set(id_map.values())
        return {(str(int(k)) if k.isdigit() else k): v for k, v in id_map.items()}

    def check_features(self, split: ITMSplit) -> list[str]:
        """The .npz path of every image of the split, or a DataError naming what is missing and how to fix it."""
        index = self.feature_index()
        missing = [i for i in split.image_ids if i not in index]
        if not missing:
            return [index[i] for i in split.image_ids]
        folders = ", ".join(str(self.root / d) for d in self.layout.feature_dirs)
        if self.layout.id_json:
            unmapped = [i for i in missing if i not in (self._json_ids or set())]
            if unmapped:
                raise DataError(
                    f"{len(unmapped)} image id(s) of {split.ids_path} (first: {unmapped[:5]}) are missing from the "
                    f"id map {self.root / self.layout.id_json} (no image with that imgid). Use Karpathy's "
                    f"dataset_flickr30k.json, from which SCAN's split files were made.")
            raise DataError(
                f"{len(missing)} image(s) of {split.ids_path} (first imgids: {missing[:5]}) have no feature file in "
                f"{folders}: the json names them but no <stem>.jpg.npz was found. Extract or download the 36-region "
                f"bottom-up features for every image. {ITM_GUIDE}")
        raise DataError(
            f"{len(missing)} image id(s) of {split.ids_path} (first: {missing[:5]}) have no feature file in "
            f"{folders} (COCO_<split>_<id>.jpg.npz). Extract or download the 36-region bottom-up features. "
            f"{ITM_GUIDE}")


# -- samples ------------------------------------------------------------------------------------------------------
class ITMDataset(Dataset):
    """Samples of one split: caption k with its image k // 5, as dicts of tensors (DESIGN "Batch").

    With ``negatives`` (the training split; at least 2 images), every sample also carries a negative caption for its image (`neg_text_ix`) and
    a negative image for its caption (`neg_img_feat`, `neg_img_rel`), each drawn uniformly from the kept
    candidates of the anchor (`neg_captions [images, K]`, `neg_images [captions, K]`, set by the task's mining) by
    a generator seeded with (seed, epoch, index): the same draw whatever the worker count or resume point."""

    def __init__(self, data: ITMData, split: str, meta: TextMeta, max_tokens: int, max_regions: int,
                 pack_dir: Path, negatives: bool = False, progress: bool = True,
                 with_box_feature: bool = False, seed: int = 0) -> None:
        self.data, self.meta = data, meta
        self.split = data.split(split)
        self.name = self.split.name
        paths = data.check_features(self.split)
        self.regions = PackedRegions(paths, max_regions, pack_dir, f"{data.layout_name}_{self.name}", progress)
        self.text_ix = np.stack([meta.vocab.encode(tokenize(c), max_tokens) for c in self.split.captions])  # [C,T]
        self.n_images = len(self.split.image_ids)
        self.caption_image = np.arange(len(self.split.captions)) // CAPTIONS_PER_IMAGE
        self.with_box_feature = with_box_feature
        self.seed, self.epoch = seed, 0
        self.neg_captions: np.ndarray | None = None
        self.neg_images: np.ndarray | None = None
        self.mined_epoch: int | None = None   # the epoch whose network mined the current tables (None: random)
        if negatives:
            if self.n_images < 2:
                raise DataError(f"{self.split.caps_path}: training needs at least 2 images (negatives are other "
                                f"images' captions).")

    @property
    def n_captions(self) -> int:
        return len(self.text_ix)

    @property
    def has_negatives(self) -> bool:
        return self.neg_captions is not None

    def set_negatives(self, neg_captions: np.ndarray, neg_images: np.ndarray, epoch: int) -> None:
        self.neg_captions = np.ascontiguousarray(neg_captions, dtype=np.int64)
        self.neg_images = np.ascontiguousarray(neg_images, dtype=np.int64)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_captions

    def _image(self, i: int, prefix: str = "") -> dict[str, torch.Tensor]:
        feat, geometry, boxf = self.regions.get(i)
        out = {f"{prefix}img_feat": torch.from_numpy(feat), f"{prefix}img_rel": torch.from_numpy(geometry)}
        if self.with_box_feature:
            out[f"{prefix}img_box_feat"] = torch.from_numpy(boxf)
        return out

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        image = int(self.caption_image[k])
        sample = {"index": torch.tensor(k), "image_index": torch.tensor(image),
                  "text_ix": torch.from_numpy(self.text_ix[k]), **self._image(image)}
        if self.neg_captions is not None:
            rng = np.random.default_rng([self.seed, self.epoch, k])
            neg_caption = int(self.neg_captions[image, rng.integers(self.neg_captions.shape[1])])
            neg_image = int(self.neg_images[k, rng.integers(self.neg_images.shape[1])])
            sample["neg_text_ix"] = torch.from_numpy(self.text_ix[neg_caption])
            sample.update(self._image(neg_image, "neg_"))
        return sample
