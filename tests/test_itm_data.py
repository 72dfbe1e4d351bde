"""ITM data in the release's layout (spec §6): SCAN split files (ids per image or per caption), Karpathy's json as
the id map, packed memory-mapped features, vocabulary, negative sampling in samples, and the errors users see."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from mmnas.cli import main
from mmnas.data.features import PackedRegions
from mmnas.data.itm import ITMData, ITMDataset, file_key
from mmnas.data.regions import load_region_npz, pad_regions
from mmnas.data.text import Vocab, tokenize
from mmnas.errors import DataError
from tests.itm_helpers import dataset, make_tree, run_args


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("itm") / "shapes")


@pytest.fixture
def tree_copy(tree, tmp_path):
    root = tmp_path / "shapes"
    shutil.copytree(tree, root)
    return root


def test_split_files_per_image_and_per_caption_ids(tree):
    data = ITMData(tree, "flickr")
    precomp = tree / "f30k_precomp"
    for name, per_caption in (("train", False), ("dev", True), ("test", True)):
        split = data.split(name)
        caps = (precomp / f"{name}_caps.txt").read_text().splitlines()
        ids = (precomp / f"{name}_ids.txt").read_text().splitlines()
        assert split.captions == caps and len(ids) == (len(caps) if per_caption else len(caps) // 5)
        assert split.image_ids == (ids[::5] if per_caption else ids)
    assert data.split("val").name == "dev"  # --RUN val reads SCAN's dev (Karpathy's val)
    karpathy = json.loads((tree / "dataset_flickr30k.json").read_text())
    split_of = {str(im["imgid"]): im["split"] for im in karpathy["images"]}
    assert {split_of[i] for i in data.split("dev").image_ids} == {"val"}


def test_feature_index_maps_file_stems_to_imgids_and_skips_unknown_files(tree_copy):
    karpathy = json.loads((tree_copy / "dataset_flickr30k.json").read_text())
    folder = tree_copy / "flickr_bua-r101-fix36"
    shutil.copy(folder / karpathy["images"][0]["filename"].replace(".jpg", ".jpg.npz"), folder / "99999.jpg.npz")
    index = ITMData(tree_copy, "flickr").feature_index()
    assert len(index) == len(karpathy["images"])  # the extra file, absent from the json, is skipped
    for im in karpathy["images"]:
        assert index[str(im["imgid"])].endswith(f"/{im['filename']}.npz")
    assert file_key("COCO_val2014_000000000042.jpg.npz") == "42" and file_key("1000092795.jpg.npz") == "1000092795"


def test_vocabulary_runs_over_train_dev_test_in_order(tree):
    meta = ITMData(tree, "flickr").build_meta()
    lines = [line for s in ("train", "dev", "test")
             for line in (tree / "f30k_precomp" / f"{s}_caps.txt").read_text().splitlines()]
    assert meta.vocab == Vocab.build(tokenize(c) for c in lines)


def test_packed_features_are_memory_mapped_and_exact(tree, tmp_path):
    ds = dataset(tree, "test", tmp_path, max_regions=12)
    assert isinstance(ds.regions.feat, np.memmap)
    data = ITMData(tree, "flickr")
    path = data.feature_index()[data.split("test").image_ids[2]]
    npz = load_region_npz(path)
    feat, boxes = pad_regions(npz["feat"], npz["bbox"], 12)
    assert np.array_equal(ds.regions.feat[2], feat) and np.array_equal(ds.regions.boxes[2], boxes)
    sample = ds[11]  # caption 11 → image 2
    assert int(sample["image_index"]) == 2 and torch.equal(sample["img_feat"], torch.from_numpy(feat))
    # Workers never receive a copy of the features: the memmap is dropped when the dataset is pickled.
    assert len(pickle.dumps(ds.regions)) < 20_000 and pickle.loads(pickle.dumps(ds.regions)).feat.shape == feat.shape[:0] + ds.regions.feat.shape


def test_pack_is_reused_and_rebuilt_when_a_feature_file_changes(tree_copy, tmp_path):
    data = ITMData(tree_copy, "flickr")
    paths = data.check_features(data.split("dev"))
    first = PackedRegions(paths, 36, tmp_path, "dev", progress=False)
    mtime = first.feat_path.stat().st_mtime_ns
    assert PackedRegions(paths, 36, tmp_path, "dev", progress=False).feat_path.stat().st_mtime_ns == mtime
    npz = dict(np.load(paths[0]))
    npz["x"] = npz["x"] * 0 + 7
    np.savez(paths[0], **npz)
    again = PackedRegions(paths, 36, tmp_path, "dev", progress=False)
    assert float(again.feat[0, 0, 0]) == 7.0


def test_training_samples_draw_one_kept_negative_uniformly(tree, tmp_path):
    ds = dataset(tree, "train", tmp_path, negatives=True)
    n_img, n_cap = ds.n_images, ds.n_captions
    neg_captions = np.stack([(np.arange(3) + 5 * (i + 1)) % n_cap for i in range(n_img)])   # other images' captions
    neg_images = np.stack([np.array([(k // 5 + 1) % n_img, (k // 5 + 2) % n_img]) for k in range(n_cap)])
    ds.set_negatives(neg_captions, neg_images, epoch=3)
    seen = set()
    for k in range(n_cap):
        s = ds[k]
        image = k // 5
        kept_texts = [ds.text_ix[c] for c in neg_captions[image]]
        pick = [j for j, t in enumerate(kept_texts) if np.array_equal(t, s["neg_text_ix"].numpy())]
        assert pick, "the negative caption is one of the image's kept negatives"
        kept_images = [ds.regions.get(int(j))[0] for j in neg_images[k]]
        assert any(np.array_equal(f, s["neg_img_feat"].numpy()) for f in kept_images)
        seen.add(pick[0])
        assert torch.equal(ds[k]["neg_text_ix"], s["neg_text_ix"])  # the draw is fixed by (seed, epoch, index)
    assert seen == {0, 1, 2}


def _expect_error(root, tmp_path, capsys, *needles, dataset="shapes", check=True):
    # --DATASET flickr for a missing tree: the demo's (shapes) would be generated there on first use.
    # check=False: the loader's own message, as a run with data.check=false meets it.
    assert main("itm", "train", run_args(root, tmp_path, "--VERSION", "err", "optim.max_epoch=1",
                                         "data.max_regions=12", "model.feat_size=39", "--DATASET", dataset,
                                         "run.overwrite=true", f"data.check={str(check).lower()}")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err
    return err


def test_caption_and_id_counts_that_do_not_match(tree_copy, tmp_path, capsys):
    ids = tree_copy / "f30k_precomp" / "train_ids.txt"
    ids.write_text("\n".join(ids.read_text().splitlines()[:-1]) + "\n")
    _expect_error(tree_copy, tmp_path, capsys, str(ids), str(tree_copy / "f30k_precomp" / "train_caps.txt"),
                  "one line per image", "same SCAN release")


def test_captions_not_five_per_image(tree_copy, tmp_path, capsys):
    caps = tree_copy / "f30k_precomp" / "train_caps.txt"
    caps.write_text(caps.read_text() + "one caption too many\n")
    _expect_error(tree_copy, tmp_path, capsys, str(caps), "5 captions per image")


def test_per_caption_ids_that_disagree_with_their_image(tree_copy, tmp_path, capsys):
    ids = tree_copy / "f30k_precomp" / "dev_ids.txt"
    lines = ids.read_text().splitlines()
    lines[3] = lines[7]
    ids.write_text("\n".join(lines) + "\n")
    _expect_error(tree_copy, tmp_path, capsys, str(ids), "line 4")


def test_missing_id_map_entries(tree_copy, tmp_path, capsys):
    path = tree_copy / "dataset_flickr30k.json"
    karpathy = json.loads(path.read_text())
    karpathy["images"] = karpathy["images"][1:]  # imgid 0, the first training image, disappears
    path.write_text(json.dumps(karpathy))
    _expect_error(tree_copy, tmp_path, capsys, str(path), "missing from the id map", "['0']", "Karpathy", check=False)
    _expect_error(tree_copy, tmp_path, capsys, "the data check found", str(tree_copy / "f30k_precomp"), "'0'")


def test_missing_id_map_file(tree_copy, tmp_path, capsys):
    (tree_copy / "dataset_flickr30k.json").unlink()
    _expect_error(tree_copy, tmp_path, capsys, "dataset_flickr30k.json", "Download")


def test_missing_features(tree_copy, tmp_path, capsys):
    karpathy = json.loads((tree_copy / "dataset_flickr30k.json").read_text())
    (tree_copy / "flickr_bua-r101-fix36" / (karpathy["images"][2]["filename"] + ".npz")).unlink()
    _expect_error(tree_copy, tmp_path, capsys, str(tree_copy / "f30k_precomp" / "train_ids.txt"),
                  str(tree_copy / "flickr_bua-r101-fix36"), "['2']", "features", check=False)
    _expect_error(tree_copy, tmp_path, capsys, "the data check found", str(tree_copy / "flickr_bua-r101-fix36"), "'2'")


def test_missing_tree_and_split_file(tmp_path, tree_copy, capsys):
    _expect_error(tmp_path / "nowhere", tmp_path, capsys, "f30k_precomp", "--DATASET shapes", dataset="flickr")
    assert not (tmp_path / "nowhere").exists()
    (tree_copy / "f30k_precomp" / "dev_caps.txt").unlink()
    _expect_error(tree_copy, tmp_path, capsys, str(tree_copy / "f30k_precomp" / "dev_caps.txt"))


def test_unknown_split_is_a_data_error(tree):
    with pytest.raises(DataError, match="valid: train, dev, test"):
        ITMData(tree, "flickr").split("testall")


def _coco_tree(flickr_root, root):
    """The demo tree in the COCO layout: coco_precomp split files with COCO image ids, features named
    COCO_<split>2014_<id>.jpg.npz under bua-r101-fix36/{train2014,val2014}, no Karpathy json."""
    data = ITMData(flickr_root, "flickr")
    index = data.feature_index()
    (root / "coco_precomp").mkdir(parents=True)
    for name in ("train", "dev", "test"):
        split = data.split(name)
        folder = "train2014" if name == "train" else "val2014"
        (root / "bua-r101-fix36" / folder).mkdir(parents=True, exist_ok=True)
        coco_ids = [str(500_000 + int(i)) for i in split.image_ids]
        for imgid, coco in zip(split.image_ids, coco_ids):
            shutil.copy(index[imgid], root / "bua-r101-fix36" / folder / f"COCO_{folder}_{int(coco):012d}.jpg.npz")
        (root / "coco_precomp" / f"{name}_caps.txt").write_text("\n".join(split.captions) + "\n")
        per_caption = [c for c in coco_ids for _ in range(5)] if name != "train" else coco_ids
        (root / "coco_precomp" / f"{name}_ids.txt").write_text("\n".join(per_caption) + "\n")
    return root


def test_coco_layout_keys_features_on_the_id_in_the_file_name(tree, tmp_path):
    root = _coco_tree(tree, tmp_path / "coco")
    flickr = dataset(tree, "test", tmp_path / "f")  # the same images through the Flickr30K layout
    data = ITMData(root, "coco")
    meta = data.build_meta()
    ds = ITMDataset(data, "test", meta, 50, 12, tmp_path / "packed", progress=False)
    assert data.split("test").image_ids[0] == str(500_000 + int(ITMData(tree, "flickr").split("test").image_ids[0]))
    assert np.array_equal(np.asarray(ds.regions.feat), np.asarray(flickr.regions.feat))
    assert data.split("val").name == "dev"
    with pytest.raises(DataError, match="testall_caps.txt"):
        data.split("testall")  # a valid COCO split (the 5K test set), absent here
    first = int(data.split("test").image_ids[0])
    (root / "bua-r101-fix36" / "val2014" / f"COCO_val2014_{first:012d}.jpg.npz").unlink()
    with pytest.raises(DataError, match="COCO_<split>_<id>.jpg.npz"):
        ITMData(root, "coco").check_features(ITMData(root, "coco").split("test"))


def test_demo_is_deterministic_and_marked_done(tmp_path):
    a = make_tree(tmp_path / "a", n_train=3, n_dev=1, n_test=2)
    b = make_tree(tmp_path / "b", n_train=3, n_dev=1, n_test=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert len([f for f in files if f.suffix == ".npz"]) == 6 and not [f for f in files if ".tmp" in f.name]
    done = (a / "DONE").stat().st_mtime_ns
    make_tree(a, n_train=3, n_dev=1, n_test=2)  # complete: returns at once
    assert (a / "DONE").stat().st_mtime_ns == done
    caps = (a / "f30k_precomp" / "test_caps.txt").read_text().splitlines()
    assert len(caps) == 10 and len(set(caps[:5])) == 5  # five different captions per image
    npz = load_region_npz(next((a / "flickr_bua-r101-fix36").iterdir()))
    assert npz["feat"].shape == (36, 39) and npz["num_bbox"] == 36
