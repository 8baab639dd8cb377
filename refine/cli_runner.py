"""What every silr CLI (``python -m refine``, ``reward``, ``align``) does around its command: logging, exit codes
and errors.

Exit codes: 0 on success; 1 after an error silr reports on purpose (a ``ValueError``, :class:`refine.errors.SilrError`
included, or an ``OSError``: bad input, missing or damaged files), printed as one line ``error: <message>`` on stderr
(``SILR_DEBUG=1`` re-raises it with its traceback instead); 2 for a command line that names no command or config,
or a command that refuses a multi-process launch. Any other exception (a ``KeyError`` or ``TypeError`` from a bug)
keeps its traceback.

Imported before the arguments are parsed, so it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from refine.errors import one_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEBUG_ENV = "SILR_DEBUG"  # set (to anything) to get the traceback of an error the CLIs would print as one line
# Libraries whose INFO lines drown silr's own progress lines.
NOISY_LOGGERS = ("httpx", "urllib3", "datasets", "filelock", "fsspec", "DeepSpeed")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """Print the usage and ``error: message`` to stderr; returns the exit code for a bad command line."""
    parser.print_usage(sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_cli(work: Callable[[], str | None], *, main_process: bool = True, log_level: int | None = None) -> int:
    """Set up logging, run ``work`` and print what it returns; an error silr raises on purpose becomes one line.

    Args:
        work: The command; returns the text to print on success (None: nothing).
        main_process: Whether this process prints that text: under a multi-process launch only the main one does.
        log_level: Level of silr's log; None: INFO on the main process, WARNING on the others.

    Returns:
        The exit code: ``EXIT_OK``, or ``EXIT_ERROR`` after a ``ValueError`` or ``OSError`` (see the module docstring).
    """
    setup_logging(log_level if log_level is not None else logging.INFO if main_process else logging.WARNING)
    try:
        output = work()
    except (ValueError, OSError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    if output is not None and main_process:
        print(output)
    return EXIT_OK
