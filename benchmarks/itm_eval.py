"""ITM evaluation speed: image-caption pairs scored per second by PairScorer.score_matrix (what ITMTask.evaluate runs),
for the release's ITM network (arch/mmnas_itm.json, H = 512, 36 regions, 50 tokens) on synthetic inputs; the fast
paths and the naive formulas side by side, with the pair batch of itm.eval_pairs (1024).

    python -m benchmarks.itm_eval --images 20 --captions 100 --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import environment, machine_load, matmul_rate, set_threads, write_json

ITM_SHAPES = {"regions": 36, "feat": 2048, "tokens": 50, "vocab": 8500}


def run(images: int, captions: int, threads: int, pairs_per_batch: int = 1024, reps: int = 1) -> dict[str, Any]:
    from mmnas.models.build import build_network
    from mmnas.models.itm_scoring import PairScorer
    from mmnas.ops.layers import fast_paths
    used = set_threads(threads)
    s = ITM_SHAPES
    torch.manual_seed(0)
    model = build_network("itm", "arch/mmnas_itm.json", vocab_size=s["vocab"], hidden_size=512).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 20, (captions,), generator=g)
    text_ix = torch.randint(3, s["vocab"], (captions, s["tokens"]), generator=g)
    text_ix[torch.arange(s["tokens"]) >= lengths[:, None]] = 0
    feat = torch.rand(images, s["regions"], s["feat"], generator=g)
    rel = torch.randn(images, s["regions"], s["regions"], 4, generator=g)

    def load(ids):
        return {"img_feat": feat[ids], "img_rel": rel[ids]}

    record: dict[str, Any] = {"images": images, "captions": captions, "pairs": images * captions,
                              "pairs_per_batch": pairs_per_batch, "threads": used, "load_before": machine_load(),
                              "results": []}
    scores = {}
    for name, fast in (("fast", True), ("naive", False)):
        best = None
        for _ in range(reps):
            rate = matmul_rate()
            with fast_paths(fast):
                scorer = PairScorer(model, "cpu", pairs_per_batch)
                t0 = time.perf_counter()
                scores[name], _ = scorer.score_matrix(text_ix, load, images)
                dt = time.perf_counter() - t0
            if best is None or dt < best["seconds"]:
                best = {"paths": name, "seconds": dt, "pairs_per_s": images * captions / dt, "matmul_rate": rate}
        record["results"].append(best)
    record["max_abs_score_difference"] = float(abs(scores["fast"] - scores["naive"]).max())
    record["speedup"] = record["results"][0]["pairs_per_s"] / record["results"][1]["pairs_per_s"]
    record["load_after"] = machine_load()
    record["env"] = environment()
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--captions", type=int, default=100)
    p.add_argument("--pairs-per-batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--json")
    a = p.parse_args(argv)
    record = run(a.images, a.captions, a.threads, a.pairs_per_batch, a.reps)
    if a.json:
        write_json(a.json, record)
    for r in record["results"]:
        print(f"{r['paths']:5s}: {r['pairs_per_s']:.0f} pairs/s ({r['seconds']:.1f} s for {record['pairs']} pairs)")
    print(f"max |fast − naive| score: {record['max_abs_score_difference']:.2e}")


if __name__ == "__main__":
    main()
