"""One module per CLI sub-command; each defines ``add_parser(subparsers)`` and ``run(args) -> int``.

``mailnet.cli`` imports the modules listed in ``COMMANDS``; a command's heavy imports stay inside ``run``.
"""

COMMANDS: tuple[str, ...] = ("data", "train", "evaluate", "predict", "attack", "profile", "export", "bench")


def require_at_least(minimum: float, *options: tuple[str, float | None]) -> None:
    """One line naming the option for a count or size below ``minimum`` (``None``: not given, nothing to check).

    Why here: argparse's ``type=int`` accepts 0 and negatives, which would otherwise surface later as a NaN or an
    IndexError far from the option that caused it."""
    from mailnet.errors import ConfigError

    for name, value in options:
        if value is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum:g}, got {value:g}")
