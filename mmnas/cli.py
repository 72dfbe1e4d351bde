"""Command lines of the release (spec §8) for every (task, stage): flags → config → run; user errors are one
paragraph on stderr and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from mmnas.config import ConfigError, build_config
from mmnas.engine import dist
from mmnas.engine.memory import set_host_memory
from mmnas.errors import UserError
from mmnas.tasks import get_task

KNOWN_ERRORS: tuple[type[BaseException], ...] = (UserError, ConfigError)


def build_parser(task: str, stage: str, datasets: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{stage}_{task}.py",
        description=f"MMNas {'architecture search' if stage == 'search' else 'training and evaluation'} for "
                    f"{task.upper()}. Trailing section.key=value items override any config value.")
    p.add_argument("--RUN", dest="run", choices=["train", "val", "test"], default=None,
                   help="train (search, for search scripts), val (accuracy of --CKPT_PATH) or test (result file)")
    p.add_argument("--ARCH_PATH", dest="arch_path", help="architecture json (spec §8), e.g. arch/mmnas_vqa.json")
    p.add_argument("--ARCH_EPOCH", "--GENO_EPOCH", dest="arch_epoch", type=int,
                   help="key epoch<N> of the arch json (default 0)")
    p.add_argument("--CKPT_PATH", dest="ckpt_path", help="checkpoint to evaluate, test or resume from")
    p.add_argument("--RESUME", dest="resume", action="store_true", default=None,
                   help="resume --CKPT_PATH, or the latest checkpoint of --VERSION")
    p.add_argument("--VERSION", dest="version", help="run name: logs/ckpts/<VERSION>_epoch<N>.pkl, logs/log/log_<VERSION>.txt")
    p.add_argument("--GPU", dest="gpu", help="GPU ids, one process each, e.g. '0, 1' ('cpu' forces the CPU)")
    p.add_argument("--NPROC", dest="nproc", type=int, help="CPU processes (gloo), e.g. 2; GPU runs: one per --GPU id")
    p.add_argument("--AMP", dest="amp", choices=["off", "bf16", "fp16"], default=None,
                   help="mixed precision autocast (off by default; fp16 needs CUDA)")
    p.add_argument("--NW", dest="num_workers", type=int, help="data loader workers")
    p.add_argument("--BS", dest="batch_size", type=int, help="batch size (per process)")
    p.add_argument("--SEED", dest="seed", type=int, help="random seed (search default 888, training random)")
    p.add_argument("--SPLIT", dest="train_split", help="training split: train, train+val or train+val+vg")
    p.add_argument("--DATASET", dest="dataset", choices=list(datasets) or None, default=None,
                   help=f"data: {', '.join(datasets)} (the last ones are built-in demos where listed in README)")
    p.add_argument("--CONFIG", dest="config_file", help="a YAML config applied over configs/<task>/<stage>.yaml")
    p.add_argument("--NO_PROGRESS", dest="progress", action="store_false", default=None, help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. optim.max_epoch=2")
    return p


FLAG_KEYS = {"run": "run.run", "arch_path": "run.arch_path", "arch_epoch": "run.arch_epoch",
             "ckpt_path": "run.ckpt_path", "resume": "run.resume", "version": "run.version", "gpu": "run.gpu",
             "num_workers": "data.num_workers", "batch_size": "optim.batch_size", "seed": "run.seed",
             "train_split": "data.train_split", "progress": "run.progress", "nproc": "run.nproc", "amp": "run.amp"}


def parse(task: str, stage: str, argv: Sequence[str] | None = None):
    """The resolved Config of a command line (no side effects)."""
    task_cls = get_task(task)
    args = build_parser(task, stage, task_cls.datasets).parse_intermixed_args(argv)
    flags = {FLAG_KEYS[k]: v for k, v in vars(args).items() if k in FLAG_KEYS and v is not None}
    dataset = args.dataset or task_cls.datasets[0]
    return build_config(task, stage, dataset=dataset, config_file=args.config_file, flags=flags,
                        overrides=args.overrides, demo=dataset in task_cls.demo_datasets)


def run_config(cfg) -> dict[str, Any]:
    """Run a resolved config in this process (alone, or as one process of a distributed run)."""
    set_host_memory(cfg.run.host_memory)  # per process: spawned processes do not inherit it
    task_cls = get_task(cfg.task)
    if cfg.data.dataset in task_cls.demo_datasets:
        if dist.local_rank() == 0:
            task_cls.prepare_demo(cfg)  # generated on first use; never used in place of missing real data
        dist.barrier()
    task_obj = task_cls(cfg)
    if cfg.stage == "search":
        from mmnas.engine.searcher import Searcher as Runner
    else:
        from mmnas.engine.trainer import Trainer as Runner
    runner = Runner(cfg, task_obj)
    with runner.stop:  # SIGTERM / SIGINT from here on: finish the step, checkpoint, exit
        return runner.run()


def execute(task: str, stage: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse and run in this process; returns the run's last metrics (use `main` for multi-process runs)."""
    cfg = parse(task, stage, argv)
    with dist.process_group(dist.plan_processes(cfg.run.gpu, 1)):
        return run_config(cfg)


def main(task: str, stage: str, argv: Sequence[str] | None = None) -> int:
    """The scripts' entry point: one process, one per --GPU id / --NPROC (spawned here), or one of torchrun's."""
    try:
        cfg = parse(task, stage, argv)
        plan = dist.plan_processes(cfg.run.gpu, cfg.run.nproc)
        if plan.spawn:
            return dist.spawn(run_config, (cfg,), plan, KNOWN_ERRORS)
        with dist.process_group(plan):
            run_config(cfg)
    except KNOWN_ERRORS as e:
        message, code = dist.message_and_code(e)
        where = f"[rank {os.environ.get('RANK')}] " if dist.under_torchrun() else ""
        print(f"{where}{message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
