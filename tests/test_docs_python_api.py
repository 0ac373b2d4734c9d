"""docs/python-api.md is true: its Python blocks run in order, in one namespace, in a fresh folder, on the real
MedMNIST files (the page promises this test)."""
from __future__ import annotations

import re
from pathlib import Path

from mailnet.models import registry

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_every_python_block_of_the_page_runs(tmp_path, data_root, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) == 5  # models, data, train/evaluate, attacks, your own model
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILNET_DATA", str(data_root))
    registry._import_all()  # the built-ins first: registered lazily inside the blocks, they would be removed below
    before = set(registry._REGISTRY)
    namespace: dict = {"__name__": "docs_python_api"}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{PAGE.name} block {i + 1}", "exec"), namespace)
    finally:
        for name in set(registry._REGISTRY) - before:
            del registry._REGISTRY[name]
    assert (tmp_path / "runs" / "api_demo" / "FINISHED").is_file() and (tmp_path / "runs" / "mine" / "FINISHED").is_file()
    assert set(namespace["mine"].test["tasks"]) == {"pneumonia", "breast"}
