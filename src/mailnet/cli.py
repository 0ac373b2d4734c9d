"""The ``mailnet`` command: a thin dispatcher over ``mailnet.commands`` (each command adds its own sub-parser)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from mailnet import __version__
from mailnet.commands import COMMANDS
from mailnet.errors import MailnetError, MailnetWarning
from mailnet.plugins import import_modules, modules_to_import

DESCRIPTION = ("MAIL and Robust-MAIL for multimodal medical image classification: train, evaluate, predict, attack, "
               "profile, export and benchmark.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailnet", description=DESCRIPTION,
                                     epilog="Run 'mailnet COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"mailnet {__version__}")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import a module of yours first, so the models it registers can be named (repeatable; "
                             "also $MAILNET_IMPORT, comma-separated)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mailnet.commands.{name}").add_parser(sub)
    _plain_help(parser)
    return parser


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """The commands' descriptions are their module docstrings, written for Sphinx; a terminal shows ``x`` as 'x'."""
    parser.description = parser.description and parser.description.replace("``", "'")
    for action in parser._actions:
        if action.help:
            action.help = action.help.replace("``", "'")
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _plain_help(child)


def _format_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning) -> str:
    """Our own warnings in one line, like the errors; other libraries' warnings keep their usual form."""
    if issubclass(category, MailnetWarning):
        return f"mailnet: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides after an option (``train.epochs=1 --quiet train.lr=0.1``) belong to the rest
        if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-")
                                                                       for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        import_modules(modules_to_import(args.imports))
        return int(args.func(args) or 0)
    except MailnetError as e:
        print(f"mailnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mailnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mailnet ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
