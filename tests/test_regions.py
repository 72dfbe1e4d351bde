"""Tests for region-feature files, padding, pair geometry, box features and masks (spec §1, §6)."""

import math

import numpy as np
import pytest
import torch

from mmnas.data.masks import region_mask, text_mask
from mmnas.data.regions import (
    RegionFileError,
    box_feature,
    box_geometry,
    image_id_from_filename,
    load_region_npz,
    pad_regions,
)


def _write_npz(path, feat, boxes, image_h=480, image_w=640, **overrides):
    """Write a file in the bottom-up format: x is stored transposed, [F, N]."""
    arrays = {"x": feat.T, "bbox": boxes, "image_h": image_h, "image_w": image_w,
              "num_bbox": len(boxes)}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


def _random_boxes(rng, n):
    x1 = rng.uniform(0, 300, n)
    y1 = rng.uniform(0, 200, n)
    return np.stack([x1, y1, x1 + rng.uniform(1, 200, n), y1 + rng.uniform(1, 200, n)], 1).astype(np.float32)


def test_image_id_from_filename():
    assert image_id_from_filename("COCO_train2014_000000000009.jpg.npz") == 9
    assert image_id_from_filename("/data/x/COCO_val2014_000000123456.jpg.npz") == 123456
    assert image_id_from_filename("1000092795.npz") == 1000092795
    with pytest.raises(ValueError, match="abc"):
        image_id_from_filename("COCO_train2014_abc.npz")


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((7, 16)).astype(np.float32)
    boxes = _random_boxes(rng, 7)
    path = tmp_path / "COCO_train2014_000000000042.jpg.npz"
    _write_npz(path, feat, boxes, image_h=375, image_w=500)
    data = load_region_npz(path)
    assert data["feat"].shape == (7, 16) and data["feat"].dtype == np.float32
    np.testing.assert_array_equal(data["feat"], feat)
    np.testing.assert_array_equal(data["bbox"], boxes)
    assert (data["image_h"], data["image_w"], data["num_bbox"]) == (375, 500, 7)


def test_pad_regions_cuts_and_pads():
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((5, 3)).astype(np.float32)
    boxes = _random_boxes(rng, 5)
    padded_feat, padded_boxes = pad_regions(feat, boxes, 8)
    assert padded_feat.shape == (8, 3) and padded_boxes.shape == (8, 4)
    np.testing.assert_array_equal(padded_feat[:5], feat)
    assert not padded_feat[5:].any() and not padded_boxes[5:].any()
    cut_feat, cut_boxes = pad_regions(feat, boxes, 2)
    np.testing.assert_array_equal(cut_feat, feat[:2])
    np.testing.assert_array_equal(cut_boxes, boxes[:2])


def _naive_geometry(boxes, max_regions):
    out = np.zeros((max_regions, max_regions, 4), dtype=np.float64)
    boxes = boxes[:max_regions].astype(np.float64)
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            x1i, y1i, x2i, y2i = boxes[i]
            x1j, y1j, x2j, y2j = boxes[j]
            wi, hi, wj, hj = x2i - x1i + 1, y2i - y1i + 1, x2j - x1j + 1, y2j - y1j + 1
            cxi, cyi, cxj, cyj = (x1i + x2i) / 2, (y1i + y2i) / 2, (x1j + x2j) / 2, (y1j + y2j) / 2
            out[i, j] = [math.log(max(abs(cxi - cxj) / wi, 1e-3)), math.log(max(abs(cyi - cyj) / hi, 1e-3)),
                         math.log(wi / wj), math.log(hi / hj)]
    return out


@pytest.mark.parametrize("count,max_regions", [(6, 10), (12, 8), (0, 4)])
def test_geometry_matches_naive_loop(count, max_regions):
    boxes = _random_boxes(np.random.default_rng(count), count)
    geometry = box_geometry(boxes, max_regions)
    assert geometry.shape == (max_regions, max_regions, 4) and geometry.dtype == np.float32
    np.testing.assert_allclose(geometry, _naive_geometry(boxes, max_regions), rtol=1e-5, atol=1e-5)
    kept = min(count, max_regions)
    assert not geometry[kept:].any() and not geometry[:, kept:].any()


