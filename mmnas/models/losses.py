"""Task losses of spec §3, all with the release's `sum` reductions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def vqa_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against the soft scores, summed over answers and samples."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")


def vgd_loss(scores: torch.Tensor, deltas: torch.Tensor, score_target: torch.Tensor, box_target: torch.Tensor,
             box_mask: torch.Tensor, kind: str = "kld", box_weight: float = 0.5) -> torch.Tensor:
    """Score loss + box_weight · box loss.

    kld: scores are log-probabilities; KL-div(sum) over the samples that have a target (score_target rows summing
    to 1), divided by their number. bce: scores are logits; BCE-with-logits(sum) over all regions / batch size.
    Box: SmoothL1(sum) of the normalised deltas over regions with IoU ≥ 0.5 (`box_mask`), / their count."""
    if kind == "kld":
        has_target = score_target.sum(-1) > 0
        n = int(has_target.sum())
        score = F.kl_div(scores[has_target], score_target[has_target], reduction="sum") / n if n else scores.sum() * 0
    elif kind == "bce":
        score = F.binary_cross_entropy_with_logits(scores, score_target, reduction="sum") / scores.size(0)
    else:
        raise ValueError(f"unknown VGD score loss {kind!r}; valid: 'kld', 'bce'")
    m = int(box_mask.sum())
    box = F.smooth_l1_loss(deltas[box_mask], box_target[box_mask], reduction="sum") / m if m else deltas.sum() * 0
    return score + box_weight * box


def itm_loss(pos: torch.Tensor, neg_caption: torch.Tensor, neg_image: torch.Tensor, kind: str = "bce",
             margin: float = 0.2) -> torch.Tensor:
    """bce: BCE(pos,1) + BCE(neg caption,0) + BCE(pos,1) + BCE(neg image,0), summed — the positive term counts twice,
    as in the release. margin: Σ max(0, margin + s_neg − s_pos) over both negatives."""
    if kind == "bce":
        ones, zeros = torch.ones_like(pos), torch.zeros_like(pos)
        bce = F.binary_cross_entropy
        return (bce(pos, ones, reduction="sum") + bce(neg_caption, zeros, reduction="sum")
                + bce(pos, ones, reduction="sum") + bce(neg_image, zeros, reduction="sum"))
    if kind == "margin":
        return (F.relu(margin + neg_caption - pos) + F.relu(margin + neg_image - pos)).sum()
    raise ValueError(f"unknown ITM loss {kind!r}; valid: 'bce', 'margin'")
