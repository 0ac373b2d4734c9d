"""ONNX export of trained models, checked against PyTorch with onnxruntime, and ONNX timing.

    info = export_checkpoint("run/best.safetensors", "model.onnx")      # one input per modality, one output per task
    timing = time_onnx("model.onnx", batch=64, threads=2)               # batch-1 latency and batch throughput

Why random models do not export: Robust-MAIL (random projection filters, modulated attention noise, MC dropout) and
DRIFA with MC dropout draw fresh random numbers at every forward pass *by design*; their prediction is an average over
draws. A traced ONNX graph is a fixed computation: the draws would either be frozen into constants (one fixed member
of the random family, not the defended model) or become ONNX random operators whose generator, seeding and
distribution shapes are not those of the model. So such a model is refused with an explanation; ``fixed_draw=SEED``
exports one fixed draw on purpose, for a fixed batch size (the noise has the activations' shape), and labels the
file as such in its metadata.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from mailnet.errors import MailnetError
from mailnet.utils import write_json

OPSET = 17


class ListModel(nn.Module):
    """``model(list) -> list`` as ``wrapper(*tensors) -> tuple``: one graph input per modality, one output per task."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(list(xs)))


def safe_name(name: str, fallback: str) -> str:
    """ONNX input/output names: the modality/task name with anything unusual replaced by '_'."""
    out = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))
    return out or fallback


