"""Project exceptions.

User errors (bad files, bad arguments) raise :class:`SitsrInputError` or a
subclass; the CLI prints their one-line message and exits with status 2.
A run stopped by SIGINT after saving its state raises :class:`SitsrInterrupted`;
the CLI prints its message and exits with status 130.
Programming errors keep their ordinary traceback.
"""

from __future__ import annotations


class SitsrInputError(ValueError):
    """A user-facing input error: names the file/argument and the cause."""


class SitsrDataError(SitsrInputError):
    """A data file has the wrong content (missing variable, grid, units...)."""


class SitsrConfigError(SitsrInputError):
    """An inconsistent configuration, checkpoint or command-line option."""


class SitsrInterrupted(KeyboardInterrupt):
    """A long run stopped on SIGINT after saving its state; the message says how to continue."""
