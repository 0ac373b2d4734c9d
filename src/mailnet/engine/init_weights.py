"""Starting a training from another run's weights (``model.init_from``): fine-tuning, or a curriculum such as
training Robust-MAIL's noise-free variant first and then switching its attention noise on.

Only tensors whose name *and* shape match are copied; the rest keep their fresh initialisation and are listed, so
a head for other classes, or a parameter the source model does not have (Robust-MAIL's trainable EMCAM noise
weight), is a reported difference rather than an error. A source with nothing in common with the model is an
error: that is another architecture, not a starting point, and so is one that provides less than half of the
model's weights (a few matching biases).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from mailnet.engine import rundir
from mailnet.engine.checkpoint import fingerprint_of, first_nonfinite, load_checkpoint, model_weights
from mailnet.errors import MailnetError

KEY = "model.init_from"
# Least share of the model's weight elements the source must provide.
MIN_SHARE = 0.5


def init_from_checkpoint(model: nn.Module, source: str | Path) -> dict[str, Any]:
    """Copy into ``model`` every tensor of ``source`` (a checkpoint file, or a run directory: its best checkpoint)
    that has the same name and shape; returns what was done (written to the run as ``init.json``)."""
    try:
        path = rundir.checkpoint_from(Path(source).expanduser())
        tensors, meta = load_checkpoint(path)
    except MailnetError as e:
        raise MailnetError(f"{KEY}: {e}") from None
    weights = model_weights(tensors)
    if not weights:
        raise MailnetError(f"{KEY}: {path} holds no model weights (no 'model.' tensors); give a run directory or "
                           "one of its checkpoints/*.safetensors")
    bad = first_nonfinite(weights)
    if bad is not None:
        raise MailnetError(f"{KEY}: {path}: weights contain NaN or infinite values (tensor {bad!r})")
    own = model.state_dict()
    fits = [k for k, v in weights.items() if k in own and own[k].shape == v.shape]
    shape_differs = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    unused = [k for k in weights if k not in own]
    source_model = (meta.get("model") or {}).get("name") if isinstance(meta.get("model"), dict) else None
    share = sum(own[k].numel() for k in fits) / max(1, sum(v.numel() for v in own.values()))
    if share < MIN_SHARE:  # a few biases or norms that happen to match are no starting point
        raise MailnetError(f"{KEY}: the tensors of {path} (a {source_model or 'unnamed'} model) that fit this "
                           f"model by name and shape hold {share:.0%} of its weights (under {MIN_SHARE:.0%}); "
                           "another architecture?")
    model.load_state_dict({k: weights[k] for k in fits}, strict=False)
    kept_initial = [k for k in own if k not in weights]
    return {"checkpoint": str(path.resolve()), "fingerprint": fingerprint_of(tensors), "source_model": source_model,
            "source_epoch": meta.get("epoch"), "loaded": len(fits), "of": len(own),
            "share": round(share, 4),
            "kept_initial": sorted(kept_initial), "shape_differs": sorted(shape_differs), "unused": sorted(unused)}


def source_fingerprint(source: str | Path) -> str | None:
    """The tensor fingerprint of the checkpoint ``source`` names, or None when it cannot be read: what a stored
    result started from, so that the same weights reached by another path match and retrained ones do not."""
    try:
        return fingerprint_of(load_checkpoint(rundir.checkpoint_from(Path(source).expanduser()))[0])
    except MailnetError:
        return None


def summary_line(record: dict[str, Any]) -> str:
    """One line for the log: how much of the model came from where, and what did not."""
    line = f"initialised {record['loaded']} of {record['of']} tensors from {record['checkpoint']}"
    rest = [f"{len(record[k])} {k.replace('_', ' ')}" for k in ("kept_initial", "shape_differs", "unused")
            if record[k]]
    if rest:
        line += f" ({', '.join(rest)}; listed in init.json)"
    return line
