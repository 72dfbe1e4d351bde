"""What every run shares: version and seed resolution, output paths, the logger, the device, progress bars."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mmnas.config import Config
from mmnas.engine import dist
from mmnas.engine.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint
from mmnas.engine.common import progress_bar, resolve_seed
from mmnas.engine.runlog import RunLogger
from mmnas.errors import UserError
from mmnas.tasks.base import Task


class Run:
    stage = ""

    def __init__(self, cfg: Config, task: Task) -> None:
        self.cfg = cfg
        self.task = task
        # One seed for every process (a random one is drawn once, on rank 0): same data order, same initial network.
        cfg.run.seed = dist.broadcast_object(resolve_seed(cfg))
        if not cfg.run.version:
            cfg.run.version = f"{cfg.task}_{cfg.stage}_{cfg.run.seed}"
        self.device = dist.default_device(cfg.run.gpu)
        if cfg.run.amp == "fp16" and self.device.type != "cuda":
            raise UserError("--AMP fp16 needs CUDA (float16 autocast on a CPU is slow and not supported by every op); "
                            "use --AMP bf16 on the CPU, or run on a GPU.")
        self.log = RunLogger(cfg)
        self.world = dist.world_size()
        self.batch_size, self.loss_scale = self._batch_semantics()

    def _batch_semantics(self) -> tuple[int, float]:
        """(per-process batch, loss factor). The release's: --BS per process, each process's loss a sum over its
        samples, gradients averaged over the k processes — k processes = one process on the union batch with the
        loss divided by k. optim.global_batch: --BS split over the processes and the loss scaled by k, so k
        processes = one process on the --BS batch exactly."""
        bs = self.cfg.optim.batch_size
        if not self.cfg.optim.global_batch or self.world == 1:
            return bs, 1.0
        if bs % self.world:
            raise UserError(f"optim.global_batch=true splits --BS {bs} over {self.world} processes: pick a multiple "
                            f"of {self.world}.")
        return bs // self.world, float(self.world)

    # -- paths ------------------------------------------------------------------------------------------------
    def ckpt_path(self, epoch: int) -> Path:
        return checkpoint_path(self.cfg.run.log_dir, self.cfg.run.version, epoch)

    def result_path(self) -> Path:
        return Path(self.cfg.run.log_dir) / "ckpts" / "result_test" / f"result_{self.cfg.run.version}.json"

    def existing_outputs(self) -> list[Path]:
        """Files a fresh run of this VERSION would overwrite."""
        found = [p for p in (self.log.log_path, self.log.metrics_path) if p.exists()]
        ckpt = latest_checkpoint(self.cfg.run.log_dir, self.cfg.run.version)
        return found + ([ckpt] if ckpt else [])

    def check_fresh_start(self) -> None:
        """A new run never silently overwrites another run's checkpoints, logs or arch file."""
        if self.cfg.run.resume:
            return
        existing = self.existing_outputs()
        if existing and not self.cfg.run.overwrite:
            raise UserError(f"--VERSION {self.cfg.run.version!r} already has outputs ({', '.join(map(str, existing))}). "
                            f"Resume it with --RESUME, pick another --VERSION, or pass run.overwrite=true to start "
                            f"again over them.")

    def resume_checkpoint(self) -> dict[str, Any]:
        """--RESUME: --CKPT_PATH if given, else the run's latest complete checkpoint."""
        path = self.cfg.run.ckpt_path or latest_checkpoint(self.cfg.run.log_dir, self.cfg.run.version)
        if not path:
            raise UserError(f"--RESUME needs a checkpoint: none found for --VERSION {self.cfg.run.version!r} in "
                            f"{Path(self.cfg.run.log_dir) / 'ckpts'}; pass --CKPT_PATH or check --VERSION.")
        ckpt = load_checkpoint(path, self.cfg.task, self.stage)
        self.log.write(f"resuming from {path} (epoch {ckpt['epoch']}, step {ckpt['step']})")
        return ckpt

    def check_data(self) -> None:
        """The cheap part of `python3 -m mmnas.check_data` on the splits this run reads, right after the task read
        its data: a broken tree stops the run now, not hours in (data.check=false skips it)."""
        if not self.cfg.data.check:
            return
        from mmnas.check_data import quick_check
        report = quick_check(self.cfg, data=getattr(self.task, "data", None))
        for note in report.notes:
            self.log.write(f"data check: {note}")
        report.raise_if_problems()

    def progress(self, iterable, **kw):
        return progress_bar(iterable, self.cfg.run.progress, **kw)

    def eval_batch_size(self) -> int:
        return self.cfg.optim.eval_batch_size or self.batch_size

    def log_layout(self) -> None:
        if self.world > 1:
            self.log.write(f"{self.world} processes ({'NCCL' if self.device.type == 'cuda' else 'gloo'}), "
                           f"{self.batch_size} samples per process and step"
                           f"{' (optim.global_batch)' if self.loss_scale != 1 else ''}")

    def model_cfg(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg.model)

    @staticmethod
    def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in getattr(model, "module", model).state_dict().items()}
