"""Run every benchmark (network steps, variants, the steps' matrix products alone, data loading, ITM scoring), each
in its own process, and write the tables as markdown and JSON.

    python -m benchmarks                         # full: batches 16 and 64, 3 timed steps each, variants at 64
    python -m benchmarks --quick                 # smoke run: batch 4, one timed step, small loader/ITM sizes
    python -m benchmarks --threads 2 --out benchmarks/results --variants naive bf16

Every network step runs in a fresh process with OMP_NUM_THREADS/MKL_NUM_THREADS = --threads, so its peak RSS is its
own. Results: <out>/results.json (every record) and <out>/results.md (the tables and the acceptance checks).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import environment, machine_load

STEP_MODES = ("train", "search_weight", "search_arch", "eval")
CEILING_MODES = ("train", "search_weight", "search_arch")   # the steps with a speed target
TARGET_FRACTION, TARGET_RATIO = 0.75, 1.3
# name → (extra benchmarks.steps arguments, extra environment, modes it is measured on). Each changes one thing
# against the default run, except `tuned` (the suggested settings together) and `tuned_lowmem`.
FUSED = ["--optimizer", "fused"]
THP = {"THP_MEM_ALLOC_ENABLE": "1"}          # c10's allocator: 2 MB-aligned, madvise(MADV_HUGEPAGE) for ≥ 2 MB
LEAN = ["--host-memory", "lean"]             # run.host_memory=lean: blocks ≥ 1 MB mapped and returned on free
VARIANTS: dict[str, tuple[list[str], dict[str, str], tuple[str, ...]]] = {
    "naive": (["--naive"], {}, STEP_MODES),
    "torch_rng": (["--dropout-rng", "torch"], {}, ("train", "search_arch")),
    "fused_adam": (FUSED, {}, ("train", "search_weight")),
    "thp": ([], THP, ("train",)),
    "host_reuse": (["--host-memory", "reuse"], {}, ("train", "search_weight")),
    "host_lean": (LEAN, {}, ("train",)),
    "bf16": (["--amp", "bf16"], {}, STEP_MODES),
    "compile": (["--compile"], {}, ("train", "eval")),
    "tuned": (FUSED, THP, ("train", "search_weight", "search_arch")),
    "tuned_lowmem": (FUSED + LEAN, {}, ("train",)),
}
DEFAULT_VARIANTS = tuple(VARIANTS)
REPO = Path(__file__).resolve().parents[1]


def _run_module(module: str, args: list[str], threads: int, extra_env: dict[str, str], timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO),
               **extra_env)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args, "--json", out], check=False, cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"],
                    "returncode": proc.returncode}
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    except subprocess.TimeoutExpired:
        return {"error": [f"timed out after {timeout:.0f} s"]}
    finally:
        os.unlink(out)


def _gb(n: float | None) -> str:
    return "–" if n is None else f"{n / 1e9:.2f}"


def _peak(r: dict) -> str:
    """Peak memory: host RSS, and on a GPU the device's peak allocation beside it."""
    return _gb(r["rss_peak"]) + (f" (GPU {_gb(r['cuda_peak'])})" if "cuda_peak" in r else "")


