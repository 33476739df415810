"""Subprocess entry point: measure one network's cells, one JSON record per line on stdout.

Reads a job (network, cells, reps, warmup, seed, threads, peaks, parent) as JSON from stdin; used by
:func:`codecloss.bench.runner.run` so that every network runs in a fresh process. It stops as soon as the
process that started it is gone, like the ``--contend`` competitors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time

import torch

from codecloss.bench.runner import _RECORD_PREFIX, Cell, run_cells


def _exit_when_orphaned(parent: int, poll_seconds: float = 1.0) -> None:
    """End this process once ``parent``, the pid of the process that started it, is no longer its parent
    (e.g. ``codecloss bench`` killed by a signal, possibly before this process got here)."""
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


def main() -> int:
    """Run the job on stdin and print its records."""
    job = json.load(sys.stdin)
    threading.Thread(target=_exit_when_orphaned, args=(int(job["parent"]),), daemon=True).start()
    torch.set_num_threads(int(job["threads"]))
    cells = [Cell(**cell) for cell in job["cells"]]
    for record in run_cells(job["network"], cells, job["reps"], job["warmup"], job["seed"], job["peaks"]):
        sys.stdout.write(_RECORD_PREFIX + json.dumps(dataclasses.asdict(record)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
