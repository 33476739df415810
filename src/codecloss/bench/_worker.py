"""Subprocess entry point: measure one network's cells, one JSON record per line on stdout.

Reads a job (network, cells, reps, warmup, seed, threads, peaks) as JSON from stdin; used by
:func:`codecloss.bench.runner.run` so that every network runs in a fresh process.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import torch

from codecloss.bench.runner import _RECORD_PREFIX, Cell, run_cells


def main() -> int:
    """Run the job on stdin and print its records."""
    job = json.load(sys.stdin)
    torch.set_num_threads(int(job["threads"]))
    cells = [Cell(**cell) for cell in job["cells"]]
    for record in run_cells(job["network"], cells, job["reps"], job["warmup"], job["seed"], job["peaks"]):
        sys.stdout.write(_RECORD_PREFIX + json.dumps(dataclasses.asdict(record)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
