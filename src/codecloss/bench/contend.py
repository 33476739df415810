"""Busy competitor processes, to measure under CPU contention (``codecloss bench --contend N``).

Each competitor is a pure-Python busy loop in its own process, like another job on a shared machine.
It stops by itself after a time bound or as soon as the process that started it is gone, and
:func:`competitors` kills it on exit, also on error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import Iterator

__all__ = ["BUSY_LOOP", "competitors"]

logger = logging.getLogger(__name__)

#: The competitor's program: spin until the deadline (argv[2] seconds) or until its parent (argv[1]) is gone.
BUSY_LOOP = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100000):
        pass
"""


@contextlib.contextmanager
def competitors(count: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
    """Run ``count`` busy-loop processes while the block runs; each stops by itself after ``seconds``.

    Args:
        count: number of competitors (0: none).
        seconds: time bound of each competitor, should the block outlive it or this process die.

    Yields:
        The competitor processes.
    """
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen(
                [sys.executable, "-c", BUSY_LOOP, str(os.getpid()), str(seconds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        if processes:
            logger.info("started %d busy competitor process(es), bounded to %.0f s", count, seconds)
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
