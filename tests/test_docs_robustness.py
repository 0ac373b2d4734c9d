"""docs/robustness.md is true to the code: every command on the page parses with mailnet's own parser (no option
that was renamed or never existed), and its table of sanity checks names exactly the checks that run."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

import mailnet.attacks.sanity as sanity
from mailnet.cli import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"


def page_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines()
            if line.startswith("mailnet ")]


def test_the_page_has_the_commands_it_describes():
    commands = page_commands()
    assert sum(c[0] == "attack" for c in commands) >= 4 and sum(c[0] == "train" for c in commands) == 2


def test_every_option_the_prose_names_exists():
    """Options named in the text (not only in the commands) are options of ``mailnet attack`` or ``train``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known = {o for name in ("attack", "train") for a in sub.choices[name]._actions for o in a.option_strings}
    named = set(re.findall(r"`(--[a-z][a-z-]*)", DOC.read_text(encoding="utf-8")))
    assert len(named) >= 10 and named <= known, sorted(named - known)


@pytest.mark.parametrize("argv", page_commands(), ids=lambda a: " ".join(a[:3]))
def test_every_command_on_the_page_parses(argv, capsys):
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"the page's command does not parse: mailnet {' '.join(argv)}: {capsys.readouterr().err}")
    assert not extra, f"unknown options on the page: {extra}"
    if args.command == "attack":  # values the command checks itself, after parsing
        from mailnet.attacks.eps import parse_eps_list
        from mailnet.attacks.suite import ATTACKS

        assert set(args.attack.split(",")) <= set(ATTACKS)
        assert parse_eps_list(args.eps)


def test_the_sanity_check_table_names_every_check_and_no_other():
    text = DOC.read_text(encoding="utf-8")
    table = re.search(r"\| check \| what a failure means \|\n\| --- \| --- \|\n((?:\|.*\n)+)", text).group(1)
    on_page = {row.split("|")[1].strip() for row in table.splitlines()}
    in_code = set(re.findall(r'Check\("([^"]+)"', Path(sanity.__file__).read_text(encoding="utf-8")))
    assert on_page == in_code
