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
        cfg.run.seed = resolve_seed(cfg)
        if not cfg.run.version:
            cfg.run.version = f"{cfg.task}_{cfg.stage}_{cfg.run.seed}"
        self.device = dist.default_device(cfg.run.gpu)
        self.log = RunLogger(cfg)

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

    def progress(self, iterable, **kw):
        return progress_bar(iterable, self.cfg.run.progress, **kw)

    def eval_batch_size(self) -> int:
        return self.cfg.optim.eval_batch_size or self.cfg.optim.batch_size

    def model_cfg(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg.model)

    @staticmethod
    def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in getattr(model, "module", model).state_dict().items()}
