"""What every run shares: version and seed resolution, output paths, the logger, the device, progress bars."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NoReturn

import torch

from mmnas.config import Config
from mmnas.engine import dist
from mmnas.engine.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_step_checkpoints,
                                     remove_stale_temp_files, save_checkpoint)
from mmnas.engine.guard import (NonFiniteError, NonFiniteStep, RunStopped, StopSignals, agree, grad_norm,
                                is_finite, sample_ids, signal_name)
from mmnas.engine.common import progress_bar, resolve_seed, seed_everything, set_lr
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
        self.stop = StopSignals()  # entered around the whole run by the scripts (mmnas.cli.run_config)
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
    def ckpt_path(self, epoch: int, step: int | None = None) -> Path:
        return checkpoint_path(self.cfg.run.log_dir, self.cfg.run.version, epoch, step)

    # -- checkpoints, stops and numerical guards ----------------------------------------------------------------
    def save_state(self, state: dict[str, Any], epoch: int, step: int | None = None) -> Path:
        """Rank 0 writes `state` atomically: after `epoch` whole epochs, or (step given) inside the next one; older
        step checkpoints of the run are removed once this one is complete."""
        path = self.ckpt_path(epoch, step)
        if dist.is_main():
            save_checkpoint(path, state)
            prune_step_checkpoints(self.cfg.run.log_dir, self.cfg.run.version, path)
        return path

    def step_checkpoint_due(self, step: int) -> bool:
        return self.cfg.run.ckpt_every > 0 and step % self.cfg.run.ckpt_every == 0

    def check_step(self, stop: StopSignals, loss: torch.Tensor, norm: torch.Tensor | None) -> bool:
        """Before a step is applied, on every process at once: raise NonFiniteStep if any process's loss or
        gradient norm is NaN/inf; return whether a stop was requested anywhere (one collective for both)."""
        bad = not is_finite(loss.detach()) or (norm is not None and not is_finite(norm))
        bad, stopping = agree([bad, stop.requested])
        if bad:
            raise NonFiniteStep
        return stopping

    def apply_step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params, loss: torch.Tensor,
                   lr: float, stop: StopSignals, clip: float = 0.0) -> bool:
        """After the backward pass: unscale, clip to `clip` (> 0) and check the gradients of `params`, then step
        `optimizer` at `lr`. Returns whether a stop was requested; raises NonFiniteStep before stepping."""
        scaler.unscale_(optimizer)
        norm = grad_norm(params, clip)
        # fp16's loss scaler skips steps with inf gradients itself (and lowers its scale): not a stop there.
        stopping = self.check_step(stop, loss, None if scaler.is_enabled() else norm)
        set_lr(optimizer, lr)
        scaler.step(optimizer)
        scaler.update()
        return stopping

    def fail_non_finite(self, what: str, epoch: int, step: int, batch: dict[str, Any], saved: Path) -> NoReturn:
        raise NonFiniteError(
            f"the {what} became NaN or infinite at epoch {epoch + 1}, step {step} (samples {sample_ids(batch)} of "
            f"this process's batch); the step was not applied and the run stopped. The last good state is in "
            f"{saved}. Lower the learning rate (optim.lr_base) or check those samples, then continue with --RESUME "
            f"--CKPT_PATH {saved}.") from None

    def stop_run(self, stop: StopSignals, epoch: int, step: int, saved: Path) -> NoReturn:
        name = signal_name(stop.signum) if stop.signum is not None else "a signal to another process"
        self.log.write(f"{name}: stopped after step {step} (epoch {epoch + 1}); checkpoint {saved}")
        raise RunStopped(f"stopped by {name} after step {step} (epoch {epoch + 1}); the checkpoint {saved} holds "
                          f"the state: continue with --RESUME --VERSION {self.cfg.run.version}.", stop.signum or 15)

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
        remove_stale_temp_files(self.cfg.run.log_dir, self.cfg.run.version)
        path = self.cfg.run.ckpt_path or latest_checkpoint(self.cfg.run.log_dir, self.cfg.run.version)
        if not path:
            raise UserError(f"--RESUME needs a checkpoint: none found for --VERSION {self.cfg.run.version!r} in "
                            f"{Path(self.cfg.run.log_dir) / 'ckpts'}; pass --CKPT_PATH or check --VERSION.")
        ckpt = load_checkpoint(path, self.cfg.task, self.stage)
        self.log.write(f"resuming from {path} (epoch {ckpt['epoch']}, step {ckpt['step']})")
        return ckpt

    def begin(self, ckpt: dict[str, Any] | None) -> None:
        """The opening of a search or training run: the log, the seed, the task's data (word vectors only for a fresh
        start), the data check, and a resumed checkpoint's agreement with the data."""
        self.log.start()
        seed_everything(self.cfg.run.seed)
        self.task.prepare(need_vectors=ckpt is None)
        self.check_data()
        if ckpt is not None:
            self.task.check_meta(ckpt["meta"], self.cfg.run.ckpt_path or "of this run")

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
