"""``python -m mailnet ...``: the ``mailnet`` command, for environments without the console script on PATH (and
``torchrun -m mailnet train ...``)."""
import sys

from mailnet.cli import main

sys.exit(main())
