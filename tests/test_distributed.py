"""Multi-process runs (gloo, 2 CPU processes through --NPROC): the same numbers as one process on the union batch
with the loss halved, for training and search (α included); exact evaluation on an odd-sized split; one error
message and a quick stop when a process fails."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmnas.cli import main, parse
from mmnas.engine.checkpoint import load_checkpoint
from mmnas.engine.searcher import Searcher
from mmnas.engine.trainer import Trainer
from mmnas.tasks import get_task
from tests.conftest import run_args

REPO = Path(__file__).resolve().parents[1]
SEARCH = ["search.nodes_enc=2", "search.nodes_dec=3", "search.alpha_start=0", "search.alpha_every=2"]
# Adam with the release's eps = 1e-9 turns float-rounding noise (~1e-8) in gradients that are mathematically zero
# (a bias in front of a softmax) into full-size steps, so two summation orders part after a few dozen steps; and it
# is blind to the scale of the gradient, which these tests must see (loss / 2). With eps = 1 Adam's step is about
# lr × momentum: a wrong gradient scale shows in the weights and rounding noise stays rounding noise.
STABLE_ADAM = "optim.eps=1.0"


def single_process(task: str, stage: str, argv: list[str], loss_scale: float) -> dict:
    """One process of the project's own trainer/searcher, with its loss multiplied by `loss_scale`."""
    cfg = parse(task, stage, argv)
    runner = (Searcher if stage == "search" else Trainer)(cfg, get_task(task)(cfg))
    runner.loss_scale = loss_scale
    return runner.run()


def assert_same_state(a: dict, b: dict, what: str) -> None:
    # After 52 Adam steps, float rounding (sums over batches of 8 vs 16 in another order) reaches ~2e-5 in a few of
    # the weights; a wrong loss scale or averaging gives 1.5e-3 (checked when the tests were written).
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]) and a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=5e-5, msg=lambda m: f"{what} {k}: {m}")
        elif torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), f"{what} {k}"


def test_two_processes_train_like_one_process_on_the_union_batch(vqa_root, tmp_path):
    # 408 training questions: an even count, so no process drops a tail sample.
    common = ["--SEED", "5", "optim.max_epoch=2", "run.eval_every_epoch=false", "--ARCH_PATH", "arch/mmnas_vqa.json",
              "optim.grad_clip=0", STABLE_ADAM]
    assert main("vqa", "train", run_args(vqa_root, tmp_path / "two", "--VERSION", "d", "--NPROC", "2", "--BS", "8",
                                         *common)) == 0
    single_process("vqa", "train", run_args(vqa_root, tmp_path / "one", "--VERSION", "d", "--BS", "16", *common), 0.5)
    two = load_checkpoint(tmp_path / "two" / "logs" / "ckpts" / "d_epoch2.pkl")
    one = load_checkpoint(tmp_path / "one" / "logs" / "ckpts" / "d_epoch2.pkl")
    assert two["step"] == one["step"] == 2 * 26
    assert_same_state(two["model"], one["model"], "weights")
    assert two["optimizer"]["state"][0]["step"] == one["optimizer"]["state"][0]["step"] == 52
    assert len(two["rng_ranks"]) == 2 and "rng_ranks" not in one
    log = (tmp_path / "two" / "logs" / "log" / "log_d.txt").read_text()
    assert "2 processes (gloo), 8 samples per process and step" in log
    assert not (tmp_path / "two" / "logs" / "log" / "log_d.txt.rank1").exists()


def test_two_processes_search_like_one_process_on_the_union_batch(vqa_root, tmp_path):
    common = ["--SEED", "7", "optim.max_epoch=2", STABLE_ADAM, *SEARCH]
    assert main("vqa", "search", run_args(vqa_root, tmp_path / "two", "--VERSION", "s", "--NPROC", "2", "--BS", "8",
                                          *common)) == 0
    single_process("vqa", "search", run_args(vqa_root, tmp_path / "one", "--VERSION", "s", "--BS", "16", *common), 0.5)
    two = load_checkpoint(tmp_path / "two" / "logs" / "ckpts" / "s_epoch2.pkl")
    one = load_checkpoint(tmp_path / "one" / "logs" / "ckpts" / "s_epoch2.pkl")
    assert two["step"] == one["step"]
    alphas = [k for k in one["model"] if "alpha" in k]
    assert alphas, "the supernet state holds α"
    assert_same_state(two["model"], one["model"], "supernet weights and α")
    assert_same_state(two["alpha_optimizer"]["state"][0], one["alpha_optimizer"]["state"][0], "α Adam state")
    # Both processes drew the same paths: the shared generator ends in the same state on each.
    ranks = two["rng_ranks"]
    assert torch.equal(ranks[0]["paths"], ranks[1]["paths"]) and torch.equal(ranks[0]["paths"], one["rng"]["paths"])
    arch_two = json.loads((tmp_path / "two" / "arch" / "s.json").read_text())
    arch_one = json.loads((tmp_path / "one" / "arch" / "s.json").read_text())
    assert arch_two == arch_one and list(arch_two) == ["epoch1", "epoch2"]


