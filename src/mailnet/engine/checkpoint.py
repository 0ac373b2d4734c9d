"""Checkpoints that are safe to load: tensors in safetensors, everything else as JSON in the file's metadata.

One ``.safetensors`` file holds the weights (and, for resumable checkpoints, optimizer tensors and a partner
bank) plus a JSON document under the metadata key ``mailnet``; no pickle anywhere, so a checkpoint from a
stranger cannot run code. Files are written atomically, so a run killed mid-write keeps the previous one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mailnet.errors import MailnetError
from mailnet.utils import atomic_write, write_json

META_KEY = "mailnet"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and the JSON-able ``meta`` (plus a readable ``.json`` twin beside it)."""
    meta = {"format": FORMAT_VERSION, **meta}
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, tmp, metadata={META_KEY: json.dumps(meta)}))
    write_json(Path(path).with_suffix(".json"), meta)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise MailnetError(f"{path}: checkpoint not found")
    kind = not_safetensors(path)
    if kind is not None:
        raise MailnetError(f"{path}: {kind}, not a safetensors checkpoint; mailnet loads only safetensors "
                           "checkpoints (it never unpickles one: a pickle can run code)")
    try:
        tensors = load_file(str(path), device=str(device))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        if any(s in str(e) for s in ("offset", "not fully covered", "incomplete")):
            raise MailnetError(f"{path}: the file does not match its own metadata: a tensor's data is missing or "
                               f"misplaced (altered or truncated file; {e})") from None
        raise MailnetError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if raw is None:
        raise MailnetError(f"{path}: safetensors file has no mailnet metadata (not a mailnet checkpoint)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise MailnetError(f"{path}: the checkpoint's metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise MailnetError(f"{path}: the checkpoint's metadata is not a JSON object (not a mailnet checkpoint)")
    _check_format(path, meta.get("format"))
    return tensors, meta


def _check_format(path: Path, fmt: Any) -> None:
    """A checkpoint written by a newer mailnet may store its state differently: refuse it rather than guess."""
    if fmt is None:  # no format recorded, nothing to compare: the other checks judge the file
        return
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise MailnetError(f"{path}: the checkpoint's metadata has format {fmt!r}, expected a positive integer")
    if fmt > FORMAT_VERSION:
        raise MailnetError(f"{path}: checkpoint format {fmt} is newer than this mailnet supports (format "
                           f"{FORMAT_VERSION}); upgrade mailnet to load it")


def not_safetensors(path: Path) -> str | None:
    """What the file is when its first bytes show it is not safetensors (which starts with an 8-byte header
    length, then the JSON header), else ``None``; safetensors' own error for these is a puzzling 'header too
    large'."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if len(head) == 9 and int.from_bytes(head[:8], "little") <= size - 8 and head[8:] == b"{":
        return None  # shaped like safetensors: let the loader judge the rest
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (the format torch.save writes)"
    if head[0] == 0x80:
        return "a Python pickle (e.g. an older torch.save)"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        twin = path.with_suffix(".safetensors")
        return "a JSON file" + (f" (the readable twin of {twin}: pass that file)" if twin.is_file() else "")
    return "a file of another format, or a truncated one (its first 8 bytes give no header length that fits it)"


def model_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors (its ``model.`` entries, prefix removed)."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def first_nonfinite(weights: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf (a diverged training), or None."""
    return next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def tensors_fingerprint(path: str | Path) -> str:
    """SHA-256 of a checkpoint's tensors (names, dtypes, shapes, bytes; metadata left out): two trainings that
    produced the same weights have the same fingerprint, wherever and whenever they were written."""
    return fingerprint_of(load_checkpoint(path)[0])


def fingerprint_of(tensors: dict[str, torch.Tensor]) -> str:
    """:func:`tensors_fingerprint` of tensors already loaded."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        flat = t.contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state (e.g. ``optimizer.state_dict()``) into ``tensors``; return the rest
    as JSON with ``{"__tensor__": key}`` placeholders."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        # a list of pairs keeps int keys (optimizer parameter ids) ints through JSON
        return {"__dict__": [[k, split_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        if obj["__tensor__"] not in tensors:
            raise MailnetError(f"checkpoint: its metadata names tensor {obj['__tensor__']!r}, which the file lacks: "
                               "the file does not match its own metadata (altered or truncated)")
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: join_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj

