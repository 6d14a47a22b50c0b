"""Errors a user can fix, and the thin wrapper that turns them into a message and an exit code."""

from __future__ import annotations

import errno
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


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class OutOfSpace(InputError):
    """A full disk: the output being written, the space it needed (or had written when it ran out), what is free."""

    def __init__(self, path: str | Path, needed: int, free: int, *, known: bool = True):
        self.needed, self.free = needed, free
        amount = (f"it needs about {human_bytes(needed)}" if known
                  else f"it had written {human_bytes(needed)} when the disk filled, and needs more")
        super().__init__(path, f"no space left on its filesystem: {amount}, {human_bytes(free)} free",
                         fix="free space there, or move the directory to a larger disk, and run again")


# What libraries raise for a full disk when it is not an OSError: safetensors' Rust writer, for one.
_OUT_OF_SPACE_TEXTS = ("No space left on device", "os error 28", "StorageFull", "Disk quota exceeded")


def _chain(error: BaseException | None) -> list[BaseException]:
    """An exception and those it was raised from or while handling, as a traceback would print them."""
    chain: list[BaseException] = []
    while error is not None and all(error is not e for e in chain):
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return chain


def out_of_space_error(error: BaseException | None) -> BaseException | None:
    """The exception in the chain that is the disk filling up, or None."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            return link
        if any(text in str(link) for text in _OUT_OF_SPACE_TEXTS):
            return link
    return None


def is_out_of_space(error: BaseException | None) -> bool:
    """Whether an exception, or one it was raised from, is the disk filling up."""
    return out_of_space_error(error) is not None


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): log to stderr, and exit non-zero with one clear line on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main()
    except InputError as error:
        logger.error("%s", error)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as error:
        full = out_of_space_error(error)
        if full is None:
            raise
        logger.debug("the disk filled up", exc_info=error)
        where = getattr(full, "filename", None) or "an output"
        logger.error("%s: no space left on its filesystem (%s); free space there and run again", where, full)
        sys.exit(EXIT_BAD_INPUT)
