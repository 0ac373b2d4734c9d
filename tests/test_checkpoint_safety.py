"""Checkpoints that are not what they claim fail in one line, before anything large is allocated or anything is
unpickled: other formats (torch.save's zip, a pickle, the JSON sidecar), altered or truncated safetensors files,
and metadata describing a model the weights cannot fit (e.g. a crafted huge one)."""
from __future__ import annotations

import json
import pickle
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

from mailnet.engine.checkpoint import join_state, load_checkpoint, save_checkpoint
from mailnet.engine.runs import load_model
from mailnet.errors import MailnetError, ModelError
from mailnet.models import create_model

KWARGS = {"widths": [8, 8, 16, 16], "stem": "cifar", "in_chans": [1, 1], "num_classes": [2, 2]}


def _tiny(path: Path, name: str = "mail", **kwargs) -> Path:
    """A tiny checkpoint whose metadata may claim other keyword arguments than the weights were built with."""
    model = create_model(name, **KWARGS)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, tensors, {"model": {"name": name, "kwargs": {**KWARGS, **kwargs}}})
    return path


def _error(path: Path, exc: type[Exception] = MailnetError) -> str:
    with pytest.raises(exc) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    return text


def test_tiny_checkpoint_loads(tmp_path):
    model, meta, _ = load_model(_tiny(tmp_path / "ok.safetensors"))
    assert meta["model"]["kwargs"]["widths"] == [8, 8, 16, 16] and not model.training


@pytest.mark.parametrize("name", ["mail", "robust_mail"])  # robust_mail: its random filters count on meta too
def test_absurd_model_metadata_is_refused_before_allocating(tmp_path, name):
    path = _tiny(tmp_path / "crafted.safetensors", name, widths=[4096, 8192, 16384, 32768])
    start = time.monotonic()
    text = _error(path, ModelError)
    assert "the metadata does not match the weights" in text and "4096" in text and f"'{name}'" in text
    assert time.monotonic() - start < 30  # counted on the meta device, not built for real


def test_any_error_rebuilding_the_model_is_one_line(tmp_path):
    text = _error(_tiny(tmp_path / "neg.safetensors", widths=[8, -8, 16, 16]), ModelError)
    assert "cannot rebuild model 'mail'" in text and "-8" in text


@pytest.mark.parametrize("kind", ["zip", "pickle", "json", "empty"])
def test_other_formats_are_named_not_unpickled(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "zip":
        torch.save({"w": torch.zeros(3)}, path)
        assert zipfile.is_zipfile(path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"w": [0.0] * 3}, protocol=2))
    elif kind == "json":
        ok = _tiny(tmp_path / "best.safetensors")
        path = ok.with_suffix(".json")  # the readable sidecar, passed by mistake
    else:
        path.write_bytes(b"")
    text = _error(path)
    assert "mailnet loads only safetensors checkpoints" in text and "header too large" not in text
    assert {"zip": "zip archive (the format torch.save writes)", "pickle": "a Python pickle",
            "json": f"a JSON file (the readable twin of {tmp_path / 'best.safetensors'}", "empty": "an empty file"}[
        kind] in text


def _rewrite_header(path: Path, change) -> None:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_altered_or_truncated_files_say_so(tmp_path):
    cut = _tiny(tmp_path / "cut.safetensors")
    cut.write_bytes(cut.read_bytes()[:-100])
    assert "does not match its own metadata" in _error(cut)

    gone = _tiny(tmp_path / "gone.safetensors")
    _rewrite_header(gone, lambda h: h.pop(sorted(k for k in h if k != "__metadata__")[0]))  # a tensor removed
    text = _error(gone)
    assert "does not match its own metadata" in text and "altered or truncated" in text

    tensors, _ = load_checkpoint(_tiny(tmp_path / "ok.safetensors"))
    with pytest.raises(MailnetError, match="names tensor 'optimizer.0', which the file lacks"):
        join_state({"__dict__": [["state", {"__tensor__": "optimizer.0"}]]}, tensors)
