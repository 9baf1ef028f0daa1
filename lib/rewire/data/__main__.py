"""``python -m rewire.data``: see :mod:`rewire.data.cli`."""

import sys

from rewire.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
