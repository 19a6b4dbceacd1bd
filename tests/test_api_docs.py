"""docs/api.md is a walk-through that runs: its ```python blocks execute in order, in one namespace, in a
temporary folder (as a notebook would run them), on the planted ladder they build."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
from conftest import REPO


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_api_walkthrough_runs(tmp_path, monkeypatch):
    blocks = python_blocks(REPO / "docs" / "api.md")
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
    finally:
        plt.close("all")
    for name in ("jump.png", "line-compute.png", "jump-backtest.png", "law.png", "jump-same-loss.png",
                 "report.json", "backtest.json", "ladder.csv", "ladder.db"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "<table" in namespace["report"]._repr_html_()