def export_onnx(model: nn.Module, path: str | Path, input_shapes: Sequence[tuple[int, int, int]],
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                dynamic_batch: bool = True, opset: int = OPSET, metadata: dict[str, str] | None = None,
                example: Sequence[torch.Tensor] | None = None) -> Path:
    """Trace ``model`` (eval mode, no grad) to ONNX at ``path`` (written atomically); returns the path.

    ``input_shapes``: (C, H, W) per modality. ``example``: the inputs to trace with (default: uniform [0, 1]).
    ``metadata``: string key/values stored in the model's ``metadata_props``.
    """
    import onnx

    from mailnet.utils import atomic_write

    path = Path(path)
    model.eval()
    m = len(input_shapes)
    input_names = list(input_names or [f"input_{i}" for i in range(m)])
    xs = list(example) if example is not None else [torch.rand(1, *s) for s in input_shapes]
    with torch.no_grad():
        n_out = len(model(xs))
    output_names = list(output_names or [f"logits_{t}" for t in range(n_out)])
    if len(output_names) != n_out:
        raise MailnetError(f"export: the model has {n_out} outputs but {len(output_names)} output names were given")
    axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None

    def write(tmp: str) -> None:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(ListModel(model), tuple(xs), tmp, dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names, dynamic_axes=axes,
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        for k, v in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(k), str(v)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return path


def onnx_session(path: str | Path, threads: int | None = None, label: str | Path | None = None):
    """An onnxruntime CPU session (``threads`` intra-op threads; inter-op 1). ``label``: the path an error names
    (the final path of a graph still held in a temporary file)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise MailnetError(f"{label or path}: onnxruntime cannot load this model ({e})") from None


def run_onnx(session, xs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: x.detach().cpu().float().numpy() for n, x in zip(names, xs)})


def check_onnx(path: str | Path, model: nn.Module, xs: Sequence[torch.Tensor], atol: float = 1e-4,
               label: str | Path | None = None) -> float:
    """Largest |ONNX - PyTorch| over all outputs for inputs ``xs``; raises when it exceeds ``atol``. ``label``: the
    path an error names, when ``path`` is a temporary file."""
    model.eval()
    with torch.no_grad():
        ref = [z.float().cpu().numpy() for z in model(list(xs))]
    got = run_onnx(onnx_session(path, label=label), xs)
    err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    if not err <= atol:
        raise MailnetError(f"{label or path}: onnxruntime outputs differ from PyTorch by {err:.3g} (> {atol:g})")
    return err


def time_onnx(path: str | Path, batch: int = 64, threads: int = 2, iters: int = 20, batch_iters: int = 3,
              warmup: int = 2, seed: int = 0) -> dict:
    """Batch-1 latency and batch-``batch`` throughput of an ONNX model under onnxruntime (CPU).

    Inputs are uniform [0, 1] at the graph's (C, H, W); a graph exported for a fixed batch size is timed at that
    size only. Returns ``{"latency_ms", "latency_ms_min", "forward_batch_ms", "samples_per_s", "batch",
    "threads", "runtime"}``.
    """
    import onnxruntime as ort

    sess = onnx_session(path, threads)
    rng = np.random.default_rng(seed)
    ins = sess.get_inputs()
    fixed = [i.shape[0] for i in ins if isinstance(i.shape[0], int)]

    def feed(b: int) -> dict[str, np.ndarray]:
        return {i.name: rng.random((b, *[int(d) for d in i.shape[1:]]), dtype=np.float32) for i in ins}

    def timed(f: dict, n: int, w: int) -> list[float]:
        for _ in range(w):
            sess.run(None, f)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            sess.run(None, f)
            out.append(time.perf_counter() - t0)
        return out

    one_b = fixed[0] if fixed else 1
    big_b = fixed[0] if fixed else int(batch)
    lat = timed(feed(one_b), iters, warmup)
    thr = timed(feed(big_b), batch_iters, min(warmup, 1))
    fwd = statistics.median(thr)
    return {"latency_ms": 1000 * statistics.median(lat), "latency_ms_min": 1000 * min(lat),
            "latency_batch": one_b, "forward_batch_ms": 1000 * fwd, "batch": big_b,
            "samples_per_s": big_b / fwd, "threads": threads, "runtime": f"onnxruntime {ort.__version__}"}


# ------------------------------------------------------------------------------------------- random models


@contextmanager
def frozen_draws(model: nn.Module, xs: Sequence[torch.Tensor], seed: int) -> Iterator[None]:
    """Inside the block, every random draw of ``model`` replays the draws of one seeded forward on ``xs``, as
    constants (so a tracer records them as fixed tensors). Only for the batch shape of ``xs``."""
    from mailnet.layers.noise import Stochastic, seed_noise

    modules = [m for m in model.modules() if isinstance(m, Stochastic)]
    recorded: dict[int, list[torch.Tensor]] = {id(m): [] for m in modules}

    def recorder(m: Stochastic, kind: str):
        orig = getattr(Stochastic, kind)

        def draw(shape, ref):
            t = orig(m, shape, ref)
            recorded[id(m)].append(t.detach().clone())
            return t
        return draw

    def replayer(m: Stochastic):
        queue = recorded[id(m)]
        pos = [0]

        def draw(shape, ref):
            if not queue:
                raise MailnetError("export --fixed-draw: a random part drew numbers it did not draw when recorded")
            t = queue[pos[0] % len(queue)]  # every forward replays the same sequence
            pos[0] += 1
            if tuple(t.shape) != tuple(int(s) for s in shape):
                raise MailnetError("export --fixed-draw: a random draw changed shape between passes")
            return t.to(device=ref.device, dtype=ref.dtype)
        return draw

    try:
        for m in modules:
            m.randn, m.rand = recorder(m, "randn"), recorder(m, "rand")
        seed_noise(model, seed)
        torch.manual_seed(seed)
        with torch.no_grad():
            model(list(xs))
        for m in modules:
            m.randn = m.rand = replayer(m)
        yield
    finally:
        for m in modules:
            m.__dict__.pop("randn", None)
            m.__dict__.pop("rand", None)
        seed_noise(model, seed)


def uses_unseedable_randomness(model: nn.Module) -> bool:
    """Random parts outside :class:`mailnet.layers.noise.Stochastic` (e.g. ``nn.Dropout`` kept on in eval)."""
    from mailnet.layers.noise import Stochastic

    return any(isinstance(m, nn.modules.dropout._DropoutNd) and not isinstance(m, Stochastic)
               and getattr(m, "mc", False) for m in model.modules())


# ------------------------------------------------------------------------------------------- checkpoints


def example_inputs(meta: dict, tensors: dict[str, torch.Tensor], batch: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """Check images: the checkpoint's partner bank (real training images) when it has one, else uniform noise."""
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for i, mod in enumerate(meta["modalities"]):
        bank = tensors.get(f"partner_bank.{i}")
        shape = (int(mod["in_chans"]), int(mod["img_size"]), int(mod["img_size"]))
        if bank is not None and tuple(bank.shape[1:]) == shape and bank.shape[0] > 0:
            x = bank[:batch].float().div(255)
            if x.shape[0] < batch:
                x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:batch]
        else:
            x = torch.rand((batch, *shape), generator=gen)
        xs.append(x)
    return xs


