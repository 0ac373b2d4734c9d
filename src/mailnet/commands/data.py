"""``mailnet data``: see which datasets a data root holds, and fetch MedMNIST files."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="describe or download datasets", description=__doc__)
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    d = sub.add_parser("describe", help="table of the datasets found (split sizes, classes, task types, channels)")
    d.add_argument("flags", nargs="*", metavar="FLAG", help="MedMNIST flags (default: every one present)")
    d.add_argument("--data-root", default=None, help="data folder (default: $MAILNET_DATA, ../shared/data, ~/.medmnist)")
    d.add_argument("--size", type=int, action="append", default=None, help="only these sizes (28/64/128/224)")
    d.add_argument("--config", default=None, help="describe the composed data of a YAML config's 'data:' section")
    d.add_argument("--seed", type=int, default=0, help="pairing seed used with --config")
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d.add_argument("--decode", action="store_true",
                   help="with --config: decode every image file's pixels (headers are always checked), so a "
                        "truncated or corrupt file is found now rather than when training reaches it")
    d.set_defaults(func=run)

    g = sub.add_parser("download", help="download a MedMNIST file through the medmnist package")
    g.add_argument("flag", metavar="FLAG")
    g.add_argument("--size", type=int, default=28, help="28, 64, 128 or 224 (default 28)")
    g.add_argument("--data-root", default=None, help="where to put it (as root/FLAG/FILE)")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.paths import resolve_data_root

    root = resolve_data_root(args.data_root)
    if args.data_command == "download":
        from mailnet.data.download import download_medmnist

        path = download_medmnist(args.flag, args.size, root)
        print(f"{args.flag} ({args.size} px): {path}")
        return 0
    if args.config:
        ignored = [name for name, given in (("FLAG arguments", args.flags), ("--size", args.size)) if given]
        if ignored:  # the config's data section decides what is read; silently dropping them would mislead
            from mailnet.errors import ConfigError

            raise ConfigError(f"--config describes the config's own data; drop {', '.join(ignored)} ("
                              f"{' '.join(map(str, args.flags or args.size))}), or edit the config's data section")
        return _describe_config(args, root)
    if args.decode:
        from mailnet.errors import ConfigError

        raise ConfigError("--decode: decodes the files of a config's data; give it with --config C.yaml")
    from mailnet.data.describe import describe_root, format_table
    from mailnet.errors import DataError

    rows = describe_root(root, args.flags or None, args.size)
    if not rows:
        if args.size or args.flags:  # files may be there, just not of that size or flag: say what is
            present = describe_root(root, None, None)
            if present:
                have = sorted({f"{r['dataset']} ({r['size']} px)" for r in present})
                asked = " ".join([*(args.flags or []), *(f"--size {z}" for z in args.size or [])])
                raise DataError(f"no MedMNIST file under {root} matches {asked}; found: {', '.join(have)}")
        raise DataError(f"no MedMNIST .npz files found under {root} (expected e.g. {root}/pneumoniamnist/pneumoniamnist.npz); "
                        "set --data-root or $MAILNET_DATA, or run `mailnet data download FLAG`")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"data root: {root}")
    print(format_table(rows, [("dataset", "dataset"), ("size", "px"), ("channels", "ch"), ("task_type", "task"),
                              ("num_classes", "classes"), ("train", "train"), ("val", "val"), ("test", "test"),
                              ("class_names", "class names")]))
    return 0


def _decode_all(data) -> None:
    """Every file listed, and a one-line error naming how many failed, before any table is printed."""
    import sys

    from mailnet.errors import DataError

    total, errors = data.undecodable_files()
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        raise DataError(f"{len(errors)} of {total} image files cannot be decoded (each listed above with its "
                        "error); replace or remove them, or drop their rows from the CSV")
    print(f"decoded {total} image files: all readable" if total else "no image files to decode (array datasets)")


def _describe_config(args: argparse.Namespace, root) -> int:
    from pathlib import Path

    import yaml

    from mailnet.config import load_yaml
    from mailnet.data import build_data
    from mailnet.data.describe import format_table
    from mailnet.errors import ConfigError

    path = Path(args.config)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        cfg = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(cfg, dict) or "data" not in cfg:
        raise ConfigError(f"{path}: no 'data:' section")
    data = build_data(cfg["data"], data_root=args.data_root, seed=args.seed)
    if args.decode:
        _decode_all(data)
    desc = data.describe()
    if args.json:
        print(json.dumps(desc, indent=2))
        return 0
    rows = []
    for mod, task in zip(desc["modalities"], desc["tasks"]) if not data.paired else []:
        rows.append({**mod, **{k: v for k, v in task.items() if k not in ("name", "splits")}, **mod["splits"]})
    equalize = "" if data.paired else f"  equalize: {desc['equalize']}"  # paired rows are never equalised
    print(f"mode: {desc['mode']}{equalize}  seed: {desc['seed']}  rows per pass: {desc['rows_per_pass']}")
    if rows:
        print(format_table(rows, [("name", "modality"), ("ident", "source"), ("in_chans", "ch"), ("img_size", "px"),
                                  ("task_type", "task"), ("num_classes", "classes"), ("train", "train"),
                                  ("val", "val"), ("test", "test"), ("class_names", "class names")]))
    else:
        print(format_table([{**m, **m["splits"]} for m in desc["modalities"]],
                           [("name", "modality"), ("ident", "source"), ("in_chans", "ch"), ("img_size", "px"),
                            ("train", "train"), ("val", "val"), ("test", "test")]))
        print(format_table(desc["tasks"], [("name", "task"), ("task_type", "type"), ("num_classes", "classes"),
                                           ("class_names", "class names")]))
    return 0
