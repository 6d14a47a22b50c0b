"""Errors a user can fix, and the thin wrapper that turns them into a message and an exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad input: the message names the file, the line where there is one, the problem and the fix."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, fix: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): log to stderr, and exit non-zero with one clear line on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main()
    except InputError as error:
        logger.error("%s", error)
        sys.exit(EXIT_BAD_INPUT)