DECISION = {"binary": "softmax over the 2 logits; positive when the last class's probability > 0.5",
            "multi-class": "softmax over the logits; the predicted class is the argmax",
            "ordinal": "softmax over the logits; the predicted grade is the argmax",
            "multi-label": "sigmoid of each logit; a label is present when its probability > 0.5"}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a whole file, read in chunks (a checkpoint can be hundreds of MB): what a model card records of
    the checkpoint it was exported from, and what ``mailnet profile --onnx`` compares with."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(onnx_path: str | Path) -> Path:
    """Where the model card of an exported graph lives: beside it, ``model.onnx`` -> ``model.onnx.json``."""
    return Path(str(onnx_path) + ".json")


def deploy_card(meta: dict, checkpoint: str | Path, in_names: list[str], out_names: list[str],
                shapes: list[tuple[int, int, int]], batch: int | None, fixed_draw: int | None) -> dict:
    """What a deployer needs to feed the graph and read its outputs without mailnet: pixel range and
    preprocessing per input, task type, class names and decision rule per output, and what stands in for a
    missing modality of an unpaired model. Stored in the ONNX metadata (``mailnet.card``) and beside the file."""
    import datetime as dt

    import mailnet

    paired = bool(meta.get("paired"))
    inputs = [{"name": n, "modality": m.get("name"), "shape": ["batch", c, h, w], "dtype": "float32",
               "range": [0.0, 1.0],
               "preprocessing": f"decode the image, convert to {c} channel(s) (grey <-> RGB), resize to {h}x{w} "
                                "(bilinear, aspect ratio not kept), scale pixels to [0, 1] (uint8 / 255); the "
                                "normalisation is inside the graph. mailnet.load_image(path, channels="
                                f"{c}, size={h}) does exactly this"}
              for n, m, (c, h, w) in zip(in_names, meta["modalities"], shapes)]
    outputs = [{"name": n, "task": t.get("name"), "task_type": t.get("task_type"),
                "class_names": list(t.get("class_names") or []), "num_classes": t.get("num_classes"),
                "decision": DECISION.get(str(t.get("task_type")), "softmax over the logits")}
               for n, t in zip(out_names, meta["tasks"])]
    card = {"format": "mailnet-onnx-card/1", "model": meta["model"]["name"], "mailnet_version": mailnet.__version__,
            "exported_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "checkpoint": str(Path(checkpoint).resolve()), "epoch": meta.get("epoch"),
            "checkpoint_sha256": file_sha256(checkpoint),
            "batch": "dynamic" if batch is None else batch, "paired": paired, "inputs": inputs, "outputs": outputs}
    if not paired and len(inputs) > 1:
        card["missing_modality"] = (
            "unpaired model: every input needs an image, but a sample's label depends on its own modality only. "
            "With one modality missing, `mailnet predict` feeds each of the checkpoint's partner-bank images "
            "(training images, `mailnet export --partner-bank FILE.npz` writes them) in its place and averages "
            "the probabilities; the missing modality's own task is not reported.")
    if fixed_draw is not None:
        card["warning"] = (f"ONE FIXED RANDOM DRAW (seed {fixed_draw}, batch {batch}) of a model that is random by "
                           "design; not the randomized defence itself")
    return card


