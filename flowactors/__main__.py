"""``python -m flowactors``: the ``flowactors`` command."""

import sys

from flowactors.cli import main

if __name__ == "__main__":
    sys.exit(main())
