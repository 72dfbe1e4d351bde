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
        if not self.active:
            return
        record = {"time": datetime.datetime.now().isoformat(timespec="seconds"), **record}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
