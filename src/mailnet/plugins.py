"""Your own models (or anything else that registers itself) made visible to the ``mailnet`` command.

A model registered with ``@register_model`` in your module exists only once that module is imported; the command
line imports the modules named by ``mailnet --import MODULE`` and by ``$MAILNET_IMPORT`` (comma-separated), so
``train``, ``evaluate``, ``attack``, ``bench`` and ``torchrun`` workers all see the same registry.
"""
from __future__ import annotations

import importlib
import os

from mailnet.errors import ConfigError

ENV = "MAILNET_IMPORT"


def modules_to_import(given: list[str] | None = None) -> list[str]:
    """``given`` (from ``--import``) then those of ``$MAILNET_IMPORT``, each once, in order."""
    env = [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    return list(dict.fromkeys([*(given or []), *env]))


def import_modules(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # the module itself is missing, not one of its own imports
                raise ConfigError(f"--import / ${ENV}: no module named {name!r} (install it, or put its folder on "
                                  "PYTHONPATH)") from None
            raise
