"""``python -m codecloss``: the command line, also under ``torchrun -m codecloss``."""

import sys

from codecloss.cli import main

if __name__ == "__main__":
    sys.exit(main())
