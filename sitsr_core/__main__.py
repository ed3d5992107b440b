"""``python -m sitsr_core``: the ``sitsr`` command (:func:`sitsr_core.cli.main`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
