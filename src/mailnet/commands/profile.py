"""``mailnet profile``: parameters, MACs/FLOPs, batch-1 latency and training-step throughput of one or more models.

With ``--compare`` all models are built in one process and timed in turn inside every repetition, so the ratios
against the baseline (the first model, or ``--baseline``) stay fair on a busy machine.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure parameters, MACs and wall-clock cost of models", description=__doc__)
    p.add_argument("--model", help="model to profile (e.g. mail); may be combined with --compare")
    p.add_argument("--run", metavar="RUN_DIR|CKPT",
                   help="profile the exact model a run trained (its architecture and input shapes, from the "
                        "checkpoint); replaces --model/--compare and the shape options")
    p.add_argument("--compare", help="comma-separated models profiled side by side, e.g. mail,resnet18_late_fusion")
    p.add_argument("--baseline", help="model the ratios are taken against (default: the first one)")
    p.add_argument("--modalities", type=int, default=2, help="number of modalities (and tasks) (default: 2)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    p.add_argument("--in-chans", type=int, default=3, help="channels per modality (default: 3)")
    p.add_argument("--num-classes", type=int, default=2, help="classes per task (default: 2)")
    p.add_argument("--stem", default="auto", choices=["auto", "imagenet", "cifar"])
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (torch.set_num_threads; default: torch's own, i.e. $OMP_NUM_THREADS or the "
                        "core count); printed with the results, since timings depend on it more than on anything")
    p.add_argument("--batch", type=int, default=64, help="training/throughput batch (default: 64)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--iters", type=int, help="timed batch-1 forward passes (default: 20; --quick: 3)")
    p.add_argument("--batch-iters", type=int, help="timed batch forward passes and train steps (default: 3)")
    p.add_argument("--warmup", type=int, help="untimed warm-up calls (default: 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: batch 8, few repetitions")
    p.add_argument("--onnx", metavar="FILE", help="also time an exported ONNX model (onnxruntime, CPU) at the same "
                   "threads and batch (see `mailnet export`)")
    p.add_argument("--json", dest="json_out", help="write every number (and raw timings) to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.commands import require_at_least
    from mailnet.errors import ConfigError
    from mailnet.profiling import compare, format_table
    from mailnet.utils import write_json

    require_at_least(1, ("--iters", args.iters), ("--batch-iters", args.batch_iters), ("--threads", args.threads),
                     ("--modalities", args.modalities), ("--size", args.size), ("--batch", args.batch),
                     ("--in-chans", args.in_chans))
    require_at_least(0, ("--warmup", args.warmup))
    require_at_least(2, ("--num-classes", args.num_classes))  # the timed training step uses cross-entropy
    names = ([args.model] if args.model else []) + [n.strip() for n in (args.compare or "").split(",") if n.strip()]
    shapes = {"modalities": args.modalities, "size": args.size, "in_chans": args.in_chans,
              "num_classes": args.num_classes, "stem": args.stem}
    if args.run:
        if names:
            raise ConfigError("profile: --run profiles the run's own model; leave out --model/--compare")
        names, shapes = trained_model_settings(args.run)
    if not names:
        raise ConfigError("profile: give --model NAME, --compare NAME1,NAME2,... or --run RUN_DIR")
    if args.onnx and not Path(args.onnx).is_file():  # before minutes of profiling, not after
        raise ConfigError(f"--onnx {args.onnx}: no such file")
    quick = args.quick
    batch = args.batch if not quick or args.batch != 64 else 8
    import torch

    threads = torch.get_num_threads() if args.threads is None else args.threads  # checked by ProfileSettings
    onnx_label = check_onnx_graph(args.onnx, shapes, names, args.run) if args.onnx else ""
    settings = {**shapes, "threads": threads, "device": args.device, "batch": batch,
                "latency_iters": args.iters if args.iters is not None else (3 if quick else 20),
                "batch_iters": args.batch_iters if args.batch_iters is not None else (1 if quick else 3),
                "warmup": args.warmup if args.warmup is not None else (1 if quick else 2)}
    rows = compare(names, baseline=args.baseline, **settings)
    print(format_table(rows))
    from mailnet.environment import machine_info

    machine = machine_info(args.device)
    print(f"measured with {threads} CPU thread(s), batch {batch}, on {machine['cpu']} ({machine['cpu_count']} "
          f"logical CPUs), load average {'/'.join(map(str, machine['load_average'] or ['?']))} (1/5/15 min)")
    onnx = None
    if args.onnx:
        from mailnet.export import time_onnx

        onnx = time_onnx(args.onnx, batch=batch, threads=threads, iters=settings["latency_iters"])
        fixed = f"; a fixed-batch graph, timed at batch {onnx['batch']} only" if onnx["batch"] != batch else ""
        print(f"ONNX {args.onnx}{onnx_label} ({onnx['runtime']}, {onnx['threads']} threads): latency "
              f"b{onnx['latency_batch']} {onnx['latency_ms']:.2f} ms, forward b{onnx['batch']} "
              f"{onnx['forward_batch_ms']:.1f} ms, {onnx['samples_per_s']:.1f} samples/s{fixed}")
    if args.json_out:
        options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
        write_json(args.json_out, {"command": "mailnet profile", "options": options, "settings": settings,
                                   "machine": machine, "results": rows, "onnx": onnx})
        print(f"saved {args.json_out}")
    return 0


def trained_model_settings(run: str) -> tuple[list[str], dict]:
    """The model name and profile shapes of a run's (or checkpoint's) model, from its metadata alone."""
    from mailnet.engine.checkpoint import load_checkpoint
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.errors import MailnetError

    ckpt = checkpoint_from(run)
    spec = load_checkpoint(ckpt)[1].get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("kwargs"), dict):
        raise MailnetError(f"{ckpt}: checkpoint metadata has no model description (model.name, model.kwargs)")
    kw = dict(spec["kwargs"])
    chans, classes = list(kw.get("in_chans") or [3, 3]), list(kw.get("num_classes") or [2, 2])
    size = kw.pop("img_size", None) or 28
    shapes = {"modalities": len(chans), "size": int(size if isinstance(size, int) else max(size)), "in_chans": max(chans),
              "num_classes": max(classes), "stem": kw.pop("stem", "auto"), "model_kwargs": kw}
    return [spec["name"]], shapes


def check_onnx_graph(path: str, shapes: dict, names: list[str], run: str | None) -> str:
    """The ONNX graph must be the profiled model: the same inputs, the same registered model (from its metadata),
    and with ``--run`` the same checkpoint file (its hash in the export's card), else the two timings compare two
    different models. Returns the graph's label to print (e.g. a fixed random draw)."""
    import json

    import onnx

    from mailnet.engine.rundir import checkpoint_from
    from mailnet.errors import ConfigError
    from mailnet.export import file_sha256

    check_onnx_inputs(path, shapes)
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    model = props.get("mailnet.model")
    if model is not None and len(names) == 1 and model != names[0]:
        raise ConfigError(f"--onnx {path}: the graph was exported from a {model!r} model, the profiled one is "
                          f"{names[0]!r}")
    card = json.loads(props.get("mailnet.card", "{}"))
    if run and card.get("checkpoint_sha256"):
        if file_sha256(checkpoint_from(run)) != card["checkpoint_sha256"]:
            raise ConfigError(f"--onnx {path}: exported from another checkpoint ({card.get('checkpoint')}) than "
                              f"--run {run}'s; export this run's model to compare the two")
    return f" [{props['mailnet.warning']}]" if props.get("mailnet.warning") else ""


def check_onnx_inputs(path: str, shapes: dict) -> None:
    """The ONNX graph must take the inputs the PyTorch side is profiled with."""
    from mailnet.errors import ConfigError
    from mailnet.export import onnx_session

    chans = (shapes.get("model_kwargs") or {}).get("in_chans") or [shapes["in_chans"]] * shapes["modalities"]
    want = [(int(c), shapes["size"], shapes["size"]) for c in chans]
    got = [tuple(d if isinstance(d, int) else None for d in i.shape[1:]) for i in onnx_session(path, 1).get_inputs()]
    if got != want:
        raise ConfigError(f"--onnx {path}: its inputs (C, H, W) are {got}, the profiled model's {want}; export the "
                          "same model (or profile it with --run RUN_DIR, or matching --modalities/--size/--in-chans)")
