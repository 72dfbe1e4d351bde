import json

import pytest

from mmnas.nas.genotype import ArchFileError, Genotype, append_genotype, load_genotype, read_arch_file
from mmnas.ops import OPS, SEARCH_SPACE
from tests.helpers import REPO

SHIPPED = ["mcan", "mmnas_vqa", "mmnas_vgd", "mmnas_itm"]
SPEC_ARCH = REPO.parent / "shared" / "spec" / "arch"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_load_validate_and_round_trip(name, tmp_path):
    path = REPO / "arch" / f"{name}.json"
    if SPEC_ARCH.is_dir():  # the release's bytes, unchanged
        assert path.read_bytes() == (SPEC_ARCH / f"{name}.json").read_bytes()
    g = load_genotype(path, 0)
    assert len(g.enc) == 12 and len(g.dec) == 18
    g.validate(OPS.names(), search_space=SEARCH_SPACE, nodes={"enc": 12, "dec": 18})
    out = tmp_path / "resaved.json"
    append_genotype(out, 0, g)
    assert json.loads(out.read_text()) == json.loads(path.read_text())


def test_append_keeps_earlier_epochs(tmp_path):
    path = tmp_path / "run.json"
    g0 = load_genotype(REPO / "arch" / "mcan.json")
    g1 = load_genotype(REPO / "arch" / "mmnas_vqa.json")
    append_genotype(path, 1, g0)
    append_genotype(path, 2, g1)
    table = read_arch_file(path)
    assert list(table) == ["epoch1", "epoch2"]
    assert table["epoch1"] == g0 and table["epoch2"] == g1
    assert load_genotype(path, "epoch2") == g1


def test_bad_op_names_file_key_op_and_choices(tmp_path):
    d = json.loads((REPO / "arch" / "mcan.json").read_text())
    d["epoch0"]["dec"][4] = ["guided_att64"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ArchFileError) as e:
        load_genotype(path)
    msg = str(e.value)
    assert str(path) in msg and "'epoch0'" in msg and "'guided_att64'" in msg and "dec node 4" in msg
    assert "Did you mean 'guided_att_64'" in msg and "feed_forward" in msg


def test_wrong_node_count_and_missing_epoch(tmp_path):
    g = load_genotype(REPO / "arch" / "mcan.json")
    with pytest.raises(ArchFileError, match="the 'dec' cell has 18 nodes, expected 12"):
        g.validate(OPS.names(), nodes={"enc": 12, "dec": 12})
    with pytest.raises(ArchFileError, match=r"has no key 'epoch7'; it holds epoch0\. Pick one with --ARCH_EPOCH"):
        load_genotype(REPO / "arch" / "mcan.json", 7)
    with pytest.raises(ArchFileError, match="does not exist"):
        load_genotype(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ArchFileError, match="not valid JSON"):
        load_genotype(tmp_path / "x.json")


def test_guided_attention_in_encoder_is_rejected():
    g = Genotype(enc=(("guided_att_64",),), dec=(("feed_forward",),))
    with pytest.raises(ArchFileError, match="belongs in 'dec'"):
        g.validate(OPS.names())


def test_multi_op_nodes_parse():
    g = Genotype.from_dict({"enc": [["self_att_64", "feed_forward"]], "dec": [["guided_att_64"]]})
    assert g.enc == (("self_att_64", "feed_forward"),)
