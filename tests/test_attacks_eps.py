"""Budgets in /255 units on the command line: a pixel fraction written there (0.0157 for 4/255) would attack 255
times more weakly than meant and report a model as robust; it is read as written but said loudly."""
from __future__ import annotations

import warnings

import pytest

from mailnet.attacks.eps import parse_eps, parse_eps_list
from mailnet.errors import ConfigError, MailnetWarning


def test_a_pixel_fraction_written_in_255_units_is_warned_about_with_the_fix():
    with pytest.warns(MailnetWarning, match=r"--eps: 0.0157 is read in /255 units, i.e. 0.0157/255 = 6.2e-05 of the "
                                            r"pixel range; .* e.g. 4/255"):
        assert parse_eps_list("0.0157", where="--eps") == pytest.approx([0.0157 / 255])
    with warnings.catch_warnings():  # half a grey level is a real budget, and pixel fractions outside /255 mode are fine
        warnings.simplefilter("error")
        assert parse_eps_list("0.5,1") == pytest.approx([0.5 / 255, 1 / 255])
        assert parse_eps("0.0157") == pytest.approx(0.0157)


def test_unreadable_or_too_large_budgets_say_which_units_are_read():
    with pytest.raises(ConfigError, match=r"--eps: cannot read 'abc' as an epsilon \(use e.g. 4/255 or 4 \(bare "):
        parse_eps_list("abc", where="--eps")
    with pytest.raises(ConfigError, match=r"outside \[0, 1\] pixel units \(more than the whole pixel range"):
        parse_eps_list("300", where="--eps")
