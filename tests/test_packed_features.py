"""The packed feature store (mmnas/data/features.py, tools/pack_features.py): a RegionStore gives the same arrays from
the pack as from the `.npz` files, finds the pack by itself, refuses a stale one, and never pickles the memmap."""
from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmnas.data.features import PACK_DIR, RegionStore, index_feature_dirs, pack_feature_folder
from mmnas.data.vqa import FEATURE_DIRS, FEATURE_ROOT, VQAData, VQADataset

REPO = Path(__file__).resolve().parents[1]
KEYS = ("feat", "geometry", "box_feat", "boxes", "count", "image_hw")


def _boxes(rng, n):
    x1, y1 = rng.uniform(0, 300, n), rng.uniform(0, 200, n)
    return np.stack([x1, y1, x1 + rng.uniform(1, 200, n), y1 + rng.uniform(1, 200, n)], 1).astype(np.float32)


def _write(folder: Path, image_id: int, n: int, rng, compressed: bool = False, feat_size: int = 16) -> Path:
    """A file in the release's format: x [F, N] (transposed), bbox [N, 4], image_h, image_w, num_bbox."""
    path = folder / f"COCO_{folder.name}_{image_id:012d}.jpg.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, x=rng.standard_normal((feat_size, n)).astype(np.float32), bbox=_boxes(rng, n),
         image_h=int(rng.integers(200, 600)), image_w=int(rng.integers(200, 600)), num_bbox=n)
    return path


@pytest.fixture()
def tree(tmp_path):
    """Two feature folders; region counts below, at and above the stores' 8 regions, one with none."""
    rng = np.random.default_rng(0)
    root = tmp_path / "feats"
    for k, name in enumerate(("train2014", "val2014")):
        (root / name).mkdir(parents=True)
        for i, n in enumerate((3, 8, 12, 0, 5)):
            _write(root / name, 100 * k + i + 1, n, rng, compressed=i % 2 == 0)
    return root


def _assert_same(a: dict, b: dict) -> None:
    for key in KEYS:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), key  # bit for bit


@pytest.mark.parametrize("geometry", [False, True])
def test_packed_store_equals_npz_files(tree, geometry):
    index = index_feature_dirs([tree / "train2014", tree / "val2014"])
    for name in ("train2014", "val2014"):
        written = pack_feature_folder(tree / name, max_regions=10, geometry=geometry, progress=False)
        assert written == tree / PACK_DIR / f"{name}_n10.index.npz"
    ids = sorted(index)
    plain = RegionStore(index, 8, ids, packed=False)
    packed = RegionStore(index, 8, ids)  # finds <parent>/packed by itself; N = 10 ≥ 8 is cut to 8
    assert plain.packed_images == 0 and packed.packed_images == len(ids)
    for image_id in ids:
        _assert_same(plain.get(image_id), packed.get(image_id))
    # A pack with fewer regions than the store needs is not used.
    assert RegionStore(index, 11, ids).packed_images == 0


def test_preload_and_pickling_keep_the_memmap_out(tree):
    pack_feature_folder(tree / "train2014", max_regions=8, progress=False)
    index = index_feature_dirs([tree / "train2014"])
    ids = sorted(index)
    store = RegionStore(index, 8, ids)
    first = store.get(ids[0])
    pack = store._rows[ids[0]][0]
    assert isinstance(pack.feat, np.memmap)
    copy = pickle.loads(pickle.dumps(store))
    assert copy._rows[ids[0]][0]._feat is None  # workers open their own mapping of the same pages
    _assert_same(first, copy.get(ids[0]))
    _assert_same(first, RegionStore(index, 8, ids, preload=True, progress=False).get(ids[0]))


def test_a_changed_file_makes_the_store_read_the_npz_files(tree):
    pack_feature_folder(tree / "train2014", max_regions=8, progress=False)
    index = index_feature_dirs([tree / "train2014"])
    ids = sorted(index)
    changed = Path(index[ids[1]])
    _write(changed.parent, ids[1], 6, np.random.default_rng(5))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10 ** 9))
    with pytest.warns(UserWarning, match="changed after packing"):
        store = RegionStore(index, 8, ids)
    assert store.packed_images == 0
    _assert_same(store.get(ids[1]), RegionStore(index, 8, ids, packed=False).get(ids[1]))


def test_cli_packs_every_folder(tree, capsys):
    spec = importlib.util.spec_from_file_location("pack_features", REPO / "tools" / "pack_features.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(tree / "train2014"), str(tree / "val2014"), "--max-regions", "12", "--quiet"]) == 0
    assert sorted(p.name for p in (tree / PACK_DIR).glob("*.index.npz")) == ["train2014_n12.index.npz",
                                                                             "val2014_n12.index.npz"]
    assert tool.main([str(tree / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_vqa_dataset_samples_are_the_same_from_the_pack(vqa_root, tmp_path):
    root = Path(shutil.copytree(vqa_root, tmp_path / "vqa"))
    data = VQAData(root, answer_min_count=2)
    meta = data.build_meta()
    before = VQADataset(data, "train", meta, 14, 16)
    for name in FEATURE_DIRS:
        if (root / FEATURE_ROOT / name).is_dir():
            pack_feature_folder(root / FEATURE_ROOT / name, max_regions=16, progress=False)
    after = VQADataset(VQAData(root, answer_min_count=2), "train", meta, 14, 16)
    assert after.regions.packed_images > 0 and before.regions.packed_images == 0
    for i in range(len(before)):
        a, b = before[i], after[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_packing_an_empty_folder_and_reading_a_damaged_pack_are_data_errors(tree, tmp_path):
    from mmnas.data.features import find_pack
    from mmnas.errors import DataError
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npz feature files in"):
        pack_feature_folder(tmp_path / "empty", progress=False)
    index_path = pack_feature_folder(tree / "train2014", max_regions=8, progress=False)
    with np.load(index_path) as ix:
        arrays = {k: ix[k] for k in ix.files}
    arrays["ids"] = arrays["ids"][:-1]  # an index that no longer matches the arrays
    np.savez(index_path, **arrays)
    with pytest.raises(DataError, match="index and arrays disagree"):
        find_pack(tree / "train2014", 8)
