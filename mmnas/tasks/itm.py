"""The image-text matching task (spec §3, §5, §6, §7): Flickr30K / COCO in SCAN's precomputed layout, training
samples with hard negatives mined by the current network, the `bce` (positive counted twice) or `margin` loss, and
retrieval evaluation over every image-caption pair of a split."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mmnas.config import Config, ConfigError
from mmnas.data.itm import CAPTIONS_PER_IMAGE, ITMData, ITMDataset, LAYOUTS, split_name
from mmnas.data.text import TextMeta, resolve_word_vectors
from mmnas.engine import dist
from mmnas.engine.common import progress_bar
from mmnas.errors import DataError
from mmnas.evaluation.retrieval import flatten_metrics, fold_metrics, retrieval_metrics
from mmnas.fileio import atomic_write, atomic_write_json
from mmnas.models.itm_scoring import PairScorer, trim_padding
from mmnas.models.losses import itm_loss
from mmnas.tasks.base import TASKS, Task

IMAGE_KEYS = ("img_feat", "img_rel", "img_box_feat")


# -- hard negatives (spec §5) -----------------------------------------------------------------------------------
def sample_candidates(n_images: int, n_captions: int, size: int, generator: torch.Generator,
                      per_image: int = CAPTIONS_PER_IMAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Random negative candidates, drawn with replacement and uniformly among the *other* items (never a positive):
    ``captions [images, size]`` for each image (not its own `per_image` captions) and ``images [captions, size]``
    for each caption (not its own image, k // per_image)."""
    own_first = torch.arange(n_images).unsqueeze(1) * per_image
    captions = torch.randint(0, n_captions - per_image, (n_images, size), generator=generator)
    captions = captions + per_image * (captions >= own_first)      # skip the image's own block of captions
    own_image = (torch.arange(n_captions) // per_image).unsqueeze(1)
    images = torch.randint(0, n_images - 1, (n_captions, size), generator=generator)
    images = images + (images >= own_image).long()                 # skip the caption's own image
    return captions, images


def keep_hardest(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` candidates with the highest scores per row ([A,R] scores and candidate ids → [A,k] ids)."""
    return candidates.gather(1, scores.topk(k, dim=1).indices.to(candidates.device))


CACHE_BYTES = 1 << 30  # mining encodes every caption / image once when its encodings fit in this many bytes


@torch.no_grad()
def mine_negatives(model: nn.Module, dataset: ITMDataset, caption_candidates: torch.Tensor,
                   image_candidates: torch.Tensor, keep: int, anchors_per_batch: int, device: torch.device,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Score each image against its caption candidates and each caption against its image candidates with the
    current network (eval mode); keep the `keep` best-scored per anchor: ``neg_captions [images, keep]``,
    ``neg_images [captions, keep]``. Every caption and image is encoded once when the encodings fit in
    CACHE_BYTES, else per batch of anchors. Work is shared between processes when several run."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    rank, world = dist.rank(), dist.world_size()
    rand = caption_candidates.size(1)
    scorer = PairScorer(model, device, pairs_per_batch=anchors_per_batch * rand)
    text_ix = torch.from_numpy(dataset.text_ix)
    with_box = dataset.with_box_feature
    n_img, n_cap = dataset.n_images, dataset.n_captions

    def load(ids: Sequence[int]) -> dict[str, torch.Tensor]:
        return dataset.regions.batch(ids, with_box)

    neg_captions = np.zeros((n_img, keep), dtype=np.int64)
    neg_images = np.zeros((n_cap, keep), dtype=np.int64)
    try:
        length = trim_padding(text_ix).size(1)
        all_text = (scorer.encode_all_text(text_ix) if scorer.text_cache_bytes(n_cap, length) <= CACHE_BYTES
                    else None)
        all_images = (scorer.encode_all_images(load, n_img)
                      if scorer.image_cache_bytes(n_img, dataset.regions.max_regions) <= CACHE_BYTES else None)

        def texts(ids: torch.Tensor):
            if all_text is not None:
                return all_text, ids
            return scorer.encode_text(text_ix[ids]), torch.arange(len(ids))

        def images(ids: torch.Tensor):
            if all_images is not None:
                return all_images, ids
            unique, inverse = torch.unique(ids, return_inverse=True)
            return scorer.encode_images(load(unique.tolist())), inverse

        jobs = [("captions", s) for s in range(0, n_img, anchors_per_batch)]
        jobs += [("images", s) for s in range(0, n_cap, anchors_per_batch)]
        for kind, s in progress_bar(jobs[rank::world], progress, desc="mining hard negatives", leave=False):
            n = n_img if kind == "captions" else n_cap
            anchors = torch.arange(s, min(s + anchors_per_batch, n))
            if kind == "captions":  # anchors: images; candidates: captions
                cand = caption_candidates[anchors]                                   # [b,R]
                text, t_idx = texts(cand.reshape(-1))
                image, i_idx = images(anchors.repeat_interleave(rand))
            else:  # anchors: captions; candidates: images
                cand = image_candidates[anchors]
                text, t_idx = texts(anchors.repeat_interleave(rand))
                image, i_idx = images(cand.reshape(-1))
            scores = scorer.score_pairs(text, t_idx, image, i_idx).view(-1, rand).cpu()
            table = neg_captions if kind == "captions" else neg_images
            table[anchors.numpy()] = keep_hardest(scores, cand, keep).numpy()
    finally:
        model.train(was_training)
    neg_captions, neg_images = dist.sum_arrays(neg_captions), dist.sum_arrays(neg_images)
    seconds = time.perf_counter() - start
    pairs = (n_img + n_cap) * rand
    return neg_captions, neg_images, {"pairs": pairs, "seconds": round(seconds, 2),
                                      "pairs_per_second": round(pairs / max(seconds, 1e-9), 1)}


# -- evaluation (spec §7) ---------------------------------------------------------------------------------------
class ITMEvaluator:
    """The scores matrix [images, captions] of an evaluated split (or α-part subset) and its retrieval metrics."""

    def __init__(self, dataset: ITMDataset) -> None:
        self.dataset = dataset
        self.reset()

    def reset(self) -> None:
        self.scores: np.ndarray | None = None
        self.caption_image: np.ndarray | None = None
        self.metrics: dict[str, Any] = {}
        self.timing: dict[str, float] = {}

    def process(self, batch: dict[str, torch.Tensor], output: Any) -> None:
        raise NotImplementedError("ITM scores every image-caption pair of a split: use ITMTask.evaluate")

    def evaluate(self) -> dict[str, Any]:
        return self.metrics


@TASKS.register("itm")
class ITMTask(Task):
    name = "itm"
    metric = "rsum"
    datasets = ("flickr", "coco", "shapes")
    demo_datasets = ("shapes",)

    @classmethod
    def prepare_demo(cls, cfg: Config) -> None:
        from mmnas.demo.shapes_itm import DONE_FILE, prepare_shapes_itm
        if not (Path(cfg.data.root) / DONE_FILE).is_file():  # any complete tree (a full or a test-sized one)
            prepare_shapes_itm(cfg.data.root, progress=cfg.run.progress)

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        itm = cfg.itm
        checks = [(itm.neg_hardsize >= 1, "itm.neg_hardsize", "a positive integer"),
                  (itm.neg_randsize >= itm.neg_hardsize, "itm.neg_randsize", "at least itm.neg_hardsize"),
                  (itm.neg_batch >= 1, "itm.neg_batch", "a positive integer"),
                  (itm.neg_every >= 1, "itm.neg_every", "a positive integer"),
                  (itm.neg_start_epoch >= 0, "itm.neg_start_epoch", "0 or more"),
                  (itm.eval_pairs >= 1, "itm.eval_pairs", "a positive integer"),
                  (itm.search_eval_images >= 1, "itm.search_eval_images", "a positive integer")]
        for ok, key, valid in checks:
            if not ok:
                raise ConfigError(f"config value of {key} is invalid; it must be {valid}.")
        self.layout = "coco" if cfg.data.dataset == "coco" else "flickr"
        self.train_set: ITMDataset | None = None
        self.mining_log: list[dict[str, Any]] = []

    # -- data ---------------------------------------------------------------------------------------------------
    def prepare(self, need_vectors: bool = True) -> None:
        self.data = ITMData(self.cfg.data.root, self.layout)
        self._meta: TextMeta = self.data.build_meta()
        if need_vectors:
            self._meta.word_vectors = resolve_word_vectors(self._meta.vocab, self.cfg.data.word_vectors,
                                                           seed=max(self.cfg.run.seed, 0))

    def pack_dir(self) -> Path:
        return Path(self.cfg.itm.pack_dir) if self.cfg.itm.pack_dir else Path(self.cfg.data.root) / "packed"

    def dataset(self, split: str) -> ITMDataset:
        training = split == self.cfg.data.train_split and self.cfg.run.run == "train"
        ds = ITMDataset(self.data, split, self._meta, self.cfg.data.max_tokens, self.cfg.data.max_regions,
                        self.pack_dir(), negatives=training, progress=self.cfg.run.progress,
                        with_box_feature=self.cfg.model.use_box_feature, seed=max(self.cfg.run.seed, 0))
        if training:
            if ds.regions.feat_size != self.cfg.model.feat_size:
                raise DataError(f"the region features of {self.data.root} have {ds.regions.feat_size} values per "
                                f"region but model.feat_size is {self.cfg.model.feat_size}; set "
                                f"model.feat_size={ds.regions.feat_size}.")
            self._random_negatives(ds, 0)
            self.train_set = ds
        return ds

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self._meta.vocab), "word_vectors": self._meta.word_vectors}

    # -- hard negatives -----------------------------------------------------------------------------------------
    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(max(self.cfg.run.seed, 0) * 1_000_003 + epoch * 7919 + 17)

    def _random_negatives(self, ds: ITMDataset, epoch: int) -> None:
        k = self.cfg.itm.neg_hardsize
        captions, images = sample_candidates(ds.n_images, ds.n_captions, k, self._generator(epoch))
        ds.set_negatives(captions.numpy(), images.numpy(), epoch)

    def on_epoch_start(self, model: nn.Module, epoch: int, device: torch.device) -> None:
        """Before NEG_START_EPOCH: fresh random negatives each epoch. From it, every NEG_NEPOCH epochs: score
        NEG_RANDSIZE random candidates per anchor with the current network and keep the NEG_HARDSIZE best; between
        minings the last mined tables stay (re-mined on resume)."""
        ds, itm = self.train_set, self.cfg.itm
        if ds is None:
            return
        if epoch < itm.neg_start_epoch:
            self._random_negatives(ds, epoch)
            return
        if (epoch - itm.neg_start_epoch) % itm.neg_every and ds.mined_epoch is not None:
            ds.epoch = epoch  # keep the tables; new uniform draws among them
            return
        cap_cand, img_cand = sample_candidates(ds.n_images, ds.n_captions, itm.neg_randsize, self._generator(epoch))
        neg_captions, neg_images, stats = mine_negatives(model, ds, cap_cand, img_cand, itm.neg_hardsize,
                                                         itm.neg_batch, device, self.cfg.run.progress)
        ds.set_negatives(neg_captions, neg_images, epoch)
        ds.mined_epoch = epoch
        self.mining_log.append({"epoch": epoch, **stats})
        if dist.is_main():
            print(f"epoch {epoch + 1}: mined hard negatives ({itm.neg_hardsize} of {itm.neg_randsize} random per "
                  f"image and per caption): {stats['pairs']:,} pairs in {stats['seconds']} s "
                  f"({stats['pairs_per_second']:,.0f} pairs/s)", flush=True)

    def state_dict(self) -> dict[str, Any]:
        ds = self.train_set
        if ds is None:
            return {}
        return {"neg_captions": torch.from_numpy(ds.neg_captions), "neg_images": torch.from_numpy(ds.neg_images),
                "epoch": ds.epoch, "mined_epoch": -1 if ds.mined_epoch is None else ds.mined_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The negatives of the checkpoint's epoch, so a resumed run samples exactly as an uninterrupted one (also
        between two minings, when neg_every > 1)."""
        ds = self.train_set
        if ds is None or not state:
            return
        ds.set_negatives(state["neg_captions"].numpy(), state["neg_images"].numpy(), int(state["epoch"]))
        ds.mined_epoch = None if int(state["mined_epoch"]) < 0 else int(state["mined_epoch"])

    # -- loss -----------------------------------------------------------------------------------------------------
    def forward_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Scores of the B positives (image, caption), the B negative captions (image, neg caption) and the B
        negative images (neg image, caption), then itm_loss. Each of the 2B captions and 2B images is encoded once
        (text encoder + encoder cell; region projection + text-free leading decoder nodes) and the rest of the
        network runs on the 3B pairs: the scores of three separate forwards, with less work."""
        b = batch["text_ix"].size(0)
        image_keys = [k for k in IMAGE_KEYS if k in batch]
        if hasattr(model, "module"):  # a DistributedDataParallel wrapper must see the forward: one joint batch
            joint = {"text_ix": torch.cat([batch["text_ix"], batch["neg_text_ix"], batch["text_ix"]])}
            joint.update({k: torch.cat([batch[k], batch[k], batch[f"neg_{k}"]]) for k in image_keys})
            scores = model(joint)
        else:
            scorer = PairScorer(model, batch["text_ix"].device, pairs_per_batch=3 * b)
            text = scorer.encode_text(torch.cat([batch["text_ix"], batch["neg_text_ix"]]))
            images = scorer.encode_images({k: torch.cat([batch[k], batch[f"neg_{k}"]]) for k in image_keys})
            first = torch.arange(b)
            scores = scorer.score_pairs(text, torch.cat([first, first + b, first]), images,
                                        torch.cat([first, first, first + b]))
        pos, neg_caption, neg_image = scores.split(b)
        loss = itm_loss(pos, neg_caption, neg_image, self.cfg.model.itm_loss, self.cfg.model.itm_margin)
        return {"loss": loss, "output": pos}

    # -- evaluation -----------------------------------------------------------------------------------------------
    def evaluator(self, dataset: ITMDataset) -> ITMEvaluator:
        return ITMEvaluator(dataset)

    def _subset(self, dataset: ITMDataset, indices: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Images and captions to score: the whole split, or (the search's α part) the images of the sampled
        captions, at most itm.search_eval_images of them, with their captions."""
        if indices is None or len(indices) == dataset.n_captions:
            return np.arange(dataset.n_images), np.arange(dataset.n_captions)
        captions = np.unique(np.asarray(indices, dtype=np.int64))
        images = np.unique(dataset.caption_image[captions])[:self.cfg.itm.search_eval_images]
        captions = captions[np.isin(dataset.caption_image[captions], images)]
        return images, captions

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True,
                 desc: str = "eval") -> tuple[dict[str, Any], ITMEvaluator]:
        """Scores every image against every caption (of the split, or of the α-part subset the loader samples),
        with each caption's text encoding computed once; returns flat metrics and the evaluator (scores, metrics)."""
        dataset: ITMDataset = loader.dataset
        images, captions = self._subset(dataset, getattr(loader.sampler, "indices", None))
        rank, world = dist.rank(), dist.world_size()
        was_training = model.training
        model.eval()
        try:
            scorer = PairScorer(model, device, self.cfg.itm.eval_pairs)
            mine = images[rank::world] if world > 1 else images
            with_box = dataset.with_box_feature
            text_ix = torch.from_numpy(dataset.text_ix[captions])
            part, timing = scorer.score_matrix(
                text_ix, lambda ids: dataset.regions.batch(mine[ids].tolist(), with_box), len(mine),
                progress=lambda blocks: progress_bar(blocks, progress, desc=desc, leave=False))
        finally:
            model.train(was_training)
        if world > 1:
            full = np.zeros((len(images), len(captions)), dtype=np.float32)
            full[rank::world] = part
            scores = dist.sum_arrays(full)
        else:
            scores = part
        position = {int(i): p for p, i in enumerate(images)}
        caption_image = np.array([position[int(i)] for i in dataset.caption_image[captions]], dtype=np.int64)
        nested = retrieval_metrics(scores, caption_image)
        metrics: dict[str, Any] = {**flatten_metrics(nested), "images": len(images), "captions": len(captions),
                                   "pairs_per_second": timing["pairs_per_second"], "eval_seconds": timing["seconds"]}
        full_split = len(images) == dataset.n_images and len(captions) == dataset.n_captions
        if self.layout == "coco" and full_split and len(images) == 5000:
            # COCO: the 5K numbers above, and the 1K protocol (5 folds of 1,000 images, averaged).
            nested["coco1k"] = fold_metrics(scores, 5)
            metrics.update(flatten_metrics(nested["coco1k"], "coco1k_"))
        evaluator = self.evaluator(dataset)
        evaluator.scores, evaluator.caption_image = scores, caption_image
        evaluator.metrics, evaluator.timing = nested, timing
        return metrics, evaluator

    def can_evaluate(self, split: str) -> bool:
        try:
            split_name(split, LAYOUTS[self.layout])
        except DataError:
            return False
        return True  # every SCAN split pairs its captions with their images

    def write_results(self, evaluator: ITMEvaluator, path: str) -> dict[str, Any]:
        """result_<VERSION>.json (the metrics) and scores_<VERSION>.npy beside it ([images, captions] float32)."""
        if evaluator.scores is None:
            raise DataError("internal check failed: no scores were computed; nothing was written.")
        ds = evaluator.dataset
        if evaluator.scores.shape != (ds.n_images, ds.n_captions):
            raise DataError(f"internal check failed: the scores cover {evaluator.scores.shape} of "
                            f"({ds.n_images}, {ds.n_captions}) image-caption pairs; nothing was written.")
        result = Path(path)
        scores_path = result.with_name(result.name.replace("result_", "scores_", 1)).with_suffix(".npy")

        def save(f) -> None:
            buffer = io.BytesIO()
            np.save(buffer, evaluator.scores.astype(np.float32), allow_pickle=False)
            f.write(buffer.getvalue())

        atomic_write(scores_path, save, binary=True)
        report = {"dataset": self.cfg.data.dataset, "split": ds.name, "checkpoint": self.cfg.run.ckpt_path,
                  "images": ds.n_images, "captions": ds.n_captions, "scores_file": os.fspath(scores_path),
                  **evaluator.metrics, **evaluator.timing}
        atomic_write_json(result, report, indent=2)
        return {"result_file": os.fspath(result), "scores_file": os.fspath(scores_path), "images": ds.n_images,
                "captions": ds.n_captions, **flatten_metrics(evaluator.metrics),
                "pairs_per_second": evaluator.timing.get("pairs_per_second")}
