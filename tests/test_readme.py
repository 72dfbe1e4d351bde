"""The README's Python example runs as written."""
import re

from tests.helpers import REPO


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_api_example_runs(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    exec(compile(readme_block("api-example"), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "torch.Size([1, 10])"
    assert out[1] == "(('rel_self_att_64',), ('guided_att_64',), ('feed_forward',))"
    assert out[2].startswith("{'self_att_64': 0.88")
