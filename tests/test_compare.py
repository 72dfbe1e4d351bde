"""The comparison command (mmnas/compare.py): arch specs, the random genotype, reading and aggregating runs'
metrics against hand-computed numbers, and one tiny real comparison through the training command line."""
from __future__ import annotations

import json
import math

import pytest

from mmnas.compare import (ArchSpec, RunResult, main, markdown, mean_std, parse_arch, random_genotype, read_result,
                           summarize)
from mmnas.errors import UserError
from mmnas.nas.genotype import load_genotype
from mmnas.ops import SEARCH_SPACE
from tests.conftest import run_args
from tests.helpers import SMALL_GENOTYPE


def test_parse_arch():
    assert parse_arch("searched=arch/s1.json:epoch3") == ArchSpec("searched", "arch/s1.json", "3")
    assert parse_arch("arch/mcan.json") == ArchSpec("mcan", "arch/mcan.json", "0")
    assert parse_arch("s=arch/s1.json:last") == ArchSpec("s", "arch/s1.json", "last")
    assert parse_arch("random").is_random and parse_arch("rnd=random") == ArchSpec("rnd")
    assert parse_arch("x=dir:with:colons.json") == ArchSpec("x", "dir:with:colons.json", "0")
    with pytest.raises(UserError, match="becomes part of --VERSION"):
        parse_arch("a b=arch/x.json")


def test_random_genotype_is_seeded_and_in_the_search_space():
    g = random_genotype({"enc": 4, "dec": 7}, seed=3)
    assert len(g.enc) == 4 and len(g.dec) == 7
    assert all(n[0] in SEARCH_SPACE["enc"] for n in g.enc) and all(n[0] in SEARCH_SPACE["dec"] for n in g.dec)
    assert g == random_genotype({"enc": 4, "dec": 7}, seed=3)
    assert g != random_genotype({"enc": 4, "dec": 7}, seed=4)
    import random
    rng = random.Random(5)  # the documented draw: encoder nodes first, then decoder, one choice each
    expected_enc = [rng.choice(SEARCH_SPACE["enc"]) for _ in range(2)]
    expected_dec = [rng.choice(SEARCH_SPACE["dec"]) for _ in range(3)]
    g5 = random_genotype({"enc": 2, "dec": 3}, seed=5)
    assert [n[0] for n in g5.enc] == expected_enc and [n[0] for n in g5.dec] == expected_dec


def test_mean_std_hand_values():
    m, s, n = mean_std([1.0, 2.0, 4.0, None])
    assert (m, n) == (pytest.approx(7 / 3), 3)
    assert s == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert mean_std([5.0]) == (5.0, 0.0, 1)
    assert mean_std([None]) == (None, None, 0)


def test_read_result_and_summary_on_synthetic_metrics(tmp_path):
    def write(name, vals, tail=""):
        recs = [{"stage": "train", "epoch": e + 1, "loss": 1.0, "epoch_seconds": 2.5, "val_accuracy": v,
                 "val_questions": 10} for e, v in enumerate(vals)]
        path = tmp_path / f"metrics_{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs) + tail)
        return path
    a1 = read_result(RunResult("a", 1, "a1"), write("a1", [50.0, 70.0, 65.0]), "accuracy")
    assert (a1.final, a1.best, a1.best_epoch, a1.epochs, a1.train_seconds) == (65.0, 70.0, 2, 3, 7.5)
    a2 = read_result(RunResult("a", 2, "a2"), write("a2", [60.0, 60.0, 75.0], tail='{"stage": "tr'), "accuracy")
    assert (a2.final, a2.best, a2.best_epoch) == (75.0, 75.0, 3)
    b1 = read_result(RunResult("b", 1, "b1"), write("b1", [40.0]), "accuracy")
    for r, wall, params in ((a1, 10.0, 100), (a2, 20.0, 100), (b1, 5.0, 7)):
        r.wall_seconds, r.params = wall, params
    summary = summarize([a1, a2, b1])
    assert [s["arch"] for s in summary] == ["a", "b"]
    sa = summary[0]
    assert sa["final_mean"] == pytest.approx(70.0) and sa["final_std"] == pytest.approx(math.sqrt(50.0))
    assert sa["best_mean"] == pytest.approx(72.5) and sa["best_std"] == pytest.approx(math.sqrt(12.5))
    assert sa["wall_seconds_mean"] == pytest.approx(15.0) and sa["params"] == 100
    assert summary[1]["final_std"] == 0.0 and summary[1]["runs"] == 1
    md = markdown([a1, a2, b1], summary, "accuracy", "# t")
    assert "| a | 1 | ok | 65.00 | 70.00 (2) | 3 | 100 | 7.5 | 10.0 |" in md
    assert "| a | 2/2 | 70.00 ± 7.07 | 72.50 ± 3.54 | 100 |" in md


def test_errors_before_any_training(tmp_path, capsys):
    assert main(["--task", "vqa", "--arch", f"x={tmp_path / 'none.json'}", "--dry-run"]) == 2
    assert "none.json does not exist" in capsys.readouterr().err
    assert main(["--task", "vqa", "--arch", "random", "--arch", "random", "--dry-run"]) == 2
    assert "--arch names must differ" in capsys.readouterr().err
    assert main(["--task", "vqa", "--arch", "random", "--dry-run", "optim.max_epok=2"]) == 2
    err = capsys.readouterr().err
    assert "the arguments passed to the trainings do not parse" in err and "optim.max_epoch" in err
    assert main(["--task", "vqa", "--arch", "random", "--dry-run", "--SEED", "3"]) == 2
    assert "--SEED cannot be passed to the trainings of a comparison" in capsys.readouterr().err
    assert main(["--task", "nope", "--arch", "random"]) == 2
    assert "is not a task of this project; use vqa, vgd or itm" in capsys.readouterr().err


def test_tiny_comparison_through_the_cli(vqa_root, tmp_path, capsys):
    arch = tmp_path / "small.json"
    arch.write_text(json.dumps({"epoch0": SMALL_GENOTYPE, "epoch2": SMALL_GENOTYPE}))
    out = tmp_path / "cmp"
    extra = run_args(vqa_root, tmp_path)  # the test tree and small model, passed through to every training
    rc = main(["--task", "vqa", "--arch", f"small={arch}:last", "--arch", "random", "--seeds", "4", "--epochs", "1",
               "--name", "tiny", "--out", str(out), "--random-seed", "1", *extra])
    assert rc == 0, capsys.readouterr()
    res = json.loads((out / "compare.json").read_text())
    assert [(r["arch"], r["seed"], r["status"], r["epochs"]) for r in res["runs"]] == \
        [("small", 4, "ok", 1), ("random", 4, "ok", 1)]
    assert res["archs"][0]["epoch"] == "2"  # ':last' resolved to the file's largest key
    for r in res["runs"]:
        assert 0.0 <= r["final"] <= 100.0 and r["best"] == r["final"] and r["params"] > 0
    # The random genotype has the node counts of the other architecture and is what was trained.
    rand = load_genotype(out / "random.json", 0)
    assert (len(rand.enc), len(rand.dec)) == (2, 3)
    assert rand == random_genotype({"enc": 2, "dec": 3}, 1)
    log = (tmp_path / "logs" / "log" / "log_tiny_random_s4.txt").read_text()
    assert str([n[0] for n in rand.enc]) in log
    assert "| small | 1/1 |" in (out / "compare.md").read_text()
