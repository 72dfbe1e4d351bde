"""Runs killed with SIGKILL at random instants (one of them inside a checkpoint write) and resumed each time end in
exactly the state of an uninterrupted run, and no file they leave is ever truncated or unreadable; SIGTERM finishes
the step, writes a checkpoint and exits; a NaN loss stops the run before the bad step with the last good state."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmnas.engine.checkpoint import latest_checkpoint, load_checkpoint
from tests.conftest import run_args
from tests.helpers import SMALL_GENOTYPE

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2"]


def script_args(stage: str, root: Path, out: Path, arch: Path) -> list[str]:
    extra = SEARCH if stage == "search" else ["--ARCH_PATH", str(arch)]
    return [f"{stage}_vqa.py", *run_args(root, out, "--VERSION", "r", "--SEED", "11", "optim.max_epoch=3",
                                         "run.ckpt_every=2", *extra)]


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def runs_started(log: Path) -> int:
    """How many attempts reached their training loop (each logs its steps per epoch just before)."""
    return log.read_text().count("steps/epoch") if log.exists() else 0


def assert_every_file_readable(out: Path) -> None:
    for ckpt in (out / "logs" / "ckpts").glob("*.pkl"):
        load_checkpoint(ckpt)
    for arch in (out / "arch").glob("*.json"):
        json.loads(arch.read_text())
    for metrics in (out / "logs" / "log").glob("metrics_*.jsonl"):
        for line in metrics.read_text().splitlines():
            json.loads(line)


def kill_in_checkpoint_write(proc: subprocess.Popen, ckpts: Path, limit: float = 60.0) -> bool:
    """SIGKILL the run the moment a checkpoint temp file exists (a write in progress)."""
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        try:
            names = os.listdir(ckpts)
        except FileNotFoundError:
            continue
        if any(n.endswith(".tmp") for n in names):
            proc.kill()
            proc.wait()
            return True
    return False


def run_with_kills(stage: str, root: Path, out: Path, arch: Path, kills: int, seed: int, span: float) -> dict:
    """Start, SIGKILL at a random instant of the training loop (uniform in [0, span] s after it started; the second
    time: inside a checkpoint write), resume; `kills` times, then let it finish."""
    rng = random.Random(seed)
    argv = script_args(stage, root, out, arch)
    log = out / "logs" / "log" / "log_r.txt"
    ckpts = out / "logs" / "ckpts"
    done, in_write = 0, False
    while True:
        resume = ["--RESUME"] if latest_checkpoint(str(out / "logs"), "r") else ["run.overwrite=true"]
        before = runs_started(log)
        proc = start([*argv, *resume])
        if done < kills:
            if done == 1:
                in_write = kill_in_checkpoint_write(proc, ckpts)
            else:
                while runs_started(log) == before and proc.poll() is None:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, span))
                proc.kill()
                proc.wait()
            if proc.returncode == -signal.SIGKILL:
                done += 1
                assert_every_file_readable(out)
                continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        break
    assert in_write, "no kill landed inside a checkpoint write"
    assert done == kills
    return {"resumes": log.read_text().count("resuming from"), "log": log.read_text()}


@pytest.fixture(scope="module")
def small_arch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "small.json"
    path.write_text(json.dumps({"epoch0": SMALL_GENOTYPE}))
    return path


@pytest.mark.parametrize("stage", ["train", "search"])
def test_sigkill_at_random_instants_then_resume_equals_an_uninterrupted_run(stage, vqa_root, small_arch, tmp_path):
    ref = tmp_path / "ref"
    proc = start(script_args(stage, vqa_root, ref, small_arch))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    records = [json.loads(x) for x in (ref / "logs" / "log" / "metrics_r.jsonl").read_text().splitlines()]
    loop_seconds = sum(r["epoch_seconds"] for r in records)

    out = tmp_path / "killed"
    # Kills spread so that the five of them fall inside the run's training time.
    info = run_with_kills(stage, vqa_root, out, small_arch, kills=5, seed=1 if stage == "train" else 2,
                          span=0.6 * loop_seconds / 5)
    # A kill before the first checkpoint starts afresh; the others resume, some of them inside an epoch.
    assert info["resumes"] >= 2 and "continuing epoch" in info["log"]

    a = load_checkpoint(ref / "logs" / "ckpts" / "r_epoch3.pkl")
    b = load_checkpoint(out / "logs" / "ckpts" / "r_epoch3.pkl")
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 3
    for k in a["model"]:   # weights and, for the search, α: bit for bit
        assert torch.equal(a["model"][k], b["model"][k]), k
    for key in ("optimizer", "alpha_optimizer"):
        if key in a:
            for sa, sb in zip(a[key]["state"].values(), b[key]["state"].values()):
                assert all(torch.equal(sa[n], sb[n]) for n in sa), key
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    last = {}
    for run in (ref, out):
        records = [json.loads(x) for x in (run / "logs" / "log" / "metrics_r.jsonl").read_text().splitlines()]
        last[run] = [r for r in records if r.get("epoch") == 3][-1]
    assert last[ref]["lr"] == last[out]["lr"] and last[ref]["loss"] == last[out]["loss"]
    if stage == "search":
        assert json.loads((ref / "arch" / "r.json").read_text()) == json.loads((out / "arch" / "r.json").read_text())
    # Step checkpoints only serve to resume inside an epoch: none is left once the run is complete.
    assert sorted(p.name for p in (out / "logs" / "ckpts").glob("*.pkl")) == ["r_epoch1.pkl", "r_epoch2.pkl",
                                                                             "r_epoch3.pkl"]
    assert not list((out / "logs" / "ckpts").glob("*.tmp"))


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_exits(vqa_root, small_arch, tmp_path):
    argv = [a for a in script_args("train", vqa_root, tmp_path, small_arch) if a != "run.ckpt_every=2"]
    argv = [a if a != "optim.max_epoch=3" else "optim.max_epoch=50" for a in argv]
    log = tmp_path / "logs" / "log" / "log_r.txt"
    proc = start(argv)
    while runs_started(log) == 0 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("stopped: stopped by SIGTERM after step ")
    saved = latest_checkpoint(str(tmp_path / "logs"), "r")
    ckpt = load_checkpoint(saved)
    assert ckpt["step"] > 0 and str(saved) in err and "--RESUME" in err
    # It continues from there.
    proc = start([*[a if a != "optim.max_epoch=50" else f"optim.max_epoch={ckpt['epoch'] + 1}" for a in argv],
                  "--RESUME"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"resuming from {saved}" in log.read_text()


def test_a_nan_loss_stops_before_the_step_with_the_last_good_state(vqa_root, small_arch, tmp_path, capsys):
    from mmnas.cli import main
    # A learning rate this large drives the loss to inf/NaN within a few steps.
    args = run_args(vqa_root, tmp_path, "--VERSION", "nan", "--SEED", "1", "--ARCH_PATH", str(small_arch),
                    "optim.lr_base=1e12", "optim.grad_clip=0", "optim.max_epoch=5")
    assert main("vqa", "train", args) == 2
    err = capsys.readouterr().err
    assert "became NaN or infinite at epoch" in err and "the step was not applied" in err and "samples " in err
    saved = latest_checkpoint(str(tmp_path / "logs"), "nan")
    assert str(saved) in err
    ckpt = load_checkpoint(saved)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class _CreatesAFile:
    """Unpickling this calls open(target, 'w'): the file appears if a loader runs what a pickle names."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_is_refused_without_running_it(vqa_root, tmp_path, capsys):
    from mmnas.cli import main
    target = tmp_path / "created_by_the_pickle.txt"
    evil = tmp_path / "logs" / "ckpts" / "evil_epoch1.pkl"
    evil.parent.mkdir(parents=True)
    # torch.save's own format with the header of ours: only the payload is hostile.
    torch.save({"format": "mmnas-checkpoint", "format_version": 1, "task": "vqa", "stage": "train", "epoch": 1,
                "step": 1, "model": _CreatesAFile(str(target))}, evil)
    for extra in (["--RUN", "val", "--CKPT_PATH", str(evil)], ["--RESUME", "--VERSION", "evil"]):
        assert main("vqa", "train", run_args(vqa_root, tmp_path, *extra)) == 2
        err = capsys.readouterr().err
        assert "cannot be read safely" in err and str(evil) in err
        assert not target.exists()
    proc = subprocess.run([sys.executable, "tools/convert_release_ckpt.py", "--task", "vqa", "--arch",
                           "arch/mmnas_vqa.json", "--data-root", str(vqa_root), str(evil), str(tmp_path / "out.pkl")],
                          cwd=REPO, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2 and "refused" in proc.stderr
    assert not target.exists() and not (tmp_path / "out.pkl").exists()
