"""The alternating one-shot search of spec §4: weight steps on the first 80 % of the training split, architecture
steps on the last 20 %, the derived genotype appended to arch/<VERSION>.json after every epoch."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from mmnas.engine import dist
from mmnas.engine.guard import NonFiniteStep, StopSignals, agree
from mmnas.engine.common import (EpochSampler, autocast, build_optimizer, diversify_rng, format_metrics,
                                 gather_rng_state, make_loader, resume_rng)
from mmnas.engine.run import Run
from mmnas.engine.schedule import learning_rate
from mmnas.errors import UserError
from mmnas.models.build import build_supernet, resolve_genotype
from mmnas.nas import supernet as sn
from mmnas.nas.arch_step import arch_step_due
from mmnas.nas.genotype import Genotype, append_genotype


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """Weights need no gradient in an arch step (only α is updated there): skip computing them."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def split_indices(n: int, portion: float) -> tuple[list[int], list[int]]:
    """First `portion` of the dataset (in dataset order) trains weights, the rest trains α (SPLIT_PORTION)."""
    cut = int(n * portion)
    return list(range(cut)), list(range(cut, n))


class Searcher(Run):
    stage = "search"

    def arch_path(self) -> Path:
        return Path(self.cfg.run.arch_dir) / f"{self.cfg.run.version}.json"

    def existing_outputs(self) -> list[Path]:
        return super().existing_outputs() + ([self.arch_path()] if self.arch_path().exists() else [])

    def run(self) -> dict[str, Any]:
        if self.cfg.run.run != "train":
            raise UserError("a search runs with --RUN train; evaluate a searched architecture by training it with "
                            "train_<task>.py --ARCH_PATH arch/<VERSION>.json --ARCH_EPOCH N.")
        return self.search()

    def search(self) -> dict[str, Any]:
        cfg, sc = self.cfg, self.cfg.search
        self.check_fresh_start()
        ckpt = self.resume_checkpoint() if cfg.run.resume else None
        if ckpt is None and self.arch_path().exists():
            self.arch_path().unlink()  # run.overwrite was given (check_fresh_start); start the file anew
        self.begin(ckpt)
        init = None if sc.init_genotype == "mcan_like" else resolve_genotype(sc.init_genotype, 0)
        dataset = self.task.dataset(cfg.data.train_split)
        weight_idx, alpha_idx = split_indices(len(dataset), sc.split_portion)
        need = self.batch_size * self.world
        if len(weight_idx) < need or len(alpha_idx) < need:
            raise UserError(f"the search split {cfg.data.train_split!r} has {len(dataset)} samples: too few for "
                            f"batches of {need} in both the weight part ({len(weight_idx)}) and the "
                            f"α part ({len(alpha_idx)}); lower --BS.")
        kwargs = dict(nodes={"enc": sc.nodes_enc, "dec": sc.nodes_dec}, **self.task.model_kwargs(),
                      **self.model_cfg())
        if init is not None:
            kwargs["init_genotype"] = init
        net = build_supernet(cfg.task, **kwargs).to(self.device)
        weights, alphas = net.weight_parameters(), net.arch_parameters()
        optimizer = build_optimizer(weights, cfg.optim)
        alpha_opt = torch.optim.Adam(alphas, lr=sc.alpha_lr, betas=tuple(sc.alpha_betas),
                                     weight_decay=sc.alpha_weight_decay)
        # Paths are drawn from their own generator, so the draw sequence is part of the resumable state.
        # The same seed on every process: in a multi-process search all of them draw the same path at each step.
        path_gen = torch.Generator().manual_seed(cfg.run.seed + 1)
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=cfg.run.amp == "fp16")
                        for name in ("weight", "arch")}
        start_epoch, step, unchanged, done, a_drawn, partial = 0, 0, 0, 0, 0, [0.0, 0.0, 0, 0]
        previous = net.genotype()
        diversify_rng(cfg.run.seed)
        if ckpt is not None:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            alpha_opt.load_state_dict(ckpt["alpha_optimizer"])
            for name, state in ckpt.get("scalers", {}).items():
                self.scalers[name].load_state_dict(state)
            start_epoch, step, unchanged = ckpt["epoch"], ckpt["step"], ckpt.get("unchanged", 0)
            done, a_drawn = ckpt.get("batches_done", 0), ckpt.get("alpha_batches", 0)
            partial = ckpt.get("partial", partial)
            previous = Genotype.from_dict(ckpt.get("previous_genotype", ckpt["genotype"]))
            self.task.load_state_dict(ckpt.get("task_state", {}))
            note = resume_rng(ckpt, cfg.run.seed, {"paths": path_gen})
            if note:
                self.log.write(note)
        w_sampler = EpochSampler(weight_idx, True, cfg.run.seed, salt=0)
        a_sampler = EpochSampler(alpha_idx, True, cfg.run.seed, salt=1)
        w_loader = make_loader(dataset, w_sampler, self.batch_size, cfg.data.num_workers, drop_last=True)
        a_loader = make_loader(dataset, a_sampler, self.batch_size, cfg.data.num_workers, drop_last=True)
        eval_loader = make_loader(dataset, EpochSampler(alpha_idx, False, 0, equal_shards=False),
                                  self.eval_batch_size(), cfg.data.num_workers)
        self.log.write(f"search on {cfg.data.train_split!r}: {len(weight_idx)} weight / {len(alpha_idx)} α samples, "
                       f"{len(w_loader)} steps/epoch, mode {sc.mode}, α from epoch {sc.alpha_start} every "
                       f"{sc.alpha_every} steps; {sum(p.numel() for p in weights):,} weights; device {self.device}")
        self.log_layout()
        steps_per_epoch, alpha_per_pass = len(w_loader), len(a_loader)
        record: dict[str, Any] = {}
        lr = 0.0

        def state(epoch: int, batches_done: int = 0, sums: list | None = None, drawn: int = 0) -> dict[str, Any]:
            """A checkpoint after `epoch` whole epochs and `batches_done` steps of the next (a collective)."""
            return {"task": cfg.task, "stage": "search", "epoch": epoch, "step": step, "unchanged": unchanged,
                    "batches_done": batches_done, "alpha_batches": drawn, "partial": list(sums or [0.0, 0.0, 0, 0]),
                    "previous_genotype": previous.to_dict(), "task_state": self.task.state_dict(),
                    "model": self.model_state(net), "optimizer": optimizer.state_dict(),
                    "alpha_optimizer": alpha_opt.state_dict(), "genotype": net.genotype().to_dict(),
                    "config": cfg.to_dict(), "meta": self.task.meta(),
                    **({"scalers": {k: v.state_dict() for k, v in self.scalers.items()}}
                       if cfg.run.amp == "fp16" else {}),
                    **gather_rng_state({"paths": path_gen})}

        if done:
            self.log.write(f"continuing epoch {start_epoch + 1} after its first {done} steps")
        stop = self.stop
        for epoch in range(start_epoch, cfg.optim.max_epoch):
            w_sampler.set_epoch(epoch, done * self.batch_size)
            a_sampler.set_epoch(epoch, (a_drawn % alpha_per_pass) * self.batch_size)
            alpha_iter = iter(a_loader)
            if not done:  # a run resumed inside the epoch has the epoch's task state (ITM negatives) back
                with net.sampling("derived"):
                    self.task.on_epoch_start(net, epoch, self.device)
            net.train()
            (loss_sum, arch_loss_sum, n, n_arch), t0 = partial, time.time()
            bar = self.progress(w_loader, desc=f"search {epoch + 1}/{cfg.optim.max_epoch}", initial=done,
                                total=steps_per_epoch)
            for i, batch in enumerate(bar, start=done):
                lr = learning_rate(step + 1, epoch, steps_per_epoch, cfg.optim.lr_base, cfg.optim.warmup,
                                   cfg.optim.lr_decay_rate, cfg.optim.lr_decay_epochs)
                sums = [loss_sum, arch_loss_sum, n, n_arch]
                try:
                    loss, stopping = self.weight_step(net, optimizer, weights, dist.to_device(batch, self.device),
                                                      lr, path_gen, stop)
                except NonFiniteStep:
                    saved = self.save_state(state(epoch, i, sums, a_drawn), epoch, step)
                    self.fail_non_finite("weight-step loss or gradient", epoch, step + 1, batch, saved)
                step += 1
                loss_sum += loss
                n += batch["text_ix"].size(0)
                if arch_step_due(epoch, i, sc.alpha_start, sc.alpha_every):
                    try:
                        a_batch = next(alpha_iter)
                    except StopIteration:
                        a_sampler.set_epoch(epoch, 0)
                        alpha_iter = iter(a_loader)
                        a_batch = next(alpha_iter)
                    a_drawn += 1
                    try:
                        arch_loss_sum += self.arch_step(net, alpha_opt, weights,
                                                        dist.to_device(a_batch, self.device), path_gen)
                    except NonFiniteStep:
                        saved = self.save_state(state(epoch, i + 1, [loss_sum, arch_loss_sum, n, n_arch],
                                                      a_drawn), epoch, step)
                        self.fail_non_finite("architecture-step loss or α gradient", epoch, step, a_batch,
                                              saved)
                    n_arch += a_batch["text_ix"].size(0)
                bar.set_postfix(loss=f"{loss_sum / max(n, 1):.4f}", refresh=False)
                if i + 1 < steps_per_epoch and (stopping or self.step_checkpoint_due(step)):
                    saved = self.save_state(state(epoch, i + 1, [loss_sum, arch_loss_sum, n, n_arch], a_drawn),
                                            epoch, step)
                    if stopping:
                        self.stop_run(stop, epoch, step, saved)
            done, a_drawn, partial = 0, 0, [0.0, 0.0, 0, 0]
            dist.check_identical(alphas, "α")
            loss_sum, n, arch_loss_sum, n_arch = dist.sum_arrays(
                np.array([loss_sum, n, arch_loss_sum, n_arch], dtype=np.float64)).tolist()
            n_arch = int(n_arch)
            geno = net.genotype()
            changed = sum(a != b for cell in ("enc", "dec")
                          for a, b in zip(getattr(geno, cell), getattr(previous, cell)))
            unchanged = unchanged + 1 if changed == 0 else 0
            previous = geno
            record = {"stage": "search", "epoch": epoch + 1, "step": step, "lr": lr,
                      "loss": loss_sum / max(n, 1), "arch_loss": arch_loss_sum / n_arch if n_arch else None,
                      "arch_steps_samples": n_arch, "genotype_changes": changed,
                      "epoch_seconds": round(time.time() - t0, 2)}
            end_state = state(epoch + 1)  # every process: RNG states are gathered
            with net.sampling("derived"):
                ev, _ = self.task.evaluate(net, eval_loader, self.device, cfg.run.progress,
                                           desc="derived net on α part")
            record.update({f"derived_{k}": v for k, v in ev.items() if isinstance(v, (int, float))})
            record["genotype"] = geno.to_dict()
            record["probs"] = net.export_probs()
            self.log.write(f"epoch {epoch + 1}: {format_metrics(record)}")
            self.log.write(f"  enc: {[node[0] for node in geno.enc]}")
            self.log.write(f"  dec: {[node[0] for node in geno.dec]}")
            self.log.metrics(record)
            if dist.is_main():
                append_genotype(self.arch_path(), epoch + 1, geno)
            saved = self.save_state(end_state, epoch + 1)
            if sc.stop_after_unchanged and epoch >= sc.alpha_start and unchanged >= sc.stop_after_unchanged:
                self.log.write(f"the genotype has not changed for {unchanged} epochs: stopping "
                               f"(search.stop_after_unchanged={sc.stop_after_unchanged}).")
                break
            if agree([stop.requested])[0] and epoch + 1 < cfg.optim.max_epoch:
                self.stop_run(stop, epoch + 1, step, saved)
        self.log.write(f"architectures: {self.arch_path()} (train one with --ARCH_PATH {self.arch_path()} "
                       f"--ARCH_EPOCH {record.get('epoch')})")
        return record

    def weight_step(self, net, optimizer, weights, batch, lr: float, gen: torch.Generator,
                    stop: StopSignals) -> tuple[float, bool]:
        """One weight step on a sampled path; (summed loss, whether a stop was requested anywhere)."""
        mode = "darts" if self.cfg.search.mode == "darts" else "weight"
        scaler = self.scalers["weight"]
        optimizer.zero_grad(set_to_none=True)  # before the forward, as in Trainer.train_step (peak memory)
        net.zero_grad(set_to_none=True)
        with net.sampling(mode, gen):
            with autocast(self.device, self.cfg.run.amp):
                loss = self.task.forward_loss(net, batch)["loss"]
            scaler.scale(loss * self.loss_scale if self.loss_scale != 1 else loss).backward()
        dist.average_gradients(weights)
        if self.cfg.search.inactive_grads == "zero":
            sn.fill_missing_grads(weights)
        stopping = self.apply_step(optimizer, scaler, weights, loss, lr, stop, self.cfg.optim.grad_clip)
        return float(loss.detach()), stopping

    def arch_step(self, net, alpha_opt, weights, batch, gen: torch.Generator) -> float:
        mode = self.cfg.search.mode
        scaler = self.scalers["arch"]
        net.zero_grad(set_to_none=True)
        with frozen(weights), net.sampling(mode, gen):
            with autocast(self.device, self.cfg.run.amp):
                loss = self.task.forward_loss(net, batch)["loss"]
            scaler.scale(loss * self.loss_scale if self.loss_scale != 1 else loss).backward()
            # Gates (full, two) or α (darts) hold this step's gradients; their average keeps α equal everywhere.
            dist.average_gradients(net.gate_parameters() + net.arch_parameters())
            if mode in ("full", "two"):
                sn.set_alpha_grads(net)
            # α's learning rate is constant; α gradients are not clipped (the release's arch step).
            self.apply_step(alpha_opt, scaler, net.arch_parameters(), loss, self.cfg.search.alpha_lr, self.stop)
            sn.rescale_after_step(net)
        net.zero_grad(set_to_none=True)
        return float(loss.detach())