def export_checkpoint(checkpoint: str | Path, out: str | Path, fixed_draw: int | None = None,
                      check_inputs: Sequence[torch.Tensor] | None = None, atol: float = 1e-4,
                      fixed_batch: int = 1, partner_bank: str | Path | None = None,
                      benchmark: dict[str, int] | None = None) -> dict:
    """Export a checkpoint's model to ONNX and check it with onnxruntime; returns a summary dict.

    Inputs are named after the checkpoint's modalities, outputs after its tasks (``<task>_logits``).
    ``check_inputs``: images (one (B, C, H, W) tensor per modality, in [0, 1]) compared between PyTorch and
    onnxruntime (default: the partner bank, else noise). ``fixed_draw``: for a random model, export the one draw
    seeded by this value (batch size ``fixed_batch``); refused for deterministic models (nothing to fix).
    ``partner_bank``: also write the checkpoint's partner-bank images there (see :func:`save_partner_bank`).
    ``benchmark``: keyword arguments of :func:`time_onnx`, whose result lands in ``summary["timing"]``.

    All or nothing: every output path is checked before any work, everything is written to temporary files beside
    the outputs, and they replace the outputs only once the graph passed its check (and the benchmark ran). A
    failure anywhere leaves earlier files at those paths exactly as they were, and no new file.
    """
    from mailnet.engine.randomness import is_stochastic
    from mailnet.engine.runs import load_model

    if not atol >= 0:  # also refuses NaN
        raise MailnetError(f"export: --atol must be a number >= 0, got {atol}")
    out = Path(out)
    targets = output_paths(out, partner_bank)
    with StagedOutputs(targets) as staged:
        model, meta, tensors = load_model(checkpoint)
        for key in ("modalities", "tasks"):
            if not meta.get(key):
                raise MailnetError(f"{checkpoint}: checkpoint metadata has no {key} description; cannot name the graph")
        bank = _bank_arrays(checkpoint, meta, tensors) if partner_bank is not None else None  # refused before work
        mods, tasks = meta["modalities"], meta["tasks"]
        shapes = [(int(m["in_chans"]), int(m["img_size"]), int(m["img_size"])) for m in mods]
        in_names = _unique([safe_name(m.get("name", ""), f"input_{i}") for i, m in enumerate(mods)])
        out_names = _unique([safe_name(f"{t.get('name', '')}_logits", f"logits_{i}") for i, t in enumerate(tasks)])
        name = meta["model"]["name"]
        probe = example_inputs(meta, tensors, batch=2)
        random_model = uses_unseedable_randomness(model) or is_stochastic(model, probe)
        summary = {"model": name, "onnx": str(out), "inputs": in_names, "outputs": out_names, "shapes": shapes,
                   "random_model": random_model, "fixed_draw": None, "card": str(card_path(out))}
        if random_model and fixed_draw is None:
            raise MailnetError(
                f"{checkpoint}: model {name!r} is random at inference (it draws fresh noise, random filters or "
                f"dropout masks at every forward, and its prediction is an average over draws), so it has no single "
                f"deterministic graph to export; use --fixed-draw SEED to export one fixed draw, labelled as such")
        if fixed_draw is not None and not random_model:
            raise MailnetError(f"{checkpoint}: --fixed-draw is only for random models; {name!r} is deterministic")
        card = deploy_card(meta, checkpoint, in_names, out_names, shapes, None if fixed_draw is None else fixed_batch,
                           None if fixed_draw is None else int(fixed_draw))
        md = {"mailnet.model": name, "mailnet.checkpoint": Path(checkpoint).name,
              "mailnet.modalities": ",".join(f"{n}:{c}x{h}x{w}" for n, (c, h, w) in zip(in_names, shapes)),
              "mailnet.input_range": "0,1",
              "mailnet.outputs": "; ".join(f"{o['name']}: {o['task_type']} {o['class_names']}, {o['decision']}"
                                           for o in card["outputs"]),
              "mailnet.card": json.dumps(card)}
        graph = staged[out]
        if random_model:
            if uses_unseedable_randomness(model):
                raise MailnetError(f"{checkpoint}: model {name!r} has randomness that cannot be seeded and replayed; "
                                   f"it cannot be exported even as a fixed draw")
            xs = [x[:1].repeat(fixed_batch, 1, 1, 1) for x in (check_inputs or probe)]
            md.update({"mailnet.fixed_draw_seed": str(int(fixed_draw)), "mailnet.warning": card["warning"]})
            with frozen_draws(model, xs, int(fixed_draw)):
                export_onnx(model, graph, shapes, in_names, out_names, dynamic_batch=False, metadata=md, example=xs)
                err = check_onnx(graph, model, xs, atol, label=out)
            summary.update(fixed_draw=int(fixed_draw), fixed_batch=fixed_batch, max_abs_diff=err,
                           checked_on=len(xs[0]))
        else:
            xs = list(check_inputs) if check_inputs is not None else example_inputs(meta, tensors)
            _check_shapes(xs, shapes)
            export_onnx(model, graph, shapes, in_names, out_names, dynamic_batch=True, metadata=md)
            summary.update(max_abs_diff=check_onnx(graph, model, xs, atol, label=out), checked_on=int(xs[0].shape[0]))
        write_json(staged[card_path(out)], card)
        if bank is not None:
            _write_npz(staged[Path(partner_bank)], bank)
            summary.update(partner_bank=str(partner_bank), partner_bank_shapes={k: v.shape for k, v in bank.items()})
        if benchmark is not None:
            summary["timing"] = time_onnx(graph, **benchmark)
        staged.commit()  # only now do the outputs appear (or replace earlier ones), all together
    return summary


