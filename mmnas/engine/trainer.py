"""Training of a fixed network and its evaluation (spec §5, §7): Adam with the release's warm-up and step decay,
gradient clipping, `sum` losses, per-epoch validation, `--RUN val` and `--RUN test`."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mmnas.engine import dist
from mmnas.engine.checkpoint import load_checkpoint
from mmnas.engine.guard import NonFiniteStep, StopSignals, agree
from mmnas.engine.common import (EpochSampler, autocast, build_optimizer, diversify_rng, format_metrics,
                                 gather_rng_state, make_loader, resume_rng)
from mmnas.engine.run import Run
from mmnas.engine.schedule import learning_rate
from mmnas.errors import UserError
from mmnas.models.build import build_network, resolve_genotype
from mmnas.nas.genotype import Genotype


class Trainer(Run):
    stage = "train"

    def run(self) -> dict[str, Any]:
        return {"train": self.train, "val": self.validate, "test": self.test}[self.cfg.run.run]()

    # -- training -----------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        self.check_fresh_start()
        ckpt = self.resume_checkpoint() if cfg.run.resume else None
        # The architecture is checked before any data is read: a bad arch file fails in a second.
        genotype = (Genotype.from_dict(ckpt["genotype"]) if ckpt is not None
                    else resolve_genotype(cfg.run.arch_path, cfg.run.arch_epoch))
        self.begin(ckpt)
        self.log.write(f"architecture: enc {[n[0] for n in genotype.enc]} dec {[n[0] for n in genotype.dec]}")
        train_set = self.task.dataset(cfg.data.train_split)
        net = build_network(cfg.task, genotype, **self.task.model_kwargs(), **self.model_cfg()).to(self.device)
        optimizer = build_optimizer(list(net.parameters()), cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.run.amp == "fp16")
        start_epoch, step, done, partial = 0, 0, 0, [0.0, 0]
        diversify_rng(cfg.run.seed)
        if ckpt is not None:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if "scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["scaler"])
            start_epoch, step = ckpt["epoch"], ckpt["step"]
            done, partial = ckpt.get("batches_done", 0), ckpt.get("partial", partial)
            self.task.load_state_dict(ckpt.get("task_state", {}))
            note = resume_rng(ckpt, cfg.run.seed)
            if note:
                self.log.write(note)
        # Every process starts from the same weights (one seed); DDP averages the gradients of each step.
        model = (nn.parallel.DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda"
                                                     else None) if self.world > 1 else net)
        sampler = EpochSampler(range(len(train_set)), shuffle=True, seed=cfg.run.seed)
        loader = make_loader(train_set, sampler, self.batch_size, cfg.data.num_workers)
        steps_per_epoch = len(loader)
        val_loader = None
        if cfg.run.eval_every_epoch and not self._trains_on_val() and self.task.can_evaluate(cfg.data.val_split):
            val_loader = self._eval_loader(cfg.data.val_split)
        n_params = sum(p.numel() for p in net.parameters())
        self.log.write(f"train split {cfg.data.train_split!r}: {len(train_set)} samples, {steps_per_epoch} "
                       f"steps/epoch; {n_params:,} parameters; device {self.device}")
        self.log_layout()
        if done:
            self.log.write(f"continuing epoch {start_epoch + 1} after its first {done} steps")
        metrics: dict[str, Any] = {}
        lr = 0.0
        stop = self.stop
        for epoch in range(start_epoch, cfg.optim.max_epoch):
            sampler.set_epoch(epoch, done * self.batch_size)
            if not done:  # a run resumed inside the epoch has the epoch's task state (ITM negatives) back
                self.task.on_epoch_start(net, epoch, self.device)
            model.train()
            (loss_sum, n_samples), t0 = partial, time.time()
            bar = self.progress(loader, desc=f"epoch {epoch + 1}/{cfg.optim.max_epoch}",
                                initial=done, total=steps_per_epoch)
            for i, batch in enumerate(bar, start=done + 1):
                lr = learning_rate(step + 1, epoch, steps_per_epoch, cfg.optim.lr_base, cfg.optim.warmup,
                                   cfg.optim.lr_decay_rate, cfg.optim.lr_decay_epochs)
                try:
                    loss, stopping = self.train_step(model, optimizer, dist.to_device(batch, self.device), lr,
                                                     stop)
                except NonFiniteStep:
                    saved = self.save_state(self._state(net, optimizer, genotype, epoch, step, i - 1,
                                                        [loss_sum, n_samples]), epoch, step)
                    self.fail_non_finite("training loss or gradient", epoch, step + 1, batch, saved)
                step += 1
                loss_sum += loss
                n_samples += batch["text_ix"].size(0)
                bar.set_postfix(loss=f"{loss / batch['text_ix'].size(0):.4f}", lr=f"{lr:.2e}", refresh=False)
                if i < steps_per_epoch and (stopping or self.step_checkpoint_due(step)):
                    saved = self.save_state(self._state(net, optimizer, genotype, epoch, step, i,
                                                        [loss_sum, n_samples]), epoch, step)
                    if stopping:
                        self.stop_run(stop, epoch, step, saved)
            done, partial = 0, [0.0, 0]
            loss_sum, n_samples = dist.sum_arrays(np.array([loss_sum, n_samples], dtype=np.float64))
            record = {"stage": "train", "epoch": epoch + 1, "step": step, "lr": lr,
                      "loss": float(loss_sum / max(n_samples, 1)), "epoch_seconds": round(time.time() - t0, 2)}
            state = self._state(net, optimizer, genotype, epoch + 1, step)  # every process: RNG is gathered
            if val_loader is not None:
                ev, _ = self.task.evaluate(net, val_loader, self.device, cfg.run.progress, desc="val")
                record.update({f"val_{k}": v for k, v in ev.items() if isinstance(v, (int, float))})
                if "perAnswerType" in ev:
                    record["val_perAnswerType"] = ev["perAnswerType"]
            self.log.write(f"epoch {epoch + 1}: {format_metrics(record)}")
            self.log.metrics(record)
            saved = self.save_state(state, epoch + 1)
            metrics = record
            if agree([stop.requested])[0] and epoch + 1 < cfg.optim.max_epoch:
                self.stop_run(stop, epoch + 1, step, saved)
        return metrics

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, lr: float,
                   stop: StopSignals) -> tuple[float, bool]:
        """One step; (the batch's summed loss, whether a stop was requested). Nothing is applied and
        NonFiniteStep is raised when the loss or the gradient is not finite on some process."""
        # Before the forward: the last step's gradients would otherwise be live at the peak (the saved activations
        # at the end of the forward), 0.24 GB at the VQA sizes.
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.cfg.run.amp):
            out = self.task.forward_loss(model, batch)
        loss = out["loss"] * self.loss_scale if self.loss_scale != 1 else out["loss"]
        self.scaler.scale(loss).backward()
        stopping = self.apply_step(optimizer, self.scaler, model.parameters(), out["loss"], lr, stop,
                                   self.cfg.optim.grad_clip)
        return float(out["loss"].detach()), stopping

    def _trains_on_val(self) -> bool:
        return "val" in self.cfg.data.train_split.split("+")

    def _state(self, model, optimizer, genotype: Genotype, epoch: int, step: int, batches_done: int = 0,
               partial: list | None = None) -> dict[str, Any]:
        """A checkpoint's contents after `epoch` whole epochs and `batches_done` steps of the next (a collective:
        every process calls it)."""
        return {"task": self.cfg.task, "stage": "train", "epoch": epoch, "step": step,
                "batches_done": batches_done, "partial": list(partial or [0.0, 0]),
                "task_state": self.task.state_dict(),
                "model": self.model_state(model), "optimizer": optimizer.state_dict(),
                "genotype": genotype.to_dict(), "config": self.cfg.to_dict(), "meta": self.task.meta(),
                **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}), **gather_rng_state()}

    # -- evaluation ---------------------------------------------------------------------------------------------
    def _load_for_eval(self):
        if not self.cfg.run.ckpt_path:
            raise UserError(f"--RUN {self.cfg.run.run} needs --CKPT_PATH (a checkpoint written by a training run, "
                            f"e.g. logs/ckpts/<VERSION>_epoch13.pkl).")
        ckpt = load_checkpoint(self.cfg.run.ckpt_path, self.cfg.task, "train")
        self.log.start()
        self.task.prepare(need_vectors=False)
        self.check_data()
        self.task.check_meta(ckpt["meta"], self.cfg.run.ckpt_path)
        # The checkpoint's own model settings and genotype rebuild exactly the network that was trained.
        model_cfg = dict(ckpt["config"]["model"])
        model = build_network(self.cfg.task, Genotype.from_dict(ckpt["genotype"]), **self.task.model_kwargs(),
                              **model_cfg).to(self.device)
        model.load_state_dict(ckpt["model"])
        return model, ckpt

    def _eval_loader(self, split: str):
        ds = self.task.dataset(split)
        return make_loader(ds, EpochSampler(range(len(ds)), False, 0, equal_shards=False), self.eval_batch_size(),
                           self.cfg.data.num_workers)

    def validate(self) -> dict[str, Any]:
        model, ckpt = self._load_for_eval()
        split = self.cfg.data.val_split
        if not self.task.can_evaluate(split):
            raise UserError(f"the split {split!r} has no ground truth to score; use --RUN test for result files.")
        loader = self._eval_loader(split)
        ev, _ = self.task.evaluate(model, loader, self.device, self.cfg.run.progress, desc=f"val {split}")
        self.log.write(f"{self.cfg.run.ckpt_path} on {split!r}: {format_metrics(ev)}")
        if "perAnswerType" in ev:
            self.log.write(f"per answer type: {ev['perAnswerType']}")
        self.log.metrics({"stage": "val", "split": split, "checkpoint": self.cfg.run.ckpt_path,
                          **{k: v for k, v in ev.items() if k != "perQuestionType"}})
        return ev

    def test(self) -> dict[str, Any]:
        model, ckpt = self._load_for_eval()
        split = self.cfg.data.test_split
        loader = self._eval_loader(split)
        _, evaluator = self.task.evaluate(model, loader, self.device, self.cfg.run.progress, desc=f"test {split}")
        summary = self.task.write_results(evaluator, str(self.result_path())) if dist.is_main() else {}
        dist.barrier()  # the result file exists on return, on every process
        self.log.write(f"wrote {summary.get('result_file')}: {format_metrics(summary)}")
        self.log.metrics({"stage": "test", "split": split, "checkpoint": self.cfg.run.ckpt_path, **summary})
        return summary
