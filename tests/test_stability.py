"""The stability report (mmnas/nas/stability.py, `python3 -m mmnas.stability`): agreement, Hamming distances and
the consensus of hand-made genotypes against hand-derived numbers; the errors a user can meet."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmnas.errors import UserError
from mmnas.nas import stability as st
from mmnas.nas.genotype import Genotype, load_genotype
from mmnas.stability import main

SA, FF, RSA, GA = "self_att_64", "feed_forward", "rel_self_att_64", "guided_att_64"


def geno(enc: list[str], dec: list[str]) -> Genotype:
    return Genotype(enc=tuple((o,) for o in enc), dec=tuple((o,) for o in dec))


G1 = geno([SA, FF], [RSA, GA, FF])
G2 = geno([SA, SA], [RSA, GA, SA])
G3 = geno([FF, FF], [GA, GA, FF])


def write_arch(path: Path, *genos: Genotype) -> Path:
    path.write_text(json.dumps({f"epoch{i + 1}": g.to_dict() for i, g in enumerate(genos)}))
    return path


def test_votes_agreement_and_consensus():
    votes = st.node_votes([G1, G2, G3])
    # enc 0: SA SA FF; enc 1: FF SA FF; dec 0: RSA RSA GA; dec 1: GA GA GA; dec 2: FF SA FF.
    assert [(v.winner, v.count) for v in votes["enc"]] == [((SA,), 2), ((FF,), 2)]
    assert [(v.winner, v.count) for v in votes["dec"]] == [((RSA,), 2), ((GA,), 3), ((FF,), 2)]
    assert votes["dec"][1].agreement == 1.0 and votes["enc"][0].agreement == pytest.approx(2 / 3)
    assert votes["enc"][0].votes == {SA: 2, FF: 1}
    assert st.consensus([G1, G2, G3]) == G1


def test_hamming_and_report_numbers():
    assert st.hamming(G1, G2) == 2  # enc 1, dec 2
    assert st.hamming(G1, G3) == 2  # enc 0, dec 0
    assert st.hamming(G2, G3) == 4  # enc 0, enc 1, dec 0, dec 2
    assert st.distance_matrix([G1, G2, G3]) == [[0, 2, 2], [2, 0, 4], [2, 4, 0]]
    runs = [st.ArchRun(f"r{i}.json", "epoch1", g) for i, g in enumerate([G1, G2, G3])]
    rep = st.stability_report(runs)
    assert rep["mean_agreement"]["enc"] == pytest.approx(2 / 3, abs=1e-4)
    assert rep["mean_agreement"]["dec"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3, abs=1e-4)
    assert rep["mean_agreement"]["all"] == pytest.approx(11 / 15, abs=1e-4)  # (4 · 2/3 + 1) / 5
    assert rep["unanimous_nodes"] == 1
    assert rep["mean_pairwise_distance"] == pytest.approx(8 / 3, abs=1e-4)
    assert rep["mean_pairwise_fraction"] == pytest.approx(8 / 15, abs=1e-4)
    assert rep["distance_to_consensus"] == [0, 2, 2]
    assert rep["consensus"] == G1.to_dict()
    with pytest.raises(ValueError):
        st.hamming(G1, geno([SA], [FF]))


def test_ties_go_to_the_earliest_run():
    a, b = geno([SA, FF], [RSA, GA, FF]), geno([FF, FF], [GA, GA, SA])
    assert st.consensus([a, b]) == a
    assert st.consensus([b, a]) == b
    assert st.majority([(FF,), (SA,), (SA,), (FF,)]) == ((FF,), 2)


def test_command_prints_table_and_writes_consensus(tmp_path, capsys):
    paths = [write_arch(tmp_path / f"s{i}.json", G3, g) for i, g in enumerate([G1, G2, G3])]
    out, report = tmp_path / "consensus.json", tmp_path / "report.json"
    assert main([*map(str, paths), "--out", str(out), "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "enc 0" in text and "2/3 = 0.67" in text and "mean pairwise distance: 2.67" in text
    assert load_genotype(out, 0) == G1  # the last epoch (epoch2) of each file was compared
    rep = json.loads(report.read_text())
    assert [r["key"] for r in rep["runs"]] == ["epoch2"] * 3
    # --epoch 1: every file holds G3 there, so the runs agree completely.
    assert main([*map(str, paths), "--epoch", "1", "--out", str(out)]) == 0
    assert "all 1.000" in capsys.readouterr().out
    assert load_genotype(out, 0) == G3


def test_mean_probs_from_metrics(tmp_path, capsys):
    def rec(p_enc, p_dec, epoch=3):
        return {"stage": "search", "epoch": epoch,
                "probs": {"enc": [{SA: p, FF: 1 - p} for p in p_enc],
                          "dec": [{SA: p, RSA: 0.0, GA: 0.0, FF: 1 - p} for p in p_dec]}}
    m1, m2 = tmp_path / "metrics_a.jsonl", tmp_path / "metrics_b.jsonl"
    m1.write_text(json.dumps(rec([0.8, 0.2], [0.5, 0.0, 1.0])) + "\n")
    m2.write_text(json.dumps(rec([0.4, 0.2], [0.1, 0.0, 1.0])) + "\n" + json.dumps({"stage": "val"}) + "\n")
    res = st.mean_probs([m1, m2])
    assert res["mean_probs"]["enc"][0] == {SA: pytest.approx(0.6), FF: pytest.approx(0.4)}
    assert res["mean_probs"]["dec"][0][SA] == pytest.approx(0.3)
    assert res["argmax"] == {"enc": [SA, FF], "dec": [FF, FF, SA]}
    assert res["entropy"][str(m2)]["epoch"] == 3
    a, b = write_arch(tmp_path / "a.json", G1), write_arch(tmp_path / "b.json", G2)
    assert main([str(a), str(b), "--metrics", str(m1), str(m2)]) == 0
    assert "mean α probabilities" in capsys.readouterr().out
    with pytest.raises(UserError, match="has no search record with α probabilities"):
        st.mean_probs([m1], epoch=7)


def test_errors_are_one_paragraph_with_exit_code_2(tmp_path, capsys):
    a = write_arch(tmp_path / "a.json", G1)
    big = write_arch(tmp_path / "big.json", geno([SA, FF, SA], [RSA, GA, FF]))
    assert main([str(a), str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.json does not exist" in err and err.count("\n") == 1
    assert main([str(a), str(big)]) == 2
    err = capsys.readouterr().err
    assert "a.json:epoch1 has 2 enc / 3 dec" in err and "big.json:epoch1 has 3 enc / 3 dec" in err
    assert "search.nodes_enc" in err and "the arch files do not have the same node counts" in err
    assert main([str(a)]) == 2
    assert "give at least two arch files" in capsys.readouterr().err
    assert main([str(a), str(a), "--epoch", "5"]) == 2
    assert "no key 'epoch5'" in capsys.readouterr().err
    assert main([str(a), str(a), "--epoch", "soon"]) == 2
    assert "--epoch must be 'last' or an integer N" in capsys.readouterr().err
    assert main([str(a), str(a), "--metrics", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl does not exist. A search writes" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch1": {"enc": [["self_att_65"], [FF]], "dec": G1.to_dict()["dec"]}}))
    assert main([str(a), str(bad)]) == 2
    assert "self_att_65" in capsys.readouterr().err
