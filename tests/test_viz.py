"""Pictures of runs (mmnas/viz): headless PNGs from hand-written metrics files, the redraw command, and the
entropy / changed-node statistics against hand-computed values."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mmnas.viz import draw_run, try_draw_run
from mmnas.viz import records as R
from mmnas.viz.__main__ import main as viz_main
from mmnas.viz.plots import ALPHA_PNG, SEARCH_PNG, TRAIN_PNG
from mmnas.viz.tensorboard import ScalarWriter
from tests.helpers import REPO

ENC = ("self_att_64", "feed_forward")
DEC = ("self_att_64", "rel_self_att_64", "guided_att_64", "feed_forward")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def probs(enc: list[list[float]], dec: list[list[float]]) -> dict:
    """The structure of `export_probs()`: {cell: [{op: p}, …]}."""
    return {"enc": [dict(zip(ENC, p)) for p in enc], "dec": [dict(zip(DEC, p)) for p in dec]}


GENO_A = {"enc": [["self_att_64"], ["feed_forward"]],
          "dec": [["rel_self_att_64"], ["guided_att_64"], ["feed_forward"]]}
GENO_B = {"enc": [["self_att_64"], ["feed_forward"]],
          "dec": [["feed_forward"], ["guided_att_64"], ["feed_forward"]]}

SEARCH_RECORDS = [
    # An earlier run of the same VERSION (run.overwrite=true): must not be drawn.
    {"stage": "search", "epoch": 1, "loss": 9.0, "genotype_changes": 3, "genotype": GENO_A,
     "probs": probs([[0.5, 0.5], [0.5, 0.5]], [[0.25] * 4] * 3)},
    {"stage": "search", "epoch": 1, "step": 10, "lr": 0.002, "loss": 1.2, "arch_loss": None, "genotype_changes": 0,
     "derived_accuracy": 60.0, "derived_questions": 80, "genotype": GENO_A,
     "probs": probs([[0.7, 0.3], [0.2, 0.8]], [[0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])},
    {"stage": "search", "epoch": 2, "step": 20, "lr": 0.002, "loss": 0.9, "arch_loss": 0.95, "genotype_changes": 1,
     "derived_accuracy": 70.0, "derived_questions": 80, "genotype": GENO_B,
     "probs": probs([[0.9, 0.1], [0.1, 0.9]], [[0.1, 0.3, 0.1, 0.5], [0.0, 0.0, 1.0, 0.0], [0.0, 0.1, 0.1, 0.8]])},
    {"stage": "val", "split": "val", "accuracy": 50.0},  # an eval record: no epoch, no probs
]
TRAIN_RECORDS = [
    {"stage": "train", "epoch": 1, "step": 26, "lr": 0.002, "loss": 0.8, "epoch_seconds": 3.0, "val_accuracy": 61.5,
     "val_questions": 100, "val_perAnswerType": {"yes/no": 70.0, "other": 50.0}},
    {"stage": "train", "epoch": 2, "step": 52, "lr": 0.0004, "loss": 0.5, "epoch_seconds": 3.1, "val_accuracy": 72.25,
     "val_questions": 100, "val_perAnswerType": {"yes/no": 80.0, "other": 60.0}},
    {"stage": "test", "split": "test", "result_file": "x.json", "questions": 100},
]


def write_metrics(path: Path, records: list[dict], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000, path


@pytest.fixture
def search_metrics(tmp_path) -> Path:
    # The last line is what a run killed mid-write leaves: half a JSON object.
    return write_metrics(tmp_path / "logs" / "log" / "metrics_s1.jsonl", SEARCH_RECORDS, tail='{"stage": "sear')


@pytest.fixture
def train_metrics(tmp_path) -> Path:
    (tmp_path / "logs" / "log").mkdir(parents=True, exist_ok=True)
    (tmp_path / "logs" / "log" / "config_t1.yaml").write_text("task: vqa\nstage: train\n")
    return write_metrics(tmp_path / "logs" / "log" / "metrics_t1.jsonl", TRAIN_RECORDS)


# -- statistics ----------------------------------------------------------------------------------------------------
def test_entropy_matches_hand_values():
    assert R.entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    assert R.entropy([1.0, 0.0, 0.0]) == 0.0
    # −(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.249672 + 0.321888 + 0.230259
    assert R.entropy([0.7, 0.2, 0.1]) == pytest.approx(0.801819, abs=1e-6)
    assert R.entropy([0.25] * 4, normalize=True) == pytest.approx(1.0)
    assert R.entropy([2.0, 2.0]) == pytest.approx(math.log(2))  # renormalised (logged values are rounded)
    assert R.mean_entropy([[0.5, 0.5], [1.0, 0.0]]) == pytest.approx(math.log(2) / 2)
    with pytest.raises(ValueError):
        R.entropy([0.0, 0.0])


def test_cell_entropies_of_records():
    recs = R.last_run(SEARCH_RECORDS, "search")
    h = lambda *p: R.entropy(p)
    enc = R.cell_entropies(recs, "enc")
    assert enc[0] == pytest.approx((h(0.7, 0.3) + h(0.2, 0.8)) / 2)
    assert enc[1] == pytest.approx(h(0.9, 0.1))  # both nodes have the same entropy
    dec = R.cell_entropies(recs, "dec")
    assert dec[1] == pytest.approx((h(0.1, 0.3, 0.1, 0.5) + 0.0 + h(0.1, 0.1, 0.8)) / 3)
    assert R.cell_entropies([{"epoch": 1}], "dec") == [None]


def test_changed_nodes_and_argmax():
    assert R.changed_nodes(GENO_A, GENO_B) == 1
    assert R.changed_nodes(GENO_A, GENO_A) == 0
    shorter = {"enc": GENO_A["enc"], "dec": GENO_A["dec"][:2]}
    assert R.changed_nodes(GENO_A, shorter) == 1  # a missing node counts as changed
    p = probs([[0.7, 0.3], [0.5, 0.5]], [[0.1, 0.6, 0.2, 0.1]] * 3)
    # A tie goes to the first op, as torch.argmax does.
    assert R.argmax_ops(p) == {"enc": ["self_att_64", "self_att_64"], "dec": ["rel_self_att_64"] * 3}


def test_genotype_changes_logged_or_recomputed():
    recs = R.last_run(SEARCH_RECORDS, "search")
    assert R.genotype_changes(recs) == [0, 1]
    stripped = [{k: v for k, v in r.items() if k != "genotype_changes"} for r in recs]
    # Without the logged field: None for the first epoch (no earlier genotype), then recomputed.
    assert R.genotype_changes(stripped) == [None, 1]


def test_last_run_keeps_the_latest_run_and_latest_record_per_epoch():
    recs = [{"stage": "search", "epoch": e, "loss": float(e)} for e in (1, 2, 3)]
    recs += [{"stage": "search", "epoch": 1, "loss": 10.0}, {"stage": "search", "epoch": 2, "loss": 20.0},
             {"stage": "search", "epoch": 2, "loss": 21.0},  # resumed from epoch 1: epoch 2 logged again
             {"stage": "train", "epoch": 1, "loss": 5.0}, {"stage": "search", "epoch": "3"}]
    assert [(r["epoch"], r["loss"]) for r in R.last_run(recs, "search")] == [(1, 10.0), (2, 21.0)]
    assert len(R.last_run(recs, "train")) == 1


def test_malformed_lines_are_skipped(search_metrics):
    recs = R.read_metrics(search_metrics)
    assert len(recs) == len(SEARCH_RECORDS)  # the truncated last line is dropped
    with open(search_metrics, "a") as f:
        f.write("\n[1, 2]\nnot json\n\n")
    assert len(R.read_metrics(search_metrics)) == len(SEARCH_RECORDS)
    assert R.read_metrics(search_metrics.parent / "missing.jsonl") == []


def test_metric_keys_leave_out_counts():
    recs = [{"val_accuracy": 1.0, "val_questions": 3, "val_accuracy_relation": 2.0, "val_rsum": 5.0,
             "val_i2t_medr": 1.0, "val_perAnswerType": {"a": 1.0}}]
    assert R.metric_keys(recs, "val_", "accuracy") == ["accuracy", "accuracy_relation"]
    assert R.metric_keys(recs, "val_") == ["accuracy", "accuracy_relation", "rsum"]


# -- pictures ------------------------------------------------------------------------------------------------------
def test_search_pictures(search_metrics, tmp_path):
    written = draw_run(search_metrics)
    out = tmp_path / "logs" / "plots" / "s1"  # default: <log_dir>/plots/<VERSION>
    assert written == [out / ALPHA_PNG, out / SEARCH_PNG]
    for p in written:
        assert_png(p)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file behind


def test_train_pictures(train_metrics, tmp_path):
    written = draw_run(train_metrics, tmp_path / "pics")
    assert written == [tmp_path / "pics" / TRAIN_PNG]
    assert_png(written[0])


def test_search_without_probs_still_draws_curves(tmp_path):
    recs = [{k: v for k, v in r.items() if k != "probs"} for r in SEARCH_RECORDS]
    written = draw_run(write_metrics(tmp_path / "metrics_np.jsonl", recs), tmp_path / "np")
    assert written == [tmp_path / "np" / SEARCH_PNG]


def test_nothing_to_draw(tmp_path, capsys):
    path = write_metrics(tmp_path / "metrics_v.jsonl", [TRAIN_RECORDS[-1]], tail="garbage")
    assert draw_run(path, tmp_path / "out") == []
    assert viz_main([str(path)]) == 2
    assert "holds no per-epoch search or training record" in capsys.readouterr().err


def test_try_draw_run_never_raises(tmp_path):
    messages = []
    # A folder where the metrics file should be: reading fails, the run must go on.
    assert try_draw_run(tmp_path, tmp_path / "out", warn=messages.append) == []
    assert len(messages) == 1 and "skipped" in messages[0]


def test_redraw_command_reproduces_the_pictures(search_metrics, train_metrics, tmp_path, capsys):
    first = draw_run(search_metrics, tmp_path / "a")
    assert viz_main([str(tmp_path / "logs"), "s1", "--out", str(tmp_path / "b")]) == 0
    again = [tmp_path / "b" / p.name for p in first]
    assert capsys.readouterr().out.split() == [str(p) for p in again]
    for a, b in zip(first, again):
        assert a.read_bytes() == b.read_bytes()
    # The other form: a metrics file, default output folder.
    assert viz_main([str(train_metrics)]) == 0
    assert_png(tmp_path / "logs" / "plots" / "t1" / TRAIN_PNG)
    # The module entry point exists as a user types it (drawing itself is checked in-process above: a child
    # process would spend its time importing torch for the task's metric name).
    proc = subprocess.run([sys.executable, "-m", "mmnas.viz", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and "LOG_DIR VERSION" in proc.stdout, proc.stderr


def test_redraw_command_errors(tmp_path, capsys):
    assert viz_main([str(tmp_path), "nope"]) == 2
    err = capsys.readouterr().err
    assert "metrics_nope.jsonl" in err and "does not exist. A search or training writes" in err
    assert viz_main([str(tmp_path)]) == 2
    assert "is a folder: give the run's VERSION too" in capsys.readouterr().err


def test_tensorboard_writer_is_optional(tmp_path):
    w = ScalarWriter(tmp_path / "tb")
    available = w.available
    for r in SEARCH_RECORDS + TRAIN_RECORDS:
        w.add_record(r)  # a no-op without tensorboard; event files with it
    w.close()
    w.add_record(TRAIN_RECORDS[0])  # after close: still harmless
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert not available and not (tmp_path / "tb").exists()
    else:
        assert available and any((tmp_path / "tb").iterdir())
