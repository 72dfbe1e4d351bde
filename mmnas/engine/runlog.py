"""Run logs (DESIGN "Runs"): a readable log, a JSON-lines metrics file and the resolved config, written by rank 0."""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

from mmnas.config import Config
from mmnas.engine import dist
from mmnas.engine.checkpoint import git_commit
from mmnas.fileio import atomic_write_text


class RunLogger:
    """logs/log/log_<VERSION>.txt (appended, line by line), metrics_<VERSION>.jsonl, config_<VERSION>.yaml."""

    def __init__(self, cfg: Config, echo: bool = True) -> None:
        self.cfg = cfg
        self.echo = echo
        self.dir = Path(cfg.run.log_dir) / "log"
        self.log_path = self.dir / f"log_{cfg.run.version}.txt"
        self.metrics_path = self.dir / f"metrics_{cfg.run.version}.jsonl"
        self.config_path = self.dir / f"config_{cfg.run.version}.yaml"
        self.active = dist.is_main()
        self._tensorboard = None

    def start(self) -> None:
        if not self.active:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, self.cfg.dump())
        self.write(f"==== {datetime.datetime.now():%Y-%m-%d %H:%M:%S} {self.cfg.task} {self.cfg.stage} "
                   f"--RUN {self.cfg.run.run} version={self.cfg.run.version} seed={self.cfg.run.seed} "
                   f"commit={git_commit()}")
        self.write(f"command: {' '.join(sys.argv)}")
        self.write(f"config: {self.config_path}")

    def write(self, line: str) -> None:
        if not self.active:
            return
        if self.echo:
            print(line, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def metrics(self, record: dict[str, Any]) -> None:
        """Append one record (one write of one line: a killed run never leaves half a record); then, for an epoch
        record, redraw the run's pictures (run.plots) and add TensorBoard scalars (run.tensorboard)."""
        if not self.active:
            return
        record = {"time": datetime.datetime.now().isoformat(timespec="seconds"), **record}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if "epoch" not in record:
            return
        if self.cfg.run.plots:
            from mmnas.viz import plots_dir, try_draw_run
            try_draw_run(self.metrics_path, plots_dir(self.cfg.run.log_dir, self.cfg.run.version), warn=self.write)
        if self.cfg.run.tensorboard:
            if self._tensorboard is None:
                from mmnas.viz.tensorboard import ScalarWriter
                self._tensorboard = ScalarWriter(Path(self.cfg.run.log_dir) / "tb" / self.cfg.run.version)
                if not self._tensorboard.available:
                    self.write("run.tensorboard=true but the tensorboard package is not installed: no scalars "
                               "written (pip install tensorboard).")
            self._tensorboard.add_record(record)
            if self._tensorboard.available:
                self._tensorboard.writer.flush()
