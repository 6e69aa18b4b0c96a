"""``python -m rnnkit ...``: the ``rnnkit`` command, also as ``torchrun -m rnnkit train ...``.

Example (a shell):
    python -m rnnkit train --task reber --steps 200
    torchrun --nproc-per-node 2 -m rnnkit train --task text --time-budget 5m
"""
import sys

from rnnkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