def save_partner_bank(checkpoint: str | Path, out: str | Path) -> dict[str, tuple[int, ...]]:
    """The checkpoint's partner-bank images (uint8, (N, C, H, W) per modality, keyed by modality name) as an .npz,
    for a deployer who must stand in for a missing modality the way ``mailnet predict`` does."""
    from mailnet.engine.checkpoint import load_checkpoint
    from mailnet.utils import atomic_write

    tensors, meta = load_checkpoint(checkpoint)
    bank = _bank_arrays(checkpoint, meta, tensors)
    atomic_write(out, lambda tmp: _write_npz(tmp, bank))
    return {k: tuple(v.shape) for k, v in bank.items()}


def _bank_arrays(checkpoint: str | Path, meta: dict, tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The partner bank keyed by modality name; refused (one line) when the checkpoint has none."""
    names = [m.get("name", f"modality_{i}") for i, m in enumerate(meta.get("modalities", []))]
    bank = {names[int(k.split(".")[1])]: v.cpu().numpy() for k, v in tensors.items()
            if k.startswith("partner_bank.") and int(k.split(".")[1]) < len(names)}
    if not bank:
        raise MailnetError(f"{checkpoint}: no partner bank in this checkpoint (paired models and eval.partner_bank: 0 "
                           "have none)")
    return bank


def _write_npz(path: str | Path, bank: dict[str, np.ndarray]) -> None:
    """Through an open file: ``np.savez`` given a name would append '.npz' to one that lacks it."""
    with open(path, "wb") as f:
        np.savez(f, **bank)


# ------------------------------------------------------------------------------------------- all-or-nothing outputs


def output_paths(onnx: str | Path, partner_bank: str | Path | None = None) -> list[Path]:
    """The files an export writes: the graph, its model card and, on request, the partner bank. Refused (one line,
    before any work) when two are one file, since the later write would destroy the earlier, or when one is a
    folder, which would fail only once the export is done."""
    from mailnet.errors import ConfigError

    roles = [("--onnx", Path(onnx)), ("the model card", card_path(onnx))]
    if partner_bank is not None:
        roles.append(("--partner-bank", Path(partner_bank)))
    for i, (role, path) in enumerate(roles):
        for other_role, other in roles[:i]:
            if _same_file(path, other):
                raise ConfigError(f"export: {role} {path} and {other_role} {other} are the same file; give each output "
                                  "its own path")
        if path.is_dir():
            raise MailnetError(f"export: {role} {path} is a folder; give a file path to write")
    return [path for _, path in roles]


def _same_file(a: Path, b: Path) -> bool:
    """Whether two spellings (relative, '..', symbolic or hard links) name one file."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: then only the spelling could match
        return False


class StagedOutputs:
    """Outputs written to temporary files beside their targets and moved into place together by :meth:`commit`.

    Entering reserves one temporary per target (creating missing folders): a target that cannot be written is a
    one-line ``MailnetError`` before any work. Until ``commit`` the targets are untouched; leaving the block without
    it (an error, Ctrl-C) removes every temporary and every folder it created. So a failed command leaves earlier
    files exactly as they were, and nothing new.
    """

    def __init__(self, targets: Sequence[str | Path]) -> None:
        self.targets = [Path(t) for t in targets]
        self._tmp: dict[Path, Path] = {}
        self._made: list[Path] = []  # folders created here, outermost first
        self._committed = False

    def __getitem__(self, target: str | Path) -> Path:
        """The temporary file that stands for ``target`` until the commit."""
        return self._tmp[Path(target)]

    def __enter__(self) -> "StagedOutputs":
        try:
            for target in self.targets:
                self._tmp[target] = self._reserve(target)
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            self._discard()

    def _reserve(self, target: Path) -> Path:
        """Create the temporary for ``target``: the one sure test that its folder takes new files (even as root)."""
        missing = [d for d in (target.parent, *target.parent.parents) if not d.exists()][::-1]
        try:
            for d in missing:
                try:
                    d.mkdir()
                except FileExistsError:  # made meanwhile by someone else: not ours to remove
                    continue
                self._made.append(d)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as e:
            raise MailnetError(f"{target}: cannot write here ({e.strerror or type(e).__name__})") from None
        os.close(fd)
        return Path(tmp)

    def commit(self) -> None:
        """Move every temporary onto its target. Should one move fail, the targets already replaced get their
        earlier content back (or are removed if they are new), so the outputs are never half new, half old."""
        from mailnet.utils import _UMASK

        kept: dict[Path, Path | None] = {}
        moved: list[Path] = []
        target = self.targets[0]
        try:
            for target in self.targets:
                kept[target] = self._keep(target)
                os.chmod(self._tmp[target], 0o666 & ~_UMASK)  # mkstemp makes it owner-only
                os.replace(self._tmp[target], target)
                moved.append(target)
            self._committed = True
        except BaseException as e:
            for done in reversed(moved):
                old = kept[done]
                if old is None:
                    done.unlink(missing_ok=True)
                else:
                    os.replace(old, done)
            if isinstance(e, OSError):
                raise MailnetError(f"{target}: cannot write here ({e.strerror or type(e).__name__})") from None
            raise
        finally:
            for old in kept.values():
                if old is not None:
                    old.unlink(missing_ok=True)

    @staticmethod
    def _keep(target: Path) -> Path | None:
        """A copy of an existing target beside it (a hard link when the file system allows), to restore on failure."""
        if not os.path.lexists(target):
            return None
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
        os.close(fd)
        os.unlink(name)
        try:
            os.link(target, name, follow_symlinks=False)
        except OSError:
            shutil.copy2(target, name, follow_symlinks=False)
        return Path(name)

    def _discard(self) -> None:
        """Remove what this staging created, so that a failed command leaves no trace."""
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        for d in reversed(self._made):
            try:
                d.rmdir()
            except OSError:  # not empty: something else was put there meanwhile
                pass


def _check_shapes(xs: Sequence[torch.Tensor], shapes: Sequence[tuple[int, int, int]]) -> None:
    if len(xs) != len(shapes):
        raise MailnetError(f"export: {len(xs)} check tensors given for {len(shapes)} modalities")
    for i, (x, s) in enumerate(zip(xs, shapes)):
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(s):
            raise MailnetError(f"export: check images for modality {i} have shape {tuple(x.shape)}, expected (B, {s})")


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n}_{k}")
        seen[n] = k + 1
    return out
