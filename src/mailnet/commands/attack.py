"""``mailnet attack``: clean and robust accuracy of a trained run under white-box attacks, with sanity checks.

Budgets are given in /255 units (``--eps 1,2,4,8``, ``0.5`` is half a grey level; ``4/255`` is read as written). Results go to
``OUT/attack_<split>.{json,csv,png}`` (default OUT: ``RUN_DIR/attack``); the JSON records every setting, the
attacked subset's sample indices and the sanity checks. Interrupted (Ctrl-C, or SIGTERM from ``timeout`` or a batch
scheduler), it writes the budgets that finished, marked ``"interrupted": true``, and exits with status 130;
``--resume`` then continues it: the same command plus ``--resume`` keeps every finished attack unit (each is seeded
on its own, so the numbers equal an uninterrupted run's) if the settings and the checkpoint's weights are the same.
An earlier result in the output folder is never replaced silently: add ``--resume`` or ``--overwrite``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_EOT = 20  # EOT draws per step when --eot is not given (only random models use them)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="adversarial robustness of a run (PGD, AutoAttack, reference protocol)",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--attack", default="pgd,autoattack,reference",
                   help="comma list from: pgd, autoattack, reference, fgsm, bim, mim, transfer, square (default: "
                        "%(default)s)")
    p.add_argument("--eps", default="1,2,4,8", help="budgets in /255 units, comma separated (default: %(default)s)")
    p.add_argument("--eps-ratio", help="per-modality budget multipliers, e.g. 1,0.5 (default: 1 for all)")
    p.add_argument("--steps", type=int, default=50, help="PGD/BIM/MIM steps (default: %(default)s)")
    p.add_argument("--restarts", type=int, default=2, help="PGD random restarts (default: %(default)s)")
    p.add_argument("--eot", type=int, help=f"EOT draws per step for random models (default: {DEFAULT_EOT})")
    p.add_argument("--threat", default="joint", help="joint, each, or joint,each (default: %(default)s)")
    p.add_argument("--loss", default="ce", choices=["ce", "dlr"], help="PGD/FGSM/BIM/MIM loss (default: ce)")
    p.add_argument("--objective", default="per-task", choices=["per-task", "summed"],
                   help="gradient attacks: each head on its own rows (default), or the loss summed over heads "
                        "(the reference protocol always sums)")
    p.add_argument("--alpha-ratio", type=float, default=2.5, help="PGD step = ratio * eps / steps (default: 2.5)")
    p.add_argument("--aa-version", default="rand", choices=["rand", "standard"],
                   help="AutoAttack version: rand = APGD-CE + APGD-DLR with EOT (default); standard is slow on CPU")
    p.add_argument("--aa-steps", type=int, default=100, help="APGD iterations (default: %(default)s)")
    p.add_argument("--square-queries", type=int, default=1000,
                   help="square attack: proposals per row, each scored over the --eot draws on a random model "
                        "(default: %(default)s)")
    p.add_argument("--eval-draws", type=int, default=1,
                   help="forward passes averaged when scoring (default: 1); for a random model use 8 or more: "
                   "Robust-MAIL's random filters are drawn once per forward pass for a whole batch, so one pass's "
                   "errors are correlated across rows, more than the sanity checks' allowance for noise (which "
                   "treats rows as independent) assumes")
    p.add_argument("--subset", type=int, default=200, help="rows per task attacked, 0 = all (default: %(default)s)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the subset and of eval partners (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of random starts and the model's noise (default: 0)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--which", default="best", choices=["best", "last"], help="checkpoint of the run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root")
    p.add_argument("--no-fast", action="store_true",
                   help="use MAIL's reference modules (default: its fast modules, the same function)")
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity probes (checks on the table still run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the per-budget lines are still printed)")
    p.add_argument("--transfer-from", metavar="RUN_DIR",
                   help="source of the 'transfer' attack: another run on the same data (default: the attacked model "
                        "itself, see --transfer-surrogate)")
    # the keys of mailnet.attacks.transfer.SURROGATES, written out so that the CLI starts without importing torch
    p.add_argument("--transfer-surrogate", choices=("frozen-draw", "expectation"), default="frozen-draw",
                   help="without --transfer-from, the attacked model made deterministic for the 'transfer' attack: "
                        "one draw of its randomness frozen (default), or every random variable at its expected "
                        "value (RPF kernels 0, MC-dropout masks their mean, attention noise its mean)")
    p.add_argument("--no-carry-over", action="store_true",
                   help="attack every row at every budget; default for deterministic models: only rows still robust "
                        "(clean-correct, unbroken at smaller budgets), i.e. the worst case over budgets <= eps")
    p.add_argument("--out", help="output folder (default: RUN_DIR/attack)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted attack written in the output folder (same settings, same weights)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier attack result in the output folder (default: refuse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    eot_asked = args.eot is not None
    args.eot = DEFAULT_EOT if args.eot is None else args.eot  # resolved before the settings are recorded
    import sys
    import time

    import torch

    from mailnet.attacks.eps import eps_to_255, parse_eps_list
    from mailnet.attacks.report import attack_settings, text_table, write_results
    from mailnet.attacks.sanity import failures, run_sanity
    from mailnet.attacks.subset import select_subset, stack_batches, subset_ids
    from mailnet.attacks.suite import ATTACKS, THREATS, SuiteSettings, run_suite
    from mailnet.attacks.transfer import SURROGATES
    from mailnet.commands import require_at_least
    from mailnet.engine.randomness import reseed
    from mailnet.engine.runs import load_run
    from mailnet.engine.trainer import resolve_device
    from mailnet.errors import ConfigError

    attacks = [a.strip() for a in args.attack.split(",") if a.strip()]
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ConfigError(f"--attack: unknown attack(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ATTACKS)}")
    threats = [t.strip() for t in args.threat.split(",") if t.strip()]
    if not threats or any(t not in THREATS for t in threats):
        raise ConfigError(f"--threat: {args.threat!r}; choose joint, each or joint,each")
    eps_list = parse_eps_list(args.eps, unit_255=True, where="--eps")
    ratio = None
    if args.eps_ratio:
        try:
            ratio = [float(v) for v in args.eps_ratio.split(",")]
        except ValueError:
            raise ConfigError(f"--eps-ratio: cannot read {args.eps_ratio!r} as numbers") from None
        if any(not 0 <= r <= 1 / max(eps_list) for r in ratio):
            raise ConfigError(f"--eps-ratio: multipliers must lie in [0, {1 / max(eps_list):g}] (so that every "
                              f"budget stays within [0, 1] pixels), got {args.eps_ratio!r}")
        check_ratio(ratio, threats, args.eps_ratio)
    check_distinct(eps_list)
    require_at_least(1, ("--steps", args.steps), ("--restarts", args.restarts), ("--eot", args.eot),
                     ("--aa-steps", args.aa_steps), ("--square-queries", args.square_queries),
                     ("--eval-draws", args.eval_draws),
                     ("--batch-size", args.batch_size))
    require_at_least(0, ("--subset", args.subset))
    if not args.alpha_ratio > 0:
        raise ConfigError(f"--alpha-ratio must be > 0, got {args.alpha_ratio:g}")
    if args.transfer_surrogate != "frozen-draw" and (args.transfer_from or "transfer" not in attacks):
        raise ConfigError("--transfer-surrogate chooses the 'transfer' attack's source when --transfer-from is not "
                          "given: " + ("drop one of the two" if args.transfer_from else "add 'transfer' to --attack"))

    run_dir = Path(args.run_dir)
    out_dir = Path(args.out) if args.out else run_dir / "attack"
    check_output(out_dir, f"attack_{args.split}", resume=args.resume, overwrite=args.overwrite)
    device = resolve_device(args.device)
    model, data, cfg = load_run(run_dir, which=args.which, device=device, data_root=args.data_root)
    from mailnet.models.fast import FAST_CLASSES, is_fast, to_fast, to_reference

    if args.no_fast and is_fast(model):
        to_reference(model)
    elif not args.no_fast and any(type(m) in FAST_CLASSES for m in model.modules()):
        to_fast(model)  # same outputs and input gradients (checked to 1e-6), about 2x faster on CPU
    fast = is_fast(model)
    source = None
    if args.transfer_from:
        if "transfer" not in attacks:
            raise ConfigError("--transfer-from is the source of the 'transfer' attack; add it to --attack")
        from mailnet.attacks.transfer import check_compatible

        source, source_data, _ = load_run(Path(args.transfer_from), which=args.which, device=device,
                                          data_root=args.data_root)
        if [t.name for t in source_data.tasks] != [t.name for t in data.tasks]:
            raise ConfigError(f"--transfer-from {args.transfer_from}: its tasks "
                              f"{[t.name for t in source_data.tasks]} differ from {[t.name for t in data.tasks]}")
        check_compatible(source, model)
        if not args.no_fast and any(type(m) in FAST_CLASSES for m in source.modules()):
            to_fast(source)
    rows = stack_batches(data.loader(args.split, args.batch_size, partner_seed=args.subset_seed))
    rows = select_subset(rows, args.subset, seed=args.subset_seed).to(device)
    tasks = [t.name for t in data.tasks]
    modalities = [m.name for m in data.modalities]
    if ratio is not None and len(ratio) != len(modalities):
        raise ConfigError(f"--eps-ratio: {len(ratio)} values for {len(modalities)} modalities "
                          f"({', '.join(modalities)})")
    settings = SuiteSettings(steps=args.steps, restarts=args.restarts, eot=args.eot, loss=args.loss,
                             objective=args.objective,
                             alpha_ratio=args.alpha_ratio, aa_version=args.aa_version, aa_steps=args.aa_steps,
                             square_queries=args.square_queries,
                             eval_draws=args.eval_draws, seed=args.seed, batch_size=args.batch_size,
                             eps_ratio=ratio, sanity=not args.no_sanity,
                             carry_over=not args.no_carry_over,
                             transfer_source=args.transfer_from or SURROGATES[args.transfer_surrogate])
    from mailnet.engine import rundir
    from mailnet.engine.checkpoint import tensors_fingerprint

    fingerprint = tensors_fingerprint(rundir.checkpoint_from(run_dir, args.which))
    identity = {"run_dir": str(run_dir), "checkpoint": args.which, "split": args.split, "attacks": attacks,
                "eps_255": [eps_to_255(e) for e in eps_list], "threats": threats,
                "settings": {**settings.to_dict(), "subset": args.subset, "subset_seed": args.subset_seed}}
    done = resumed_records(out_dir / f"attack_{args.split}.json", identity, fingerprint) if args.resume else None
    deterministic = not model_is_random(model, rows)
    reseed(model, args.seed)
    start = time.perf_counter()
    import signal

    def _terminated(signum, frame):  # SIGTERM (timeout, schedulers) ends the run like Ctrl-C: results are kept
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminated)
    print(f"attacking {run_dir} ({cfg['model']['name'] if isinstance(cfg.get('model'), dict) else ''}) on "
          f"{args.split}: {len(rows)} rows, counted per task "
          + ", ".join(f"{t}={n}" for t, n in zip(tasks, rows.counted())))
    if deterministic and eot_asked and args.eot > 1:  # said when asked for, not for the default
        print(f"note: the model is deterministic: --eot {args.eot} has no effect, 1 pass per step is used")
    if ratio is not None:
        print(budget_line(eps_list, ratio, modalities))
    try:
        result = run_suite(model, rows, attacks, eps_list, threats, settings, task_names=tasks,
                           modality_names=modalities, log=lambda s: print(s, flush=True), source=source,
                           progress=not args.quiet, allow_partial=True, done=done)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if done is not None:
        print(f"resumed: {result.reused} finished attack unit(s) reused from "
              f"{out_dir / f'attack_{args.split}.json'}; the rest were run now")
    checks = run_sanity(result.records, result.gradient_agreement)
    failed = failures(checks)
    payload = {
        **identity, "device": str(device), "weights_sha256": fingerprint,
        "model": cfg.get("model"), "random_model": result.random_model, "interrupted": result.interrupted,
        "settings": {**identity["settings"], "eot_used": settings.eot if result.random_model else 1,
                     "fast_modules": fast},
        "subset_indices": dict(zip(tasks, subset_ids(rows.to("cpu")))),
        "clean": result.clean, "records": result.records, "gradient_agreement": result.gradient_agreement,
        "sanity": {"passed": not failed, "checks": [c.to_dict() for c in checks]},
        "seconds": round(time.perf_counter() - start, 2), "torch": torch.__version__,
    }
    model_name = cfg["model"].get("name", "?") if isinstance(cfg.get("model"), dict) else "?"
    title = f"{model_name} ({run_label(run_dir)}): {args.split}; {attack_settings(result.records)}"
    paths = write_results(out_dir, f"attack_{args.split}", payload, result.records, result.clean, title=title,
                          interrupted=result.interrupted)
    print(text_table(result.records, result.clean))
    for c in failed:
        print(f"WARNING: sanity check failed: {c.name}: {c.detail}", file=sys.stderr, flush=True)
    if checks:
        print(f"sanity checks: {len(checks) - len(failed)}/{len(checks)} passed")
    else:  # "0/0 passed" would read as a clean bill
        print("sanity checks: none ran (" + ("--no-sanity skips the probes, and " if args.no_sanity else "")
              + "this table has no pair of results to compare: add budgets or attacks)")
    print("written: " + ", ".join(str(p) for p in paths.values()))
    if result.interrupted:
        print("interrupted: the results above are partial (the budgets that finished; no sanity probes); "
              "rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    return 0


def resumed_records(path: Path, identity: dict, fingerprint: str) -> list[dict]:
    """The finished units of the interrupted attack stored at ``path``, after checking that it is this very
    attack: same run, checkpoint, split, attacks, budgets, threats and settings, and the same weights."""
    import json

    from mailnet.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"--resume: {path} not found (nothing to resume; run without --resume)")
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {path} is not a readable attack result ({e})") from None
    if not isinstance(old, dict) or not isinstance(old.get("records"), list):
        raise ConfigError(f"--resume: {path} is not a mailnet attack result (no records)")
    if not old.get("interrupted"):
        raise ConfigError(f"--resume: {path} is a finished attack, not an interrupted one (nothing to resume)")
    if old.get("weights_sha256") != fingerprint:
        raise ConfigError(f"--resume: {path} was computed on other weights than {identity['run_dir']}'s "
                          f"{identity['checkpoint']} checkpoint")
    diff = identity_diff(old, identity)
    if diff:
        raise ConfigError(f"--resume: settings differ from the stored run's: {', '.join(diff)} ({path}); rerun with "
                          "the interrupted attack's options, or without --resume")
    return old["records"]


def _show(value: object) -> str:
    """A stored setting as a user typed it: lists comma-joined, numbers without trailing zeros."""
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def identity_diff(old: dict, identity: dict) -> list[str]:
    """``key stored -> now`` for each setting that differs (settings compared key by key), so a mismatch error
    names what changed instead of printing two whole dicts."""
    out = []
    for key, value in identity.items():
        if key == "settings":
            stored = old.get(key) if isinstance(old.get(key), dict) else {}
            out += [f"{k} {_show(stored.get(k, '(none)'))} -> {_show(v)}" for k, v in value.items()
                    if stored.get(k) != v]
        elif old.get(key) != value:
            out.append(f"{key} {_show(old.get(key, '(none)'))} -> {_show(value)}")
    return out


def check_ratio(ratio: list[float], threats: list[str], text: str) -> None:
    """A multiplier of 0 leaves its modality clean: all zeros (or one modality attacked alone at 0 under
    ``--threat each``) would report a 'robust' accuracy of an unperturbed input."""
    from mailnet.errors import ConfigError

    if all(r == 0 for r in ratio):
        raise ConfigError(f"--eps-ratio: every multiplier is 0 in {text!r}, so no modality would be perturbed")
    if "each" in threats and any(r == 0 for r in ratio):
        raise ConfigError(f"--eps-ratio: a multiplier of 0 in {text!r} with --threat each attacks that modality "
                          "with no perturbation; give it a multiplier > 0 or use --threat joint")


def check_distinct(eps_list: list[float]) -> None:
    """A repeated budget would be attacked twice (and its rows shown twice)."""
    from mailnet.attacks.eps import eps_to_255
    from mailnet.errors import ConfigError

    seen: set[float] = set()
    for e in eps_list:
        if eps_to_255(e) in seen:
            raise ConfigError(f"--eps: budget {eps_to_255(e):g}/255 is given more than once; list each budget once")
        seen.add(eps_to_255(e))


def check_output(out_dir: Path, stem: str, resume: bool, overwrite: bool) -> None:
    """Refuse to replace an earlier result unasked: a new attack interrupted at once would otherwise leave an empty
    result where a complete one was."""
    from mailnet.errors import ConfigError

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the stored attack, or replace it")
    if resume or overwrite:
        return
    for ext in ("json", "csv", "png"):
        path = out_dir / f"{stem}.{ext}"
        if path.exists():
            raise ConfigError(f"{path} already exists: add --resume to continue an interrupted attack, or "
                              "--overwrite to replace it (or choose another --out)")


def model_is_random(model, rows) -> bool:
    """The suite's own test (two forward passes on a few rows), run up front so a note can say before the attacks
    start that ``--eot`` does not apply; the suite reseeds everything afterwards."""
    from mailnet.attacks.eot import attack_mode, is_random

    with attack_mode(model):
        return is_random(model, rows.take(slice(0, 8)).images)


def budget_line(eps_list: list[float], ratio: list[float], modalities: list[str]) -> str:
    """The budgets each modality really gets under ``--eps-ratio`` (the per-budget lines show the nominal one)."""
    from mailnet.attacks.eps import eps_to_255

    parts = [f"{eps_to_255(e):g} -> " + ", ".join(f"{m} {eps_to_255(e * r):g}" for m, r in zip(modalities, ratio))
             for e in eps_list]
    return "per-modality budgets (/255) with --eps-ratio: " + "; ".join(parts)


def run_label(run_dir: Path) -> str:
    """``experiment/seed0`` rather than just ``seed0``: the folder names that tell runs apart in a plot title."""
    resolved = run_dir.resolve()
    return f"{resolved.parent.name}/{resolved.name}" if resolved.parent.name else resolved.name