def test_global_batch_splits_bs_over_the_processes(vqa_root, tmp_path):
    common = ["--SEED", "5", "optim.max_epoch=1", "run.eval_every_epoch=false", "--ARCH_PATH", "arch/mmnas_vqa.json",
              "--BS", "16", STABLE_ADAM]
    assert main("vqa", "train", run_args(vqa_root, tmp_path / "two", "--VERSION", "g", "--NPROC", "2",
                                         "optim.global_batch=true", *common)) == 0
    assert main("vqa", "train", run_args(vqa_root, tmp_path / "one", "--VERSION", "g", *common)) == 0
    two = load_checkpoint(tmp_path / "two" / "logs" / "ckpts" / "g_epoch1.pkl")
    one = load_checkpoint(tmp_path / "one" / "logs" / "ckpts" / "g_epoch1.pkl")
    assert two["step"] == one["step"] == 26
    assert_same_state(two["model"], one["model"], "weights")


def test_evaluation_on_an_odd_split_is_exact(other_vqa_root, tmp_path):
    # 115 val and 115 test questions, scored in batches of 7 by 2 processes: 58 + 57, no padding.
    args = run_args(other_vqa_root, tmp_path, "--SEED", "3", "--ARCH_PATH", "arch/mmnas_vqa.json")
    assert main("vqa", "train", [*args, "--VERSION", "t", "optim.max_epoch=1", "run.eval_every_epoch=false"]) == 0
    ckpt = str(tmp_path / "logs" / "ckpts" / "t_epoch1.pkl")
    for n in ("1", "2"):
        assert main("vqa", "train", [*args, "--RUN", "val", "--CKPT_PATH", ckpt, "--VERSION", f"v{n}", "--BS", "7",
                                     "--NPROC", n]) == 0
        assert main("vqa", "train", [*args, "--RUN", "test", "--CKPT_PATH", ckpt, "--VERSION", f"r{n}", "--BS", "7",
                                     "--NPROC", n]) == 0
    metrics = {n: json.loads((tmp_path / "logs" / "log" / f"metrics_v{n}.jsonl").read_text().splitlines()[-1])
               for n in ("1", "2")}
    for rec in metrics.values():
        rec.pop("time")
    assert metrics["1"] == metrics["2"] and metrics["1"]["questions"] == 115
    results = {n: (tmp_path / "logs" / "ckpts" / "result_test" / f"result_r{n}.json").read_bytes() for n in ("1", "2")}
    assert results["1"] == results["2"]
    ids = [r["question_id"] for r in json.loads(results["2"])]
    assert len(ids) == len(set(ids)) == 115 and ids == sorted(ids, key=ids.index)


