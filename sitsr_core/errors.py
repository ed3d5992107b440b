"""Project exceptions.

User errors (bad files, bad arguments) raise :class:`SitsrInputError` or a
subclass; every entry point (``sitsr`` and each ``python -m`` module) prints their one-line
message and exits with status 2 through :func:`exit_status`.
A run stopped by SIGINT after saving its state raises :class:`SitsrInterrupted`;
the entry point prints its message and exits with status 130.
Programming errors keep their ordinary traceback.
"""

from __future__ import annotations

import sys
from typing import Callable


class SitsrInputError(ValueError):
    """A user-facing input error: names the file/argument and the cause."""


class SitsrDataError(SitsrInputError):
    """A data file has the wrong content (missing variable, grid, units...)."""


class SitsrConfigError(SitsrInputError):
    """An inconsistent configuration, checkpoint or command-line option."""


class SitsrInterrupted(KeyboardInterrupt):
    """A long run stopped on SIGINT after saving its state; the message says how to continue."""


def exit_status(prog: str, run: Callable[[], object]) -> int:
    """Call ``run()`` for an entry point and return its exit status: the one error -> exit rule.

    0 on success; a :class:`SitsrInputError` (or subclass) prints ``PROG: error: MESSAGE`` on one
    line of stderr and gives 2; :class:`SitsrInterrupted` prints ``PROG: MESSAGE`` and gives 130.
    Any other exception (a programming error) propagates with its traceback.
    """
    try:
        run()
    except SitsrInputError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except SitsrInterrupted as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 130
    return 0