def _step_row(r: dict) -> str:
    if "error" in r:
        return f"| {r.get('mode')} | {r.get('batch')} | error: {' '.join(r['error'])} |||||||||"
    return (f"| {r['mode']} | {r['batch']} | {r['median_s']:.2f} | {r['samples_per_s']:.1f} | "
            f"{r['flops_fwd_per_sample'] / 1e9:.2f} / {r['flops_step_per_sample'] / 1e9:.2f} | "
            f"{r['matmul_rate'] / 1e9:.0f} | {r['fraction_of_floor']:.0%} | {_peak(r)} | "
            f"{_gb(r['rss_delta'])} | {r['threads']} |")


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# mmnas benchmarks ({results['started']})", "",
             f"Device {results.get('device', 'cpu')}; threads {results['threads']}; {results['env']['cpus']} CPUs; "
             f"torch {results['env']['torch']} "
             f"({results['env']['cpu_capability']}); load average (1/5/15 min) before "
             f"{results['load_before']['loadavg']}, after {results.get('load_after', {}).get('loadavg')}."
             + (" Quick (smoke) run: not representative." if results["quick"] else ""), "",
             "## Network steps (release VQA sizes, fp32, fast paths)", "",
             "FLOP floor = counted FLOPs / the fp32 matmul rate measured in the same process right before each "
             "timed step; fraction = floor / measured time (median over the timed steps). Memory: peak RSS "
             "(ru_maxrss, GB = 10⁹ bytes) and its rise over the baseline taken after building the network, "
             "optimizer and batch.", "",
             "| mode | batch | s/step | samples/s | GFLOP/sample fwd / step | matmul GFLOP/s | of floor | "
             "peak RSS GB | over baseline GB | threads |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_step_row(r) for r in results["steps"]]
    if results.get("variants"):
        base = {(r.get("mode"), r.get("batch")): r for r in results["steps"] if "error" not in r}
        lines += ["", "## Options and alternatives (one change each, same batch)", "",
                  "| variant | mode | batch | s/step | samples/s | of floor | peak RSS GB | time vs default |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in results["variants"]:
            r = v["record"]
            if "error" in r:
                lines.append(f"| {v['variant']} | {v['mode']} | {v['batch']} | error: {' '.join(r['error'])} |||||")
                continue
            b = base.get((v["mode"], v["batch"]))
            rel = f"{r['median_s'] / b['median_s']:.2f}×" if b else "–"
            lines.append(f"| {v['variant']} | {v['mode']} | {v['batch']} | {r['median_s']:.2f} | "
                         f"{r['samples_per_s']:.1f} | {r['fraction_of_floor']:.0%} | {_peak(r)} | {rel} |")
    if results.get("ceilings"):
        lines += ["", "## Matrix products alone (`benchmarks.matmul_ceiling`)", "",
                  "Every matrix product of one step, timed on its own on tensors of the same layout with a fresh "
                  "output; the ceiling is the fraction of the products' FLOP floor they reach, i.e. the best a "
                  "step could do if nothing else took time. The last column times the same products where they ran, "
                  "inside one step.", "",
                  "| mode | batch | GFLOP in products | matmul GFLOP/s | floor s | products alone s | ceiling "
                  "| inside a step s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["ceilings"]:
            if "error" in r:
                lines.append(f"| {r.get('mode')} | {r.get('batch')} | error: {' '.join(r['error'])} ||||||")
                continue
            in_step = f"{r['products_in_step_s']:.2f}" if "products_in_step_s" in r else "–"
            lines.append(f"| {r['mode']} | {r['batch']} | {r['flops'] / 1e9:.0f} | {r['rate'] / 1e9:.0f} | "
                         f"{r['floor_s']:.2f} | {r['products_fresh_s']:.2f} | {r['ceiling_fresh']:.0%} | {in_step} |")
    for ld in results.get("loader", []):
        if "error" in ld:
            lines += ["", f"## Data loading: error {ld['error']}"]
            continue
        lines += ["", f"## Data loading (VQA dataset + collate, batch {ld['batch']}, {ld['samples']} samples of "
                      f"{ld['images']} images; .npz {ld['npz_format']}, "
                      f"{ld['npz_bytes_per_image'] / 1e3:.0f} kB per image)", "",
                  "| store | workers | samples/s | first batch s |", "|---|---|---|---|"]
        lines += [f"| {r['store']} | {r['workers']} | {r['samples_per_s']:.0f} | {r['first_batch_s']:.2f} |"
                  for r in ld["results"]]
        lines.append("")
        lines.append("Packed / npz: " + ", ".join(f"{k.replace('speedup_workers', 'workers ')}: {v:.1f}×"
                                                  for k, v in ld.items() if k.startswith("speedup")))
    itm = results.get("itm")
    if itm:
        if "error" in itm:
            lines += ["", f"## ITM scoring: error {itm['error']}"]
        else:
            lines += ["", f"## ITM evaluation (PairScorer.score_matrix, arch/mmnas_itm.json, H 512, 36 regions; "
                          f"{itm['images']} images × {itm['captions']} captions)", "",
                      "| paths | pairs/s | seconds |", "|---|---|---|"]
            lines += [f"| {r['paths']} | {r['pairs_per_s']:.1f} | {r['seconds']:.1f} |" for r in itm["results"]]
            lines.append(f"\nmax |fast − naive| score {itm['max_abs_score_difference']:.1e}")
    lines += ["", "## Acceptance targets", ""] + [f"- {c}" for c in checks(results)]
    return "\n".join(lines) + "\n"


def best_fraction(step: dict, ceiling: dict) -> float:
    """The fraction of the step's FLOP floor it would reach if everything but its matrix products took no time.

    The step's counted FLOPs over the ceiling process's own rate, divided by its products' time alone: the rate and
    the products are measured in the same process, so machine load affects both alike."""
    return step["flops_step_per_sample"] * step["batch"] / ceiling["rate"] / ceiling["products_fresh_s"]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _speed_check(name: str, step: dict, ceiling: dict | None) -> str:
    frac = step["fraction_of_floor"]
    line = (f"{name}, batch {step['batch']}: {frac:.0%} of the FLOP floor (target ≥ {TARGET_FRACTION:.0%}) — "
            f"{_met(frac >= TARGET_FRACTION)}")
    if ceiling:
        best = best_fraction(step, ceiling)
        line += f"; its matrix products alone, each timed on its own, allow at most {best:.0%}"
        if best < TARGET_FRACTION:
            line += " (by this run's measurements the target is out of reach whatever the rest of the step costs)"
        else:
            # In the step's own time scale: its floor at the rate measured around it.
            floor = step["flops_step_per_sample"] * step["batch"] / step["matmul_rate"]
            products = floor / best
            line += (f"; the target leaves {floor / TARGET_FRACTION - products:.2f} s per step for everything else, "
                     f"which takes ~{step['median_s'] - products:.2f} s now")
    return line


def checks(results: dict[str, Any]) -> list[str]:
    steps = {(r.get("mode"), r.get("batch")): r for r in results["steps"] if "error" not in r}
    ceilings = {(r.get("mode"), r.get("batch")): r for r in results.get("ceilings", []) if "error" not in r}
    big = max((b for _, b in steps), default=None)
    out = []
    tr, sw, sa = steps.get(("train", big)), steps.get(("search_weight", big)), steps.get(("search_arch", big))
    if tr:
        out.append(_speed_check("train step", tr, ceilings.get(("train", big))))
        if "cuda_peak" in tr:   # the targets are the CPU's; on a GPU the figures are reported, not judged
            out.append(f"train step, batch {big}: GPU peak allocation {tr['cuda_peak'] / 1e9:.2f} GB (the memory "
                       f"target is the CPU's)")
        else:
            out.append(f"train step, batch {big}: peak RSS {tr['rss_peak'] / 1e9:.2f} GB (target ≤ 3.5 GB; release "
                       f"6.5 GB) — {_met(tr['rss_peak'] <= 3.5e9)}")
    if sw:
        out.append(_speed_check("search weight step", sw, ceilings.get(("search_weight", big))))
    if sw and sa:
        ratio = sa["median_s"] / sw["median_s"]
        flop_ratio = sa["flops_step_per_sample"] / sw["flops_step_per_sample"]
        line = (f"arch step / weight step, batch {big}: {ratio:.2f}× (target ≤ {TARGET_RATIO}×; release 9.3/4.9 = "
                f"1.9×; FLOP ratio {flop_ratio:.2f}) — {_met(ratio <= TARGET_RATIO)}")
        # With the weight step at its own target, the ratio target fixes how efficient the arch step must be.
        needed = flop_ratio * TARGET_FRACTION / TARGET_RATIO
        line += (f"; with the weight step at its {TARGET_FRACTION:.0%} target, {TARGET_RATIO}× would need the arch "
                 f"step at ≥ {needed:.0%} of its floor")
        arch_ceiling = ceilings.get(("search_arch", big))
        if arch_ceiling:
            best = best_fraction(sa, arch_ceiling)
            line += f", and its matrix products alone allow at most {best:.0%}"
            if best < needed:
                line += " (by this run's measurements the two targets cannot both be met)"
        out.append(line)
    for ld in results.get("loader", []):
        if "error" not in ld:
            worst = min(v for k, v in ld.items() if k.startswith("speedup"))
            out.append(f"loader ({ld['npz_format']} .npz): packed ≥ {worst:.1f}× the .npz path at every worker count "
                       f"(target ≥ 3×) — {_met(worst >= 3)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a fast smoke run (small batches and sizes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the network steps run (cuda: the GPU table; the loader and "
                   "ITM scoring stay on the CPU, and the products-alone ceilings, a CPU measurement, are skipped)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--batches", type=int, nargs="+", help="default 16 64 (quick: 4)")
    p.add_argument("--modes", nargs="+", choices=STEP_MODES, default=list(STEP_MODES))
    p.add_argument("--reps", type=int, help="timed steps per configuration (default 3; quick 1)")
    p.add_argument("--variants", nargs="*", choices=sorted(VARIANTS),
                   help=f"options measured at the largest batch (default: {' '.join(DEFAULT_VARIANTS)}; quick: none)")
    p.add_argument("--skip", nargs="*", default=[], choices=["steps", "ceilings", "loader", "itm"])
    p.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark process")
    a = p.parse_args(argv)
    if a.device != "cpu" and "steps" not in a.skip:
        import torch
        if a.device.startswith("cuda") and not torch.cuda.is_available():
            print(f"error: --device {a.device}, but this PyTorch ({torch.__version__}) sees no CUDA device; run on "
                  f"the GPU machine, or leave --device out for the CPU tables.", file=sys.stderr)
            return 2
    batches = a.batches or ([4] if a.quick else [16, 64])
    reps = a.reps or (1 if a.quick else 3)
    variants = a.variants if a.variants is not None else ([] if a.quick else list(DEFAULT_VARIANTS))
    a.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "quick": a.quick,
                               "threads": a.threads, "device": a.device, "env": environment(),
                               "load_before": machine_load(),
                               "steps": [], "variants": [], "ceilings": [], "loader": []}

    def save() -> None:
        (a.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        (a.out / "results.md").write_text(markdown(results), encoding="utf-8")

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    step_args = ["--threads", str(a.threads), "--reps", str(reps), "--warmup", "1", "--device", a.device]
    if "steps" not in a.skip:
        for batch in batches:
            for mode in a.modes:
                log(f"{mode} batch {batch} …")
                r = _run_module("benchmarks.steps", ["--mode", mode, "--batch", str(batch), *step_args], a.threads,
                                {}, a.timeout)
                r.setdefault("mode", mode)
                r.setdefault("batch", batch)
                results["steps"].append(r)
                log(_step_row(r))
                save()
        big = max(batches)
        for name in variants:
            extra, env, modes = VARIANTS[name]
            for mode in (m for m in a.modes if m in modes):
                log(f"variant {name}: {mode} batch {big} …")
                r = _run_module("benchmarks.steps", ["--mode", mode, "--batch", str(big), *step_args, *extra],
                                a.threads, env, a.timeout)
                results["variants"].append({"variant": name, "mode": mode, "batch": big, "record": r})
                log(_step_row(dict(r, mode=mode, batch=big)))
                save()
    if "ceilings" not in a.skip and a.device == "cpu":   # the ceiling is a CPU measurement
        big = max(batches)
        for mode in (m for m in a.modes if m in CEILING_MODES):
            log(f"matrix products alone: {mode} batch {big} …")
            r = _run_module("benchmarks.matmul_ceiling",
                            ["--mode", mode, "--batch", str(big), "--threads", str(a.threads),
                             "--reps", "1" if a.quick else "5"], a.threads, {}, a.timeout)
            r.setdefault("mode", mode)
            r.setdefault("batch", big)
            results["ceilings"].append(r)
            if "error" not in r:
                log(f"{mode}: products alone {r['products_fresh_s']:.2f} s, ceiling {r['ceiling_fresh']:.0%}; "
                    f"inside a step {r['products_in_step_s']:.2f} s")
            save()
    if "loader" not in a.skip:
        for fmt in ("compressed", "stored"):
            log(f"loader ({fmt} .npz) …")
            size = ["--images", "48", "--batch", "16"] if a.quick else ["--images", "300", "--batch", "64"]
            results["loader"].append(_run_module(
                "benchmarks.loader", [*size, "--workers", "0", "2", "--threads", str(a.threads),
                                      "--npz", fmt, "--epochs", "1" if a.quick else "2"],
                a.threads, {}, a.timeout))
            save()
    if "itm" not in a.skip:
        log("ITM scoring …")
        size = ["--images", "4", "--captions", "20"] if a.quick else ["--images", "20", "--captions", "100"]
        results["itm"] = _run_module("benchmarks.itm_eval", [*size, "--threads", str(a.threads)], a.threads, {},
                                     a.timeout)
    results["load_after"] = machine_load()
    save()
    log(f"wrote {a.out / 'results.md'} and {a.out / 'results.json'}")
    print("\n".join(checks(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
