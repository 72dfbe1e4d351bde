"""Cross-modal scores of many image-caption pairs with MMNasNet's ITM head (spec §1, §3, §7), without recomputing
what does not depend on the pair.

The encoder cell runs on the text alone, so each caption is encoded once (embedding, LSTM, encoder cell and the
head's text pooling AttFlat(x')) and reused for every image; likewise each image's region projection, projected
geometry and the leading decoder nodes that read no text (self-attention, relation self-attention, feed-forward,
identity, zero — everything before the first guided attention) run once per image. Only the rest of the decoder
and the head run per pair. When the first per-pair node is a guided attention, its key/value projections of the
text are also computed once per caption and its query projection once per image (the projections are per-row maps,
so each pair gets the same numbers). The numbers are those of ``model(batch)`` on each pair (tests check it);
captions are cut to the longest caption of the block, which only drops padding that every op masks out.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from mmnas.data.masks import region_mask, text_mask
from mmnas.nas.backbone import OpSum
from mmnas.nas.mixed_op import MixedOp
from mmnas.ops import FeedForward, GuidedAttention, Identity, RelationSelfAttention, SelfAttention, Zero
from mmnas.ops.layers import NEG_INF

# Ops that read only their own stream (and geometry): a decoder node made of these does not depend on the text.
TEXT_FREE_OPS = (SelfAttention, RelationSelfAttention, FeedForward, Identity, Zero)


def node_reads_text(node: nn.Module) -> bool:
    """Whether a decoder node may read the text stream (unknown node kinds: assumed to)."""
    if isinstance(node, OpSum):
        return not all(isinstance(op, TEXT_FREE_OPS) for op in node.ops)
    if isinstance(node, MixedOp):
        # Only single-path modes run one known candidate; the relaxed modes mix every candidate.
        return node.mode not in ("derived", "weight") or not isinstance(node.candidates[node.active], TEXT_FREE_OPS)
    return True


def trim_padding(text_ix: torch.Tensor) -> torch.Tensor:
    """Drop the token columns that are padding in every row. The LSTM is unidirectional and every op masks padded
    keys, so the outputs at the kept positions, and every score, are unchanged."""
    used = (text_ix != 0).any(0).nonzero()
    return text_ix[:, :int(used.max()) + 1 if len(used) else 1]


def single_guided_attention(node: nn.Module) -> GuidedAttention | None:
    """The guided-attention op a node runs alone (a one-op fixed node, or a mixed op's single active path)."""
    if isinstance(node, OpSum) and len(node.ops) == 1:
        op = node.ops[0]
    elif isinstance(node, MixedOp) and node.mode in ("derived", "weight"):
        op = node.candidates[node.active]
    else:
        return None
    return op if isinstance(op, GuidedAttention) and op.attention.linear_rel is None else None


@dataclass
class TextCache:
    x: torch.Tensor                # [C,T',H] encoder-cell output, cut to the longest caption
    mask: torch.Tensor             # [C,1,1,T'] True = padding
    flat: torch.Tensor             # [C,2H] the head's AttFlat(x')
    key: torch.Tensor | None = None    # [C,h,T',d] the first per-pair guided attention's keys of x'
    value: torch.Tensor | None = None  # [C,h,T',d] and values

    def cat(self, others: Sequence["TextCache"]) -> "TextCache":
        return TextCache(*(None if getattr(self, f) is None else torch.cat([getattr(o, f) for o in others])
                           for f in ("x", "mask", "flat", "key", "value")))


@dataclass
class ImageCache:
    y: torch.Tensor                # [I,N,H] after the text-free leading decoder nodes
    mask: torch.Tensor             # [I,1,1,N]
    rel: torch.Tensor | None       # [I,N,N,rel] projected geometry when a later node reads it
    query: torch.Tensor | None = None  # [I,h,N,d] the first per-pair guided attention's queries of y

    def cat(self, others: Sequence["ImageCache"]) -> "ImageCache":
        return ImageCache(*(None if getattr(self, f) is None else torch.cat([getattr(o, f) for o in others])
                            for f in ("y", "mask", "rel", "query")))


class PairScorer:
    """Scores of (image, caption) pairs of one network; ``model`` must be in the mode to score with (eval)."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", pairs_per_batch: int = 1024,
                 cache_guided: bool = True) -> None:
        self.model = getattr(model, "module", model)
        self.device = torch.device(device)
        self.pairs_per_batch = max(1, int(pairs_per_batch))
        nodes = list(self.model.backbone.decoder.nodes)
        self.prefix = 0
        while self.prefix < len(nodes) and not node_reads_text(nodes[self.prefix]):
            self.prefix += 1
        self.rest = nodes[self.prefix:]
        self.rest_uses_relation = any(getattr(n, "uses_relation", False) for n in self.rest)
        self.uses_relation = self.model.backbone.uses_relation
        self.guided = single_guided_attention(self.rest[0]) if self.rest and cache_guided else None
        # Whether x' must be gathered per pair (a per-pair node other than the cached guided attention reads it).
        self.pairs_read_text = any(node_reads_text(n) for n in self.rest[1 if self.guided is not None else 0:])

    # -- the two sides (differentiable: training uses them too) ---------------------------------------------------
    def encode_text(self, text_ix: torch.Tensor, trim: bool = True) -> TextCache:
        """Embedding + LSTM + encoder cell + the head's text AttFlat of captions [C,T] (token ids); `trim` drops the
        columns that are padding in every caption first."""
        m = self.model
        text_ix = text_ix.to(self.device)
        if trim:
            text_ix = trim_padding(text_ix)
        mask = text_mask(text_ix)
        x = m.text_encoder(text_ix)
        x = m.backbone.encoder(x, None, mask, None, None)
        cache = TextCache(x, mask, m.head.flat_text(x, mask))
        if self.guided is not None:
            att = self.guided.attention
            cache.key, cache.value = att._split(att.linear_k(x)), att._split(att.linear_v(x))
        return cache

    def encode_images(self, batch: dict[str, torch.Tensor]) -> ImageCache:
        """Region projection, geometry and the text-free leading decoder nodes of images {img_feat, img_rel, …}."""
        m = self.model
        feat = batch["img_feat"].to(self.device)
        mask = region_mask(feat)
        box = batch.get("img_box_feat")
        y = m.region_encoder(feat, None if box is None else box.to(self.device))
        rel = m.geometry(batch["img_rel"].to(self.device)) if self.uses_relation else None
        for node in m.backbone.decoder.nodes[:self.prefix]:
            y = node(y, None, mask, None, rel)
        cache = ImageCache(y, mask, rel if self.rest_uses_relation else None)
        if self.guided is not None:
            att = self.guided.attention
            cache.query = att._split(att.linear_q(y))
        return cache

    def text_cache_bytes(self, n_captions: int, length: int) -> int:
        """Bytes of encode_all_text's result (float32 x', and the guided attention's keys and values)."""
        width = self.model.cfg.hidden_size + (2 * self.guided.attention.inner if self.guided is not None else 0)
        return n_captions * length * width * 4

    def image_cache_bytes(self, n_images: int, regions: int) -> int:
        """Bytes of encode_all_images's result (y', the geometry a later node reads, the guided queries)."""
        per = regions * (self.model.cfg.hidden_size + (self.guided.attention.inner if self.guided is not None else 0))
        if self.rest_uses_relation:
            per += regions * regions * self.model.cfg.rel_size
        return n_images * per * 4

    @torch.no_grad()
    def encode_all_text(self, text_ix: torch.Tensor, chunk: int = 1024) -> TextCache:
        """encode_text over many captions, in chunks (one common length)."""
        text_ix = trim_padding(text_ix)
        parts = [self.encode_text(text_ix[s:s + chunk], trim=False) for s in range(0, len(text_ix), chunk)]
        return parts[0].cat(parts)

    @torch.no_grad()
    def encode_all_images(self, images: Callable[[Sequence[int]], dict[str, torch.Tensor]], n_images: int,
                          chunk: int = 1024) -> ImageCache:
        """encode_images over many images, in chunks."""
        parts = [self.encode_images(images(list(range(s, min(s + chunk, n_images)))))
                 for s in range(0, n_images, chunk)]
        return parts[0].cat(parts)

    def score_pairs(self, text: TextCache, caption_idx: torch.Tensor, image: ImageCache,
                    image_idx: torch.Tensor) -> torch.Tensor:
        """Scores [P] of the pairs (image image_idx[p], caption caption_idx[p]), in batches of pairs_per_batch."""
        out = []
        for s in range(0, len(caption_idx), self.pairs_per_batch):
            ci = caption_idx[s:s + self.pairs_per_batch].to(text.x.device)
            ii = image_idx[s:s + self.pairs_per_batch].to(image.y.device)
            out.append(self._pairs(text, ci, image, ii))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def _pairs(self, text: TextCache, ci: torch.Tensor, image: ImageCache, ii: torch.Tensor) -> torch.Tensor:
        x = text.x[ci] if self.pairs_read_text else None
        x_mask, y, y_mask = text.mask[ci], image.y[ii], image.mask[ii]
        rel = None if image.rel is None else image.rel[ii]
        rest = self.rest
        if self.guided is not None:
            y = self._guided(text, ci, image, ii, y, x_mask)
            rest = rest[1:]
        for node in rest:
            y = node(y, x, y_mask, x_mask, rel)
        head = self.model.head
        # The ITM head of spec §3, with its text AttFlat taken from the cache (same sum order as ITMHead.forward).
        return torch.sigmoid(head.score(head.norm(text.flat[ci] + head.flat_image(y, y_mask)))).squeeze(-1)

    def _guided(self, text: TextCache, ci, image: ImageCache, ii, y: torch.Tensor, x_mask) -> torch.Tensor:
        """GuidedAttention.forward(y, x) from the cached projections: the same steps as MultiHeadAttention and
        ResidualOp (logits q·kᵀ/√d, −1e9 on padded keys, softmax, dropout, values, merge; dropout, residual, norm)."""
        op, att = self.guided, self.guided.attention
        logits = torch.matmul(image.query[ii], text.key[ci].transpose(-2, -1)) / math.sqrt(att.head_size)
        logits = logits.masked_fill(x_mask, NEG_INF)
        weights = att.dropout(torch.softmax(logits, dim=-1))
        heads = torch.matmul(weights, text.value[ci]).transpose(1, 2).reshape(y.size(0), -1, att.inner)
        out = op.dropout(att.linear_merge(heads))
        if op.residual:
            out = y + out
        return op.norm(out) if op.norm is not None else out

    # -- every pair of a set ------------------------------------------------------------------------------------
    @torch.no_grad()
    def score_matrix(self, text_ix: torch.Tensor, images: Callable[[Sequence[int]], dict[str, torch.Tensor]],
                     n_images: int, caption_block: int = 5000, image_block: int = 100,
                     progress: Callable[[Iterable], Iterable] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """Scores [n_images, C] of every image against every caption of ``text_ix [C,T]``; ``images(indices)``
        returns the model inputs of those images. Each caption is encoded exactly once; each image once per block
        of `caption_block` captions. Also returns timing: pairs, seconds, pairs_per_second."""
        start = time.perf_counter()
        n_cap = len(text_ix)
        scores = np.zeros((n_images, n_cap), dtype=np.float32)
        blocks = [(c, i) for c in range(0, n_cap, caption_block) for i in range(0, n_images, image_block)]
        text: TextCache | None = None
        current = -1
        for c0, i0 in (progress(blocks) if progress else blocks):
            if c0 != current:
                text = self.encode_text(text_ix[c0:c0 + caption_block])
                current = c0
            ids = list(range(i0, min(i0 + image_block, n_images)))
            image = self.encode_images(images(ids))
            nc, ni = text.x.size(0), len(ids)
            caption_idx = torch.arange(nc).repeat(ni)                      # image-major: all captions of image 0, …
            image_idx = torch.arange(ni).repeat_interleave(nc)
            block = self.score_pairs(text, caption_idx, image, image_idx).view(ni, nc)
            scores[i0:i0 + ni, c0:c0 + nc] = block.float().cpu().numpy()
        seconds = time.perf_counter() - start
        pairs = n_images * n_cap
        return scores, {"pairs": pairs, "seconds": round(seconds, 3),
                        "pairs_per_second": round(pairs / max(seconds, 1e-9), 1)}
