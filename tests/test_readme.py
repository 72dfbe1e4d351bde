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


def command_lines(text: str) -> list[str]:
    """Every `python3 <stage>_<task>.py …` line of the bash blocks (comments dropped, continuations joined)."""
    lines, out = text.replace("\\\n", " ").splitlines(), []
    for line in lines:
        line = line.split("  #")[0].strip()
        m = re.match(r"^(?:python3|\$PY|\.venv/bin/python|torchrun(?: --\S+ \S+)*) ((?:search|train)_(?:vqa|vgd|itm))"
                     r"\.py(.*)$", line)
        if m:
            out.append(m.group(1) + " " + m.group(2).strip())
    return out


def test_every_readme_and_demo_command_line_parses():
    import shlex

    from mmnas.cli import parse
    text = "\n".join((REPO / f).read_text() for f in ("README.md", "scripts/demo.sh", "scripts/demo_vgd.sh",
                                                       "scripts/demo_itm.sh"))
    cmds = command_lines(text)
    assert len(cmds) >= 8 and any("two_nodes" in c for c in cmds)  # the torchrun example too
    for cmd in cmds:
        script, *argv = shlex.split(cmd.replace('"$last"', "3").replace("$epochs", "10"))
        stage, task = script.split("_")
        cfg = parse(task, stage, argv)
        assert cfg.task == task and cfg.stage == stage
