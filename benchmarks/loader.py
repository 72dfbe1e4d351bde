"""Data-loading throughput of the VQA dataset + collate (mmnas/data/vqa.py, RegionStore), on generated files in the
release's format, reading one `.npz` per sample versus the packed, memory-mapped store, with 0 and 2 workers.

The tree (a temporary folder, deleted afterwards): `bua-r101-max100/train2014/COCO_train2014_<id>.jpg.npz` with
x [2048, n] float32 (n = 10…100 regions, 30 % zeros like ReLU features), bbox [n, 4], image_h, image_w, num_bbox,
written with np.savez_compressed as the bottom-up extractor writes them (or --npz stored: np.savez), and question /
annotation files in the official format (2 questions per image, 10 answers each). Both paths read from the page
cache (the files were just written): the figures compare decoding and assembly, not disk reads.

    python -m benchmarks.loader --images 300 --workers 0 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import environment, machine_load, set_threads, write_json

WORDS = ("what is the color of shape man left right how many there are table dog cat red blue green near on in a "
         "does have this that which where people sitting standing").split()
ANSWERS = ("yes", "no", "2", "red", "blue", "dog", "table", "1", "white", "black")


def generate_tree(root: Path, images: int, npz_format: str = "compressed", seed: int = 0) -> Path:
    """A VQA tree of `images` train images in the release's formats (see the module docstring)."""
    rng = np.random.default_rng(seed)
    folder = root / "bua-r101-max100" / "train2014"
    folder.mkdir(parents=True)
    (root / "annotations").mkdir()
    save = np.savez_compressed if npz_format == "compressed" else np.savez
    questions, annotations = [], []
    for k in range(images):
        image_id = 9 + 7 * k
        n = int(rng.integers(10, 101))
        x = np.abs(rng.standard_normal((2048, n), dtype=np.float32)) * (rng.random((2048, n)) > 0.3)
        w, h = int(rng.integers(300, 641)), int(rng.integers(300, 641))
        x1, y1 = rng.uniform(0, w - 20, n), rng.uniform(0, h - 20, n)
        bbox = np.stack([x1, y1, np.minimum(x1 + rng.uniform(10, 300, n), w - 1),
                         np.minimum(y1 + rng.uniform(10, 300, n), h - 1)], 1).astype(np.float32)
        save(folder / f"COCO_train2014_{image_id:012d}.jpg.npz", x=x.astype(np.float32), bbox=bbox,
             image_h=h, image_w=w, num_bbox=n)
        for q in range(2):
            qid = image_id * 10 + q
            words = rng.choice(WORDS, size=int(rng.integers(4, 12)))
            questions.append({"image_id": image_id, "question": " ".join(words) + "?", "question_id": qid})
            answers = [str(rng.choice(ANSWERS)) for _ in range(10)]
            annotations.append({"question_id": qid, "image_id": image_id, "question_type": "what",
                                 "answer_type": "other", "multiple_choice_answer": answers[0],
                                 "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                             for i, a in enumerate(answers)]})
    ann = root / "annotations"
    (ann / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({"questions": questions}))
    (ann / "v2_mscoco_train2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    (ann / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": []}))
    (ann / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": []}))
    return folder


def throughput(dataset, batch_size: int, workers: int, epochs: int = 1) -> dict[str, float]:
    """Samples/s through the engine's DataLoader (make_loader, shuffled), steady state: the clock starts when the
    first batch arrives, so worker start-up is reported separately."""
    from mmnas.engine.common import EpochSampler, make_loader
    sampler = EpochSampler(range(len(dataset)), shuffle=True, seed=0)
    loader = make_loader(dataset, sampler, batch_size, workers)
    best: dict[str, float] = {}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        it = iter(loader)
        first = next(it)
        t1 = time.perf_counter()
        n = 0
        for batch in it:
            n += batch["text_ix"].size(0)
        t2 = time.perf_counter()
        rate = n / (t2 - t1) if n else first["text_ix"].size(0) / (t1 - t0)
        if rate > best.get("samples_per_s", 0.0):
            best = {"samples_per_s": rate, "first_batch_s": t1 - t0, "epoch_s": t2 - t0}
    return best


def run(images: int, batch_size: int, workers: list[int], threads: int, npz_format: str = "compressed",
        geometry: bool = False, epochs: int = 1) -> dict[str, Any]:
    from mmnas.data.features import pack_feature_folder
    from mmnas.data.vqa import VQAData, VQADataset
    set_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="mmnas_loader_"))
    record: dict[str, Any] = {"images": images, "samples": 2 * images, "batch": batch_size, "npz_format": npz_format,
                              "geometry_packed": geometry, "load_before": machine_load(), "results": []}
    try:
        t0 = time.perf_counter()
        folder = generate_tree(tmp, images, npz_format)
        record["generate_s"] = time.perf_counter() - t0
        record["npz_bytes_per_image"] = sum(p.stat().st_size for p in folder.iterdir()) / images
        data = VQAData(tmp, answer_min_count=0)
        meta = data.build_meta()
        npz_set = VQADataset(data, "train", meta, 14, 100, progress=False)
        t0 = time.perf_counter()
        pack_feature_folder(folder, 100, geometry=geometry, progress=False)
        record["pack_s"] = time.perf_counter() - t0
        packed_set = VQADataset(VQAData(tmp, answer_min_count=0), "train", meta, 14, 100, progress=False)
        assert packed_set.regions.packed_images == images and npz_set.regions.packed_images == 0
        for w in workers:
            for name, ds in (("npz", npz_set), ("packed", packed_set)):
                r = throughput(ds, batch_size, w, epochs)
                record["results"].append({"store": name, "workers": w, **r})
        for w in workers:
            by = {r["store"]: r["samples_per_s"] for r in record["results"] if r["workers"] == w}
            record[f"speedup_workers{w}"] = by["packed"] / by["npz"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["load_after"] = machine_load()
    record["env"] = environment()
    record["threads"] = torch.get_num_threads()
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--npz", choices=["compressed", "stored"], default="compressed")
    p.add_argument("--geometry", action="store_true", help="pack the pair geometry too")
    p.add_argument("--epochs", type=int, default=1, help="epochs per configuration (the best is kept)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    record = run(a.images, a.batch, a.workers, a.threads, a.npz, a.geometry, a.epochs)
    if a.json:
        write_json(a.json, record)
    for r in record["results"]:
        print(f"{r['store']:6s} workers {r['workers']}: {r['samples_per_s']:.0f} samples/s "
              f"(first batch {r['first_batch_s']:.2f} s)")
    print({k: round(v, 2) for k, v in record.items() if k.startswith("speedup")})


if __name__ == "__main__":
    main()
