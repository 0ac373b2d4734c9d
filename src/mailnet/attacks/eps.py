"""Epsilon parsing and per-modality budgets.

Users write budgets the way papers do (``4/255``) or as plain pixel fractions (``0.0157``); an attack list on the
command line is in /255 units (``--eps 1,2,4,8``, so there ``0.5`` is half a grey level and a pixel fraction must be
written ``4/255``). Everything inside the library is a float in [0, 1] pixel units.
"""
from __future__ import annotations

import warnings
from typing import Sequence

from mailnet.errors import ConfigError, MailnetWarning

# A bare /255 budget below this is far under one grey level: most likely a pixel fraction (0.0157 for 4/255)
# written where /255 units are read, which would attack 255 times more weakly than meant.
TINY_255 = 0.1


def parse_eps(text: str | float | int, unit_255: bool = False, where: str = "eps") -> float:
    """One budget as a pixel fraction.

    ``'4/255'`` -> 4/255 (any ``a/b``). A bare number is in /255 units when ``unit_255`` is set (the attack CLI's
    list) and otherwise a pixel fraction, except that a value >= 1 can only mean /255 units (an L-inf budget of a
    whole pixel range is meaningless), so ``'4'`` -> 4/255 and ``'0.0157'`` -> 0.0157.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        value = value / 255.0 if (unit_255 or value >= 1) else value
    else:
        s = str(text).strip()
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(s)
                if unit_255 and 0 < value < TINY_255:
                    warnings.warn(f"{where}: {s} is read in /255 units, i.e. {s}/255 = {value / 255:.2g} of the "
                                  f"pixel range; for a pixel fraction write it as a fraction of 255, e.g. "
                                  f"{value * 255:.3g}/255", MailnetWarning, stacklevel=3)
                if unit_255 or value >= 1:
                    value /= 255.0
        except (ValueError, ZeroDivisionError):
            hint = "4/255 or 4 (bare numbers are /255 units here)" if unit_255 else "4/255, 0.0157 or 4"
            raise ConfigError(f"{where}: cannot read {text!r} as an epsilon (use e.g. {hint})") from None
    if not (0.0 <= value <= 1.0) or value != value:
        whole = " (more than the whole pixel range, 255/255)" if value == value and value > 1 else ""
        raise ConfigError(f"{where}: epsilon {text!r} is outside [0, 1] pixel units{whole}")
    return value


def parse_eps_list(text: str | Sequence[str | float], unit_255: bool = True, where: str = "--eps") -> list[float]:
    """A comma-separated list (``'1,2,4,8'`` -> [1/255, 2/255, 4/255, 8/255]); bare numbers are /255 units."""
    items = [t for t in (text.split(",") if isinstance(text, str) else list(text))]
    items = [t.strip() if isinstance(t, str) else t for t in items]
    items = [t for t in items if t != ""]
    if not items:
        raise ConfigError(f"{where}: empty epsilon list")
    return [parse_eps(t, unit_255=unit_255, where=where) for t in items]


def per_modality(eps: float | Sequence[float], n_modalities: int, where: str = "eps") -> list[float]:
    """Broadcast one budget to every modality, or check a per-modality list (0 = that modality stays clean)."""
    def one(e: str | float) -> float:  # '8/255' as the command line and suites write it
        return parse_eps(e, where=where) if isinstance(e, str) else float(e)

    if isinstance(eps, (int, float, str)):
        out = [one(eps)] * n_modalities
    else:
        out = [one(e) for e in eps]
        if len(out) != n_modalities:
            raise ConfigError(f"{where}: {len(out)} per-modality budgets given for {n_modalities} modalities")
    if any(not 0 <= e <= 1 for e in out):  # also NaN: it would leave every image unperturbed
        raise ConfigError(f"{where}: budgets must lie in [0, 1] (a number in pixel units, e.g. 4/255, or the "
                          f"string '4' for 4/255), got {out}")
    return out


def eps_to_255(eps: float) -> float:
    """For tables and file names: 0.01568... -> 4.0."""
    return round(eps * 255.0, 4)
