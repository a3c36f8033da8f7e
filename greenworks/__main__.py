"""``python -m greenworks``: the same command line as ``greenworks`` (see :mod:`greenworks.cli`)."""

import sys

from greenworks.cli import main

if __name__ == "__main__":
    sys.exit(main())
