"""The launcher's environment: how many processes ``accelerate launch`` (or ``torchrun``) started, and which one this is.

Read from the environment the launcher sets (``WORLD_SIZE``, ``RANK``), before any process group exists and without
importing torch or Accelerate, so that a plain run and the light commands never load them.
"""

from __future__ import annotations

import os
import sys


def launched_processes() -> int:
    """How many processes ``accelerate launch`` (or ``torchrun``) started for this run (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_launched_worker() -> bool:
    """Whether this process is one that a launcher started beside the main one (rank > 0 of a launched run)."""
    return launched_processes() > 1 and int(os.environ.get("RANK", "0")) > 0


def end_launched_worker() -> None:
    """End a launched run's non-main process once its command is done, without the interpreter's teardown.

    Such a process writes nothing (the main one writes every file) and has left the process group
    (``DataParallel.close``), yet its teardown was seen to abort under heavy CPU load ("terminate called without an
    active exception", SIGABRT, in gloo's C++ objects; suspected: ones that unreachable reference cycles around the
    DDP-wrapped policy keep until the teardown), after the run had finished, and that fails the whole launch. So it
    flushes its output and leaves with ``os._exit(0)``; a plain run and the main process return as usual."""
    if is_launched_worker():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
