"""``mailnet train``: train a model from a YAML config (with key=value overrides), resume a run, or run seeds."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a config file", description=__doc__)
    p.add_argument("--config", help="YAML config, e.g. configs/pneumonia_breast.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=3")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--run-dir", help="run directory (default: runs/NAME/MODEL/seedS); with --seeds, the folder "
                   "that holds one seedS/ per seed")
    p.add_argument("--seeds", help="comma-separated seeds: one run each, then mean +- std (e.g. 0,1,2); a seed "
                   "already finished in its folder with the same config is reused, so an interrupted job continues")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--data-root", help="folder with the datasets (default: the config's data.root, $MAILNET_DATA, "
                                       "../shared/data, ~/.medmnist)")
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="start from another run's weights (its best checkpoint, or a .safetensors file): tensors of "
                   "the same name and shape are copied, the rest keep their initialisation (model.init_from)")
    p.add_argument("--adv-train", choices=["pgd", "fgsm-rs"], help="adversarial training (Madry PGD or fast FGSM-RS)")
    p.add_argument("--adv-eps", help="adversarial training budget, e.g. 4/255")
    p.add_argument("--adv-steps", type=int, help="PGD steps for adversarial training")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.api import default_run_dir
    from mailnet.config import load_config
    from mailnet.engine import rundir
    from mailnet.engine.report import metrics_table, seeds_summary, seeds_table
    from mailnet.engine.runs import load_config_of
    from mailnet.engine.trainer import train
    from mailnet.errors import ConfigError
    from mailnet.utils import write_json

    progress = not args.quiet
    if args.resume:
        extra = [name for name, given in (("--config", args.config), ("KEY=VALUE overrides", args.overrides),
                                          ("--run-dir", args.run_dir), ("--seeds", args.seeds),
                                          ("--init-from", args.init_from),
                                          ("--adv-train", args.adv_train), ("--adv-eps", args.adv_eps),
                                          ("--adv-steps", args.adv_steps)) if given]
        if extra:  # a resumed run must continue exactly as it started: its saved config is the only config
            raise ConfigError(f"--resume continues a run with the config saved in it; drop {', '.join(extra)}")
        run_dir = Path(args.resume)
        cfg = load_config_of(run_dir)
        if rundir.is_finished(run_dir):
            print(f"{run_dir}: already finished; nothing to resume")
            return 0
        result = train(cfg, run_dir, device=args.device, data_root=args.data_root, resume=True, progress=progress)
        if result:
            print(metrics_table(result, title=f"test metrics ({run_dir})"))
        return 0
    if not args.config:
        raise ConfigError("mailnet train needs --config FILE (or --resume RUN_DIR)")
    overrides = list(args.overrides)
    if args.adv_train:
        overrides.append(f"train.adv.method={args.adv_train}")
    if args.adv_eps:
        overrides.append(f"train.adv.eps={args.adv_eps}")
    if args.adv_steps is not None:
        overrides.append(f"train.adv.steps={args.adv_steps}")
    cfg = load_config(args.config, overrides)
    if args.init_from is not None:  # set as given, not parsed as YAML like an override
        if not args.init_from.strip():
            raise ConfigError("--init-from: give a run directory or a checkpoint file")
        cfg["model"]["init_from"] = args.init_from
    if (args.adv_eps or args.adv_steps is not None) and cfg["train"]["adv"]["method"] is None:
        raise ConfigError("--adv-eps and --adv-steps set adversarial training up, but neither --adv-train nor the "
                          "config (train.adv.method) turns it on; add --adv-train pgd|fgsm-rs")
    seeds = parse_seeds(args.seeds) if args.seeds else [int(cfg["seed"])]
    base = Path(args.run_dir) if args.run_dir else default_run_dir(cfg).parent  # output.dir/NAME/MODEL
    plan = [({**cfg, "seed": seed}, base / f"seed{seed}" if (args.seeds or not args.run_dir) else base)
            for seed in seeds]
    reused = finished_seeds(plan) if args.seeds else {}
    results = []
    for cfg_s, run_dir in plan:
        seed = cfg_s["seed"]
        if seed in reused:
            result = reused[seed]
            print(metrics_table(result, title=f"test metrics, seed {seed} ({run_dir}; finished earlier, reused)"))
            results.append(result)
            continue
        result = train(cfg_s, run_dir, device=args.device, data_root=args.data_root, progress=progress)
        if not result:  # a non-zero rank under torchrun: on to the next seed with rank 0, nothing to print
            continue
        print(metrics_table(result, title=f"test metrics, seed {seed} ({run_dir})"))
        results.append(result)
    if len(seeds) > 1 and results:
        summary = seeds_summary(results)
        write_json(base / "seeds_summary.json", {"seeds": seeds, "summary": summary})
        print(seeds_table(summary, seeds))
    return 0


def finished_seeds(plan: list[tuple[dict, Path]]) -> dict[int, dict]:
    """Before any training: a seed whose folder holds a finished run of this very config is reused (so an
    interrupted ``--seeds`` job continues where it stopped), and any other folder in the way stops the job now,
    not after the earlier seeds have trained for hours. Returns the reused seeds' test metrics."""
    import json

    from mailnet.bench.hashing import result_relevant
    from mailnet.config import complete
    from mailnet.engine import rundir
    from mailnet.engine.runs import load_config_of
    from mailnet.errors import MailnetError

    reused = {}
    for cfg_s, run in plan:
        if not run.exists() or not any(run.iterdir()) or rundir.never_trained(run):
            continue
        if not rundir.is_finished(run):
            raise MailnetError(f"{run}: an unfinished run of seed {cfg_s['seed']}; resume it with `mailnet train "
                               f"--resume {run}`, then run this command again (finished seeds are reused)")
        if result_relevant(load_config_of(run)) != result_relevant(complete(cfg_s)):
            raise MailnetError(f"{run}: finished, but with another config than this command's; choose another "
                               "--run-dir or delete it")
        reused[int(cfg_s["seed"])] = json.loads(rundir.test_metrics_path(run).read_text())
    return reused


def parse_seeds(text: str) -> list[int]:
    """``'0,1,2'`` -> [0, 1, 2]; one line naming the option for anything else."""
    from mailnet.errors import ConfigError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct non-negative integers such as 0,1,2, got {text!r}")
    return seeds
