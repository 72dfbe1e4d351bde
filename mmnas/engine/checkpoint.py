"""Self-describing checkpoints (DESIGN "Runs and checkpoints"): written atomically, read with weights_only=True."""
from __future__ import annotations

import os
import pickle
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mmnas.errors import CheckpointError
from mmnas.fileio import atomic_write

FORMAT = "mmnas-checkpoint"
FORMAT_VERSION = 1


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Add the format header and write atomically (temp file, fsync, rename)."""
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "git_commit": git_commit(), **state}
    atomic_write(path, lambda f: torch.save(full, f), binary=True)


def load_checkpoint(path: str | os.PathLike, task: str | None = None, stage: str | None = None) -> dict[str, Any]:
    """Read a checkpoint of ours; refuse release pickles, other formats, other tasks or stages with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist. Pass --CKPT_PATH with a file written by a run "
                              f"(logs/ckpts/<VERSION>_epoch<N>.pkl).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({first}). It is either damaged or holds "
                              f"more than tensors and plain containers; checkpoints are never unpickled with code "
                              f"execution. A release .pkl is converted with tools/convert_release_ckpt.py.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an mmnas checkpoint (no '{FORMAT}' header). A release "
                              f".pkl must first be converted with tools/convert_release_ckpt.py.")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['format_version']}, newer than this "
                              f"code's {FORMAT_VERSION}; update mmnas.")
    if task is not None and ckpt.get("task") != task:
        raise CheckpointError(f"checkpoint {path} is a {ckpt.get('task')!r} checkpoint, not {task!r}; use it with "
                              f"the {ckpt.get('task')} scripts or pick a {task} checkpoint.")
    if stage is not None and ckpt.get("stage") != stage:
        raise CheckpointError(f"checkpoint {path} was written by a {ckpt.get('stage')!r} run, not {stage!r} "
                              f"(search checkpoints resume searches; train checkpoints resume and evaluate "
                              f"trained networks).")
    return ckpt


def checkpoint_path(log_dir: str, version: str, epoch: int, step: int | None = None) -> Path:
    """logs/ckpts/<VERSION>_epoch<N>.pkl after N whole epochs; <VERSION>_epoch<N>_step<S>.pkl inside epoch N + 1."""
    suffix = f"_step{step}" if step is not None else ""
    return Path(log_dir) / "ckpts" / f"{version}_epoch{epoch}{suffix}.pkl"


def _checkpoint_order(name: str, prefix: str) -> tuple[int, int] | None:
    """(epochs done, step inside the next epoch or 0) of a checkpoint file name of this run, else None."""
    if not (name.startswith(prefix) and name.endswith(".pkl")):
        return None
    epoch, _, step = name[len(prefix):-4].partition("_step")
    if not epoch.isdigit() or (step and not step.isdigit()):
        return None
    return int(epoch), int(step or 0)


def run_checkpoints(log_dir: str, version: str) -> list[Path]:
    """Every complete checkpoint of a run, oldest first (temp files of an interrupted write are not included)."""
    folder = Path(log_dir) / "ckpts"
    if not folder.is_dir():
        return []
    prefix = f"{version}_epoch"
    found = [(order, p) for p in folder.iterdir() if (order := _checkpoint_order(p.name, prefix)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(log_dir: str, version: str) -> Path | None:
    """The newest complete checkpoint of a run: the highest epoch, and within it a later step checkpoint."""
    found = run_checkpoints(log_dir, version)
    return found[-1] if found else None


def prune_step_checkpoints(log_dir: str, version: str, newest: Path) -> None:
    """Remove the run's step checkpoints older than `newest` (just written): they only serve to resume inside an
    epoch, and `newest` exists complete before any of them is removed. Epoch checkpoints are never removed."""
    prefix = f"{version}_epoch"
    limit = _checkpoint_order(newest.name, prefix)
    for p in run_checkpoints(log_dir, version):
        if "_step" in p.name and p != newest and limit is not None and _checkpoint_order(p.name, prefix) < limit:
            p.unlink(missing_ok=True)


def remove_stale_temp_files(log_dir: str, version: str) -> None:
    """Temp files a killed run left half-written (never read; removed when the run starts again)."""
    folder = Path(log_dir) / "ckpts"
    if folder.is_dir():
        for p in folder.glob(f".{version}_epoch*.tmp"):
            p.unlink(missing_ok=True)
