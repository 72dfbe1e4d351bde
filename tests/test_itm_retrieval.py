"""Retrieval metrics of spec §7 (ITM): ranks with ties against the ground truth, recalls, median/mean rank, rsum, the
COCO 1K fold protocol, and the scorer CLI with its errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmnas.evaluation.retrieval import (RetrievalInputError, fold_metrics, i2t_ranks, main, rank_summary,
                                        retrieval_metrics, t2i_ranks)


def reference_ranks(scores: np.ndarray, per_image: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sort-based ranks: candidates by descending score, a tie putting wrong candidates first (pessimistic)."""
    n_img, n_cap = scores.shape
    i2t = []
    for i in range(n_img):
        own = [k // per_image == i for k in range(n_cap)]
        order = sorted(range(n_cap), key=lambda k: (-scores[i, k], own[k]))
        i2t.append(next(pos for pos, k in enumerate(order) if own[k]) + 1)
    t2i = []
    for k in range(n_cap):
        truth = k // per_image
        order = sorted(range(n_img), key=lambda j: (-scores[j, k], j == truth))
        t2i.append(order.index(truth) + 1)
    return np.array(i2t), np.array(t2i)


# Three images, fifteen captions (caption k belongs to image k // 5). Hand-counted ranks in the comments.
SCORES = np.array([
    # own: 0-4                    image 1's: 5-9              image 2's: 10-14
    [0.1, 0.7, 0.2, 0.0, 0.3,   0.7, 0.9, 0.0, 0.0, 0.0,   0.1, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.5, 0.5, 0.5,   0.5, 0.5, 0.5, 0.5, 0.5,   0.5, 0.5, 0.5, 0.5, 0.5],
    [0.0, 0.8, 0.0, 0.0, 0.0,   0.0, 0.0, 0.0, 0.0, 0.0,   0.6, 0.9, 0.2, 0.2, 0.1],
], dtype=np.float32)
# i2t: image 0's best own 0.7 (caption 1); wrong ≥ 0.7: caption 5 (tie) and 6 (0.9) → rank 3.
#      image 1: everything ties at 0.5; its best own ties with the 10 wrong captions → rank 11.
#      image 2: best own 0.9 (caption 11); no wrong caption ≥ 0.9 → rank 1.
I2T = [3, 11, 1]
# t2i: caption 0: own image 0 scores 0.1; image 1 0.5 ≥ → rank 2.  caption 1: 0.7 vs 0.5, 0.8 → rank 2.
#      caption 2: 0.2 vs 0.5 → 2.  caption 3: 0.0 vs 0.5 and 0.0 (tie) → 3.  caption 4: 0.3 vs 0.5 → 2.
#      captions 5-9 (image 1, all 0.5): caption 5: image 0 0.7 → 2; caption 6: 0.9 → 2; 7, 8, 9: 0.0 → 1.
#      caption 10: 0.6 vs 0.1, 0.5 → 1.  11: 0.9 → 1.  12: 0.2 vs 0.5 → 2.  13: 0.2 vs 0.5 → 2.  14: 0.1 vs 0.5 → 2.
T2I = [2, 2, 2, 3, 2, 2, 2, 1, 1, 1, 1, 1, 2, 2, 2]


def test_hand_counted_ranks_with_ties():
    assert i2t_ranks(SCORES).tolist() == I2T
    assert t2i_ranks(SCORES).tolist() == T2I
    ref_i2t, ref_t2i = reference_ranks(SCORES)
    assert ref_i2t.tolist() == I2T and ref_t2i.tolist() == T2I


def test_summary_numbers():
    m = retrieval_metrics(SCORES)
    # Reported to 4 decimals.
    assert m["i2t"] == {"r1": 33.3333, "r5": 66.6667, "r10": 66.6667, "medr": 3.0, "meanr": 5.0}
    t2i = np.array(T2I)
    assert m["t2i"]["r1"] == 33.3333 and m["t2i"]["r5"] == 100.0
    assert m["t2i"]["medr"] == 2.0 and m["t2i"]["meanr"] == pytest.approx(t2i.mean(), abs=1e-4)
    assert m["rsum"] == pytest.approx(sum(m[d][f"r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))
    # The median is floored like the release's (0-based median + 1): ranks 1 and 2 → 1.
    assert rank_summary([1, 2])["medr"] == 1.0 and rank_summary([1, 2, 4])["medr"] == 2.0


def test_constant_scores_are_worst_case_not_perfect():
    m = retrieval_metrics(np.zeros((4, 20)))
    assert m["i2t"]["r1"] == 0 and m["t2i"]["r1"] == 0
    assert m["i2t"]["meanr"] == 16 and m["t2i"]["meanr"] == 4  # below every wrong candidate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_ranks_match_sorting_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(7, 35)).astype(np.float64)  # four values only: ties everywhere
    ref_i2t, ref_t2i = reference_ranks(scores)
    assert i2t_ranks(scores).tolist() == ref_i2t.tolist()
    assert t2i_ranks(scores).tolist() == ref_t2i.tolist()


def test_explicit_caption_map_equals_the_default_layout():
    rng = np.random.default_rng(3)
    scores = rng.random((4, 20))
    assert retrieval_metrics(scores, np.arange(20) // 5) == retrieval_metrics(scores)


def test_coco_1k_folds_average_each_fold():
    rng = np.random.default_rng(4)
    scores = rng.random((10, 50))
    folds = fold_metrics(scores, folds=5)
    parts = [retrieval_metrics(scores[2 * f:2 * f + 2, 10 * f:10 * f + 10]) for f in range(5)]
    for d in ("i2t", "t2i"):
        for k in ("r1", "r5", "r10", "medr", "meanr"):
            assert folds[d][k] == pytest.approx(np.mean([p[d][k] for p in parts]), abs=1e-4)
    with pytest.raises(RetrievalInputError, match="equal folds"):
        fold_metrics(scores, folds=3)


def test_cli_prints_one_json_object(tmp_path, capsys):
    path = tmp_path / "scores.npy"
    np.save(path, SCORES)
    assert main([str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"i2t", "t2i", "rsum"} and set(out["i2t"]) == {"r1", "r5", "r10", "medr", "meanr"}
    assert out == json.loads(json.dumps(retrieval_metrics(SCORES)))
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(0).random((10, 50)))
    assert main([str(big), "--folds", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["rsum"] == pytest.approx(fold_metrics(np.load(big), 5)["rsum"])


@pytest.mark.parametrize("content, needle", [
    (np.zeros((3, 14)), "exactly 15 captions"),
    (np.zeros((15, 3)), "transpose"),
    (np.zeros((2, 5, 2)), "2-D"),
    (np.array([[np.nan] * 5]), "NaN"),
    (None, "does not exist"),
    (b"not an npy file", "cannot be read"),
])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys, content, needle):
    path = tmp_path / "scores.npy"
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif content is not None:
        path.write_bytes(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and needle in err
    assert err.strip().count("\n") == 0  # one paragraph