def test_a_user_error_in_the_processes_is_reported_once(tmp_path, capfd):
    rc = main("vqa", "train", ["--DATASET", "vqa", "--NPROC", "2", "--NO_PROGRESS", f"data.root={tmp_path / 'none'}",
                               f"run.log_dir={tmp_path / 'logs'}"])
    err = capfd.readouterr().err
    assert rc == 2
    assert err.count("error:") == 1 and str(tmp_path / "none") in err


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_a_killed_process_stops_the_run_with_a_clear_error(vqa_root, tmp_path):
    args = run_args(vqa_root, tmp_path, "--VERSION", "k", "--NPROC", "2", "--BS", "8", "optim.max_epoch=1000",
                    "--ARCH_PATH", "arch/mmnas_vqa.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "train_vqa.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "logs" / "log" / "log_k.txt"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and "epoch 1:" in log.read_text()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert log.exists() and "epoch 1:" in log.read_text(), "training did not start"
        workers = sorted(p for p in _children(proc.pid) if _is_worker(p))
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.time()
        _, err = proc.communicate(timeout=60)
        stopped_after = time.time() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "process 1 of 2" in err and "SIGKILL" in err and "--RESUME" in err
    assert err.count("error:") == 1
    assert stopped_after < 15
    assert not any(_is_worker(p) for p in workers if Path(f"/proc/{p}").exists())
    load_checkpoint(tmp_path / "logs" / "ckpts" / "k_epoch1.pkl")  # the checkpoint written before is intact


def test_process_layout_errors(monkeypatch, capsys):
    from mmnas.engine import dist
    from mmnas.errors import UserError
    with pytest.raises(UserError, match="is not a list of GPU ids"):
        dist.parse_gpu_ids("a,b")
    assert dist.parse_gpu_ids(" 0, 1,2 ") == [0, 1, 2] and dist.parse_gpu_ids("cpu") == []
    assert dist.plan_processes("cpu", 2) == dist.ProcessPlan(2, "gloo", False, [])
    if not torch.cuda.is_available():
        plan = dist.plan_processes("0,1", 2)   # no CUDA: the CPU, with a warning
        assert plan == dist.ProcessPlan(2, "gloo", False, [0]) and "CUDA is not available" in capsys.readouterr().err
    # A machine with two GPUs, as torch reports it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dist.plan_processes("0,1", 1) == dist.ProcessPlan(2, "nccl", True, [0, 1])
    assert dist.plan_processes("1", 1) == dist.ProcessPlan(1, "gloo", True, [1])
    with pytest.raises(UserError, match="disagrees with --GPU"):
        dist.plan_processes("0,1", 3)
    with pytest.raises(UserError, match="names GPU 5, but this machine has 2 visible GPUs"):
        dist.plan_processes("0,5", 1)
    with pytest.raises(UserError, match="starts CPU processes, but this run would use CUDA"):
        dist.plan_processes("", 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    plan = dist.plan_processes("", 1)   # under torchrun the environment decides; nothing is spawned
    assert plan.from_env and plan.nprocs == 4 and not plan.spawn and plan.backend == "nccl"


def test_amp_bf16_on_cpu_and_fp16_refused(vqa_root, tmp_path, capsys):
    args = run_args(vqa_root, tmp_path, "--SEED", "5", "optim.max_epoch=1", "--ARCH_PATH", "arch/mmnas_vqa.json")
    assert main("vqa", "train", [*args, "--VERSION", "h", "--AMP", "fp16", "--GPU", "cpu"]) == 2
    assert "--AMP fp16 needs CUDA" in capsys.readouterr().err
    assert main("vqa", "train", [*args, "--VERSION", "b", "--AMP", "bf16"]) == 0
    rec = json.loads((tmp_path / "logs" / "log" / "metrics_b.jsonl").read_text().splitlines()[-1])
    assert rec["loss"] > 0 and rec["val_accuracy"] > 0   # finite, trained and evaluated under bf16 autocast


def test_global_batch_needs_a_divisible_batch(vqa_root, tmp_path, capfd):
    args = run_args(vqa_root, tmp_path, "--VERSION", "g", "--NPROC", "2", "--BS", "15", "optim.global_batch=true")
    assert main("vqa", "train", args) == 2
    err = capfd.readouterr().err
    assert err.count("error:") == 1 and "splits --BS 15 over 2 processes" in err


def test_sigterm_to_a_multi_process_run_stops_every_process_at_one_step(vqa_root, tmp_path):
    args = run_args(vqa_root, tmp_path, "--VERSION", "t", "--NPROC", "2", "--BS", "8", "optim.max_epoch=1000",
                    "--ARCH_PATH", "arch/mmnas_vqa.json", "run.eval_every_epoch=false")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "train_vqa.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "logs" / "log" / "log_t.txt"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "steps/epoch" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.count("stopped: stopped by SIGTERM") == 1 and "error" not in err.lower().replace("stderr", "")
    from mmnas.engine.checkpoint import latest_checkpoint
    ckpt = load_checkpoint(latest_checkpoint(str(tmp_path / "logs"), "t"))
    assert len(ckpt["rng_ranks"]) == 2 and ckpt["step"] > 0


def test_resume_with_another_process_count(vqa_root, tmp_path):
    args = run_args(vqa_root, tmp_path, "--VERSION", "c", "--SEED", "4", "--BS", "8", "--ARCH_PATH",
                    "arch/mmnas_vqa.json", "run.eval_every_epoch=false")
    assert main("vqa", "train", [*args, "--NPROC", "2", "optim.max_epoch=1"]) == 0
    assert main("vqa", "train", [*args, "--RESUME", "optim.max_epoch=2"]) == 0   # one process now
    log = (tmp_path / "logs" / "log" / "log_c.txt").read_text()
    assert "written by 2 process(es), this run has 1" in log
    ckpt = load_checkpoint(tmp_path / "logs" / "ckpts" / "c_epoch2.pkl")
    assert ckpt["step"] == 26 + 51 and "rng_ranks" not in ckpt   # 408 / (2 × 8) steps, then 408 / 8
