"""Box maths of visual grounding against hand-computed values: IoU with the +1 pixel convention, the Fast R-CNN
transform and its inverse (with the release's missing −1), clipping, and the per-region training targets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmnas.data.vgd import region_targets
from mmnas.evaluation.grounding import (box_iou, box_transform, box_transform_inv, clip_boxes, grounding_accuracy,
                                        paired_iou, xywh_to_xyxy)


def test_iou_uses_the_plus_one_convention():
    a = np.array([[0, 0, 9, 9]])                    # 10 x 10 = 100 pixels
    b = np.array([[5, 5, 14, 14],                   # 5 x 5 overlap: 25 / (100 + 100 - 25)
                  [9, 0, 18, 9],                    # one shared column: 10 / 190
                  [10, 0, 19, 9],                   # touching, no shared pixel: 0
                  [0, 0, 9, 9],                     # identical: 1
                  [2, 2, 3, 3]])                    # inside: 4 / 100
    expected = [25 / 175, 10 / 190, 0.0, 1.0, 4 / 100]
    np.testing.assert_allclose(box_iou(a, b)[0], expected)
    np.testing.assert_allclose(box_iou(b, a)[:, 0], expected)  # symmetric
    assert box_iou(np.zeros((3, 4)), b).shape == (3, 5)
    np.testing.assert_allclose(paired_iou(np.repeat(a, 5, 0), b), expected)  # the diagonal, row by row


def test_xywh_to_xyxy_has_no_minus_one():
    np.testing.assert_array_equal(xywh_to_xyxy([[10, 20, 5, 6]]), [[10, 20, 15, 26]])


def test_transform_hand_values_and_normalisation():
    region = np.array([[0.0, 0.0, 9.0, 9.0]])       # w = h = 10, centre (5, 5)
    gt = np.array([2.0, 4.0, 13.0, 13.0])           # w = 12, h = 10, centre (8, 9)
    d = box_transform(region, gt)
    np.testing.assert_allclose(d, [[0.3 / 0.1, 0.4 / 0.1, math.log(1.2) / 0.2, 0.0]])
    raw = box_transform(region, gt, stds=(1, 1, 1, 1))
    np.testing.assert_allclose(raw, [[0.3, 0.4, math.log(1.2), 0.0]])


def test_inverse_decodes_the_exact_target_one_pixel_wide():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (50, 2))
    regions = np.concatenate([xy, xy + rng.uniform(1, 80, (50, 2))], 1)
    gxy = rng.uniform(0, 200, (50, 2))
    gt = np.concatenate([gxy, gxy + rng.uniform(1, 80, (50, 2))], 1)
    decoded = box_transform_inv(regions, box_transform(regions, gt))
    # Spec §3 quirk: width = exp(dw)·(x2−x1+1) and centre ± half of it, no −1: x2/y2 come back one pixel further.
    np.testing.assert_allclose(decoded, gt + [0, 0, 1, 1], atol=1e-9)
    assert (paired_iou(decoded, gt) < 1).all()
    perfect = box_transform_inv([[0, 0, 9, 9]], box_transform([[0, 0, 9, 9]], [[0, 0, 9, 9]]))
    np.testing.assert_allclose(paired_iou(perfect, [[0, 0, 9, 9]]), [100 / 121])  # 11 x 11 decoded for 10 x 10
    # zero deltas give the region itself, one pixel wider
    np.testing.assert_allclose(box_transform_inv(regions, np.zeros((50, 4))), regions + [0, 0, 1, 1])


def test_clip_to_the_image_including_the_border():
    boxes = np.array([[-5.0, -3.0, 130.0, 70.0],    # past every border of a 128 x 64 image
                      [0.0, 0.0, 127.0, 63.0],      # touching the borders: unchanged
                      [127.5, 63.5, 200.0, 99.0],   # starts past the last pixel
                      [10.0, 10.0, 20.0, 20.0]])
    out = clip_boxes(boxes, 128, 64)
    np.testing.assert_array_equal(out, [[0, 0, 127, 63], [0, 0, 127, 63], [127, 63, 127, 63], [10, 10, 20, 20]])
    # one image size per box (width, height arrays)
    per_box = clip_boxes(boxes[:2], np.array([100, 128]), np.array([50, 64]))
    np.testing.assert_array_equal(per_box, [[0, 0, 99, 49], [0, 0, 127, 63]])
    assert grounding_accuracy(boxes[:2], np.array([[0, 0, 127, 63], [60, 30, 127, 63]])) == 50.0


REGIONS = np.array([[0, 0, 9, 9],     # IoU 1
                    [2, 0, 11, 9],    # 80 / 120 = 0.667
                    [3, 0, 12, 9],    # 70 / 130 = 0.538
                    [4, 0, 13, 9],    # 60 / 140 = 0.429 (below 0.5)
                    [50, 50, 59, 59]], dtype=np.float32)
GT = np.array([0, 0, 9, 9], dtype=np.float32)


def test_targets_of_a_hand_made_case():
    score, deltas, mask = region_targets(REGIONS, GT, max_regions=7, score_loss="kld")
    iou = np.array([1.0, 80 / 120, 70 / 130])
    np.testing.assert_allclose(score, np.r_[iou / iou.sum(), 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(mask, [True, True, True, False, False, False, False])
    assert score.shape == (7,) and deltas.shape == (7, 4) and score.dtype == np.float32
    # region 1: w = 10, centre x 7 vs gt 5 → dx = −0.2 → −2 after /0.1; same size → dw = dh = 0
    np.testing.assert_allclose(deltas[1], [-2.0, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(deltas[:5], box_transform(REGIONS, GT), rtol=1e-6)
    np.testing.assert_array_equal(deltas[5:], 0)   # padding
    bce, _, _ = region_targets(REGIONS, GT, max_regions=7, score_loss="bce")
    np.testing.assert_allclose(bce, [1.0, 0.9, 0.8, 0, 0, 0, 0])


def test_no_region_reaches_the_threshold():
    score, deltas, mask = region_targets(REGIONS[3:], GT, max_regions=4)
    assert not score.any() and not mask.any() and deltas[:2].any()
    with pytest.raises(ValueError, match="unknown VGD score loss"):
        region_targets(REGIONS, GT, 7, score_loss="mse")