def test_geometry_hand_computed_pair():
    # box 0: x 0..9, y 0..19 -> w 10, h 20, centre (4.5, 9.5)
    # box 1: x 20..24, y 0..19 -> w 5, h 20, centre (22, 9.5)
    boxes = np.array([[0, 0, 9, 19], [20, 0, 24, 19]], dtype=np.float32)
    geometry = box_geometry(boxes, 3)
    np.testing.assert_allclose(geometry[0, 1], [math.log(17.5 / 10), math.log(1e-3), math.log(2.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(geometry[1, 0], [math.log(17.5 / 5), math.log(1e-3), math.log(0.5), 0.0], rtol=1e-6)
    np.testing.assert_allclose(geometry[0, 0], [math.log(1e-3), math.log(1e-3), 0.0, 0.0], rtol=1e-6)


def test_box_feature_values():
    boxes = np.array([[10, 20, 110, 70], [0, 0, 200, 100]], dtype=np.float32)
    feature = box_feature(boxes, image_w=200, image_h=100)
    assert feature.shape == (2, 5) and feature.dtype == np.float32
    np.testing.assert_allclose(feature[0], [0.05, 0.2, 0.55, 0.7, 100 * 50 / 20000], rtol=1e-6)
    # area has no +1: the full image has area exactly 1
    np.testing.assert_allclose(feature[1], [0, 0, 1, 1, 1], rtol=1e-6)


def test_masks():
    ids = torch.tensor([[5, 3, 0, 0], [0, 1, 2, 0]])
    mask = text_mask(ids)
    assert mask.shape == (2, 1, 1, 4) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[False, False, True, True], [True, False, False, True]]

    feat = torch.zeros(2, 3, 4)
    feat[0, 0] = 1.0
    feat[0, 2, 1] = -2.0
    feat[1, 1] = torch.tensor([1.0, -1.0, 0.0, 0.0])  # sums to zero, but |feat| does not
    mask = region_mask(feat)
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[False, True, False], [True, False, True]]


def test_region_mask_equals_the_release_formula_on_edge_values():
    """The mask is computed from max and min; the release's formula is sum |feat| == 0."""
    tiny = torch.finfo(torch.float32).tiny / 4  # a subnormal
    rows = [[0.0, 0.0], [-0.0, 0.0], [tiny, 0.0], [-tiny, 0.0], [float("nan"), 0.0], [float("inf"), 0.0],
            [-float("inf"), 0.0], [3.0, -3.0], [0.0, -1e-30]]
    feat = torch.tensor(rows).view(1, len(rows), 2)
    assert region_mask(feat)[0, 0, 0].tolist() == (feat.abs().sum(-1) == 0)[0].tolist()
    assert region_mask(feat)[0, 0, 0].tolist() == [True, True] + [False] * (len(rows) - 2)
    assert region_mask(torch.zeros(2, 3, 0)).all()  # no features at all: padding, as sum over nothing is 0


def test_missing_file(tmp_path):
    path = tmp_path / "COCO_train2014_000000000001.jpg.npz"
    with pytest.raises(RegionFileError) as info:
        load_region_npz(path)
    message = str(info.value)
    assert str(path) in message and "does not exist" in message
    assert isinstance(info.value, ValueError)


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a real zip archive" + bytes(range(256)))
    with pytest.raises(RegionFileError) as info:
        load_region_npz(path)
    assert str(path) in str(info.value) and "cannot be read" in str(info.value)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00garbage bytes\xff" * 10)
    with pytest.raises(RegionFileError, match="garbage.npz.*not an .npz"):
        load_region_npz(garbage)


def test_missing_key(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "nokey.npz"
    feat = rng.standard_normal((3, 4)).astype(np.float32)
    _write_npz(path, feat, _random_boxes(rng, 3), image_w=None)  # None drops the key
    with pytest.raises(RegionFileError) as info:
        load_region_npz(path)
    message = str(info.value)
    assert str(path) in message and "image_w" in message and "missing" in message


def test_wrong_shapes(tmp_path):
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((3, 4)).astype(np.float32)
    path = tmp_path / "shapes.npz"
    _write_npz(path, feat, _random_boxes(rng, 3)[:, :3])
    with pytest.raises(RegionFileError, match=r"'bbox' should be \[N, 4\]"):
        load_region_npz(path)
    # features stored untransposed ([N, F]) disagree with the box count
    np.savez(path, x=feat, bbox=_random_boxes(rng, 3), image_h=1, image_w=1, num_bbox=3)
    with pytest.raises(RegionFileError, match="regions"):
        load_region_npz(path)
    _write_npz(path, feat, _random_boxes(rng, 3), x=np.zeros(5))
    with pytest.raises(RegionFileError, match="2-D"):
        load_region_npz(path)
