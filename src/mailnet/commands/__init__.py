"""One module per CLI sub-command; each defines ``add_parser(subparsers)`` and ``run(args) -> int``.

``mailnet.cli`` imports the modules listed in ``COMMANDS``; a command's heavy imports stay inside ``run``.
"""

COMMANDS: tuple[str, ...] = ("data", "train", "evaluate", "predict", "attack", "profile", "export", "bench")
