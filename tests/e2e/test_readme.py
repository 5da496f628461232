"""The README's recipes run as written (with 1 epoch and 1 seed so that the test stays short)."""

import re
import shlex
import shutil

import pytest

import transferkit as tk
from transferkit.demo import DemoSettings, source_config
from tests.conftest import ROOT
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow
FAST = ["--set", "train.epochs=1"]


def _recipes() -> tuple[list[str], list[str]]:
    text = (ROOT / "README.md").read_text().split("## Recipes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", text, re.S), re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_recipes_run_from_the_cli_and_from_python(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    tk.train(source_config(DemoSettings(source_epochs=1)), out="runs/demo/source", progress=False)
    bash, python = _recipes()
    assert len(bash) == len(python) == 4
    for block in bash:
        args = shlex.split(block.strip())
        assert args[0] == "transferkit"
        extra = FAST + (["--seeds", "1", "--shots", "1"] if args[1] == "compare" else [])
        r = cli(*args[1:], *extra, cwd=tmp_path)
        assert r.returncode == 0, (block, r.stderr)
        out = args[args.index("--out") + 1]
        assert (tmp_path / out / "report.html").is_file(), block
    cfg = tk.load_config("examples/usps_few_shot.yaml", ["train.epochs=1"])
    for block in python:
        code = block.replace("seeds=3", "seeds=1").replace("shots=[1, 5, 10]", "shots=[1]")
        code = code.replace('out="runs/', 'overwrite=True, out="runs/')
        exec(code, {"tk": tk, "cfg": cfg})
    assert (tmp_path / "lora_adapter.safetensors").is_file()
