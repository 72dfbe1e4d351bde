"""Network step benchmarks at the release's VQA sizes, one (mode, batch) per process: FLOPs per sample (counted), the
machine's fp32 matmul rate measured before every timed step, seconds per step, samples/s, fraction of the FLOP floor
and peak memory.

Modes (each calls the engine's own step code, so the benchmark times what a run does):
  train         Trainer.train_step on build_network(arch/mmnas_vqa.json), H = 512 (configs/vqa/train.yaml)
  eval          the same network, eval mode, no_grad forward (what run_evaluation does per batch)
  search_weight Searcher.weight_step on build_supernet, H = 256, the release's space (configs/vqa/search.yaml)
  search_arch   Searcher.arch_step, mode from the config (release: full)

    python -m benchmarks.steps --mode train --batch 64 --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import inspect
import time
from typing import Any, Callable

import torch

from benchmarks.common import (VQA_SHAPES, count_flops, current_rss_bytes, environment, machine_load, matmul_rate,
                               median, minor_faults, peak_rss_bytes, set_threads, sync, vqa_batch, write_json)
from mmnas.engine.memory import HOST_MEMORY_POLICIES, set_host_memory

MODES = ("train", "eval", "search_weight", "search_arch")
LR = 1e-4  # any positive rate: the schedule's value does not change the work of a step


@dataclasses.dataclass
class Bench:
    """One mode, ready to run: `step(batch)` does one step; `count(batch)` returns (forward, step) FLOPs of the step
    the next `step` call will take (same sampled path)."""
    step: Callable[[dict], Any]
    count: Callable[[dict], tuple[int, int]]
    model: torch.nn.Module
    info: dict[str, Any]


def _config(stage: str, amp: str, device: torch.device):
    from mmnas.config import build_config
    # As typed values (a YAML override would read "off" as a boolean).
    return build_config("vqa", stage, flags={"run.amp": amp, "run.seed": 0, "run.progress": False,
                                             "run.gpu": "cpu" if device.type == "cpu" else "0"})


def _task(cfg):
    """The VQA task without data: forward_loss only needs the model and a batch."""
    from mmnas.tasks.vqa import VQATask
    return VQATask(cfg)


def _model_kwargs() -> dict[str, Any]:
    return {"vocab_size": VQA_SHAPES["vocab"], "answer_size": VQA_SHAPES["answers"], "word_vectors": None}


def _optimizer(params, cfg, kind: str) -> torch.optim.Optimizer:
    from mmnas.engine.common import build_optimizer
    # fused: the engine's optim.fused_adam option
    return build_optimizer(params, dataclasses.replace(cfg.optim, fused_adam=kind == "fused"))


def _engine(method: Callable, runner, *args):
    """Call an engine step method with the arguments it takes (the engine evolves: a `stop` argument, the run's
    StopSignals, is passed when the method has one)."""
    kwargs = {"stop": runner.stop} if "stop" in inspect.signature(method).parameters else {}
    return method(*args, **kwargs)


def _fast(enabled: bool):
    from mmnas.ops.layers import fast_paths
    return fast_paths(enabled)


def build_train_like(mode: str, device: torch.device, amp: str, compile_model: bool, optimizer: str) -> Bench:
    from mmnas.engine.common import autocast
    from mmnas.engine.trainer import Trainer
    from mmnas.models.build import build_network
    cfg = _config("train", amp, device)
    trainer = Trainer(cfg, _task(cfg))
    torch.manual_seed(0)
    model = build_network("vqa", cfg.run.arch_path, epoch=cfg.run.arch_epoch, **_model_kwargs(),
                          **dataclasses.asdict(cfg.model)).to(device)
    run_model = torch.compile(model) if compile_model else model
    info = {"arch": cfg.run.arch_path, "hidden_size": cfg.model.hidden_size,
            "parameters": sum(p.numel() for p in model.parameters())}
    if mode == "eval":
        model.eval()

        def step(batch):
            with torch.no_grad(), autocast(device, amp):
                return run_model(batch)

        def count(batch):
            with _fast(False), torch.no_grad():
                f = count_flops(lambda: model(batch))
            return f, f
        return Bench(step, count, model, info)

    model.train()
    opt = _optimizer(list(model.parameters()), cfg, optimizer)
    # Trainer.train() creates its GradScaler before the loop; train_step uses it (disabled unless fp16).
    trainer.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def step(batch):
        return _engine(trainer.train_step, trainer, run_model, opt, batch, LR)

    def count(batch):
        # A real step on the small batch (it moves the weights a little, which changes no step's work).
        with _fast(False):
            with torch.no_grad():
                fwd = count_flops(lambda: trainer.task.forward_loss(model, batch))
            full = count_flops(lambda: _engine(trainer.train_step, trainer, model, opt, batch, LR))
        return fwd, full
    return Bench(step, count, model, info)


def build_search(mode: str, device: torch.device, amp: str, optimizer: str) -> Bench:
    from mmnas.engine.searcher import Searcher
    from mmnas.models.build import build_supernet
    cfg = _config("search", amp, device)
    sc = cfg.search
    searcher = Searcher(cfg, _task(cfg))
    torch.manual_seed(0)
    net = build_supernet("vqa", nodes={"enc": sc.nodes_enc, "dec": sc.nodes_dec}, **_model_kwargs(),
                         **dataclasses.asdict(cfg.model)).to(device)
    net.train()
    weights, alphas = net.weight_parameters(), net.arch_parameters()
    opt = _optimizer(weights, cfg, optimizer)
    # As Searcher.search() sets them up before its loop.
    alpha_opt = torch.optim.Adam(alphas, lr=sc.alpha_lr, betas=tuple(sc.alpha_betas),
                                 weight_decay=sc.alpha_weight_decay)
    searcher.scalers = {name: torch.amp.GradScaler(device.type, enabled=amp == "fp16") for name in ("weight", "arch")}
    gen = torch.Generator().manual_seed(cfg.run.seed + 1)
    info = {"hidden_size": cfg.model.hidden_size, "nodes": {"enc": sc.nodes_enc, "dec": sc.nodes_dec},
            "search_mode": sc.mode, "inactive_grads": sc.inactive_grads,
            "weights": sum(p.numel() for p in weights)}

    if mode == "search_weight":
        def step(batch, g=gen):
            return _engine(searcher.weight_step, searcher, net, opt, weights, batch, LR, g)
        fwd_mode = "darts" if sc.mode == "darts" else "weight"
    else:
        def step(batch, g=gen):
            return _engine(searcher.arch_step, searcher, net, alpha_opt, weights, batch, g)
        fwd_mode = sc.mode

    def count(batch):
        # A real step on the small batch with a copy of the path generator: it samples the path the timed step
        # will sample. An arch step moves α (which the sampling reads): α and its optimizer are put back after.
        state = gen.get_state()
        saved = [a.detach().clone() for a in alphas]
        alpha_state = copy.deepcopy(alpha_opt.state_dict())
        g = torch.Generator()
        with _fast(False):
            g.set_state(state)
            with torch.no_grad(), net.sampling(fwd_mode, g):
                fwd = count_flops(lambda: searcher.task.forward_loss(net, batch))
            g.set_state(state)
            full = count_flops(lambda: step(batch, g))
        with torch.no_grad():
            for a, b in zip(alphas, saved):
                a.copy_(b)
        alpha_opt.load_state_dict(alpha_state)
        return fwd, full
    return Bench(step, count, net, info)


def prepare_process(threads: int, host_memory: str | None = None) -> tuple[int, str]:
    """This process as a run of the engine would be: the thread count and the host-memory policy (default: the
    engine's, which cli.run_config sets). Returns both as used."""
    from mmnas.config import RunConfig
    host_memory = host_memory or RunConfig.host_memory
    set_host_memory(host_memory)
    return set_threads(threads), host_memory


def build_bench(mode: str, device: torch.device, amp: str = "off", compile_model: bool = False,
                optimizer: str = "engine") -> Bench:
    """The Bench of one mode (see MODES)."""
    if mode in ("train", "eval"):
        return build_train_like(mode, device, amp, compile_model, optimizer)
    if mode in ("search_weight", "search_arch"):
        if compile_model:
            raise SystemExit("--compile: the supernet changes its path every step (a recompile each time); "
                             "benchmark compile on train/eval only.")
        return build_search(mode, device, amp, optimizer)
    raise SystemExit(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")


def run(mode: str, batch_size: int, threads: int, reps: int, warmup: int, device: str = "cpu", amp: str = "off",
        compile_model: bool = False, naive: bool = False, optimizer: str = "engine",
        count_batch: int = 2, dropout_rng: str | None = None, host_memory: str | None = None) -> dict[str, Any]:
    """Benchmark one mode at one batch size in this process; returns the record (see the module docstring)."""
    from mmnas.ops.layers import dropout_rng as current_rng
    from mmnas.ops.layers import set_dropout_rng
    if dropout_rng:
        set_dropout_rng(dropout_rng)
    dropout_rng = current_rng()
    used_threads, host_memory = prepare_process(threads, host_memory)
    dev = torch.device(device)
    load_before = machine_load()
    with (_fast(False) if naive else contextlib.nullcontext()):
        bench = build_bench(mode, dev, amp, compile_model, optimizer)
        batch = vqa_batch(batch_size, seed=1, device=dev)
        small = vqa_batch(count_batch, seed=2, device=dev)
        rss_baseline = peak_rss_bytes()
        rss_now_baseline = current_rss_bytes()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(warmup):
            bench.step(batch)
        times, cpu_times, faults, rates, fractions, flops_fwd, flops_step = [], [], [], [], [], [], []
        for _ in range(reps):
            fwd, full = bench.count(small)
            flops_fwd.append(fwd / count_batch)
            flops_step.append(full / count_batch)
            before = matmul_rate(device=dev)
            sync(dev)
            f0 = minor_faults()
            c0, t0 = time.process_time(), time.perf_counter()
            bench.step(batch)
            sync(dev)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            faults.append(minor_faults() - f0)
            # The rate around the step (before and after): on a shared machine one short sample can be an outlier.
            rate = (before + matmul_rate(device=dev)) / 2
            times.append(dt)
            cpu_times.append(dc)
            rates.append(rate)
            fractions.append(full / count_batch * batch_size / rate / dt)
    t = median(times)
    record = {
        "mode": mode, "batch": batch_size, "threads": used_threads, "device": str(dev), "amp": amp,
        "compile": compile_model, "fast_paths": not naive, "optimizer": optimizer, "dropout_rng": dropout_rng,
        "host_memory": host_memory, **bench.info,
        "flops_fwd_per_sample": median(flops_fwd), "flops_step_per_sample": median(flops_step),
        "matmul_rate": median(rates), "rates": rates, "seconds": times, "cpu_seconds": cpu_times,
        "page_faults": faults,
        "median_s": t, "samples_per_s": batch_size / t, "fraction_of_floor": median(fractions),
        "fractions": fractions, "rss_baseline": rss_baseline, "rss_baseline_now": rss_now_baseline,
        "rss_peak": peak_rss_bytes(), "rss_delta": peak_rss_bytes() - rss_baseline,
        "load_before": load_before, "load_after": machine_load(), "env": environment(),
    }
    if dev.type == "cuda":
        record["cuda_peak"] = torch.cuda.max_memory_allocated(dev)
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (train, eval)")
    p.add_argument("--naive", action="store_true", help="the naive formulas instead of the fast paths")
    p.add_argument("--optimizer", choices=["engine", "fused"], default="engine",
                   help="engine: build_optimizer as runs use it; fused: the same with optim.fused_adam=true")
    p.add_argument("--dropout-rng", choices=["fast", "torch"],
                   help="CPU dropout masks: fast (the library's default stream) or torch (F.dropout's draws); "
                        "see mmnas.ops.layers.set_dropout_rng")
    p.add_argument("--host-memory", choices=HOST_MEMORY_POLICIES,
                   help="glibc policy (run.host_memory; default: the engine's default); see mmnas/engine/memory.py")
    p.add_argument("--json", help="write the record here")
    a = p.parse_args(argv)
    record = run(a.mode, a.batch, a.threads, a.reps, a.warmup, a.device, a.amp, a.compile, a.naive, a.optimizer,
                 dropout_rng=a.dropout_rng, host_memory=a.host_memory)
    if a.json:
        write_json(a.json, record)
    print(f"{record['mode']} bs {record['batch']}: {record['median_s']:.3f} s/step, "
          f"{record['samples_per_s']:.1f} samples/s, {record['fraction_of_floor']:.0%} of the FLOP floor "
          f"({record['flops_step_per_sample'] / 1e9:.2f} GFLOP/sample, "
          f"rate {record['matmul_rate'] / 1e9:.0f} GFLOP/s), "
          f"peak RSS {record['rss_peak'] / 2 ** 30:.2f} GiB (+{record['rss_delta'] / 2 ** 30:.2f} over baseline)")


if __name__ == "__main__":
    main()
