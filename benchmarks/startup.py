"""Start-up cost of codecloss: wall time and peak RSS of short commands, each in a fresh process.

Runs, ``--repeats`` times each and interleaved (so that a burst of load from another process on a
shared machine hits every case alike):

- ``help``: ``codecloss --help``;
- ``metric-help``: ``codecloss metric --help``;
- ``import``: ``python -c "import codecloss"``;
- ``metric``: ``codecloss metric A B`` on two Kodak images.

and reports per case the median and min/max wall time and the median peak RSS (``ru_maxrss`` of the
child, from ``os.wait4``). The driver itself imports neither torch nor codecloss. With ``--pythonpath DIR``,
every case also runs with ``PYTHONPATH=DIR`` (e.g. an older tree exported with ``git archive``), interleaved
with the installed tree, so that both see the same load.

Usage::

    python benchmarks/startup.py --out benchmarks/results/startup.json
    python benchmarks/startup.py --repeats 3 --cases help import
    git archive HEAD src | tar -x -C /tmp/head && python benchmarks/startup.py --pythonpath /tmp/head/src
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "kodak"
CLI = [sys.executable, "-m", "codecloss"]
#: The pair is ``kodim01.png`` and ``kodim02.png``: the same size, 768x512.
CASES: dict[str, list[str]] = {
    "help": [*CLI, "--help"],
    "metric-help": [*CLI, "metric", "--help"],
    "import": [sys.executable, "-c", "import codecloss"],
    "metric": [*CLI, "metric", str(KODAK / "kodim01.png"), str(KODAK / "kodim02.png")],
}

logger = logging.getLogger("startup")


def run_once(command: list[str], pythonpath: str | None) -> dict[str, float]:
    """Run ``command`` once (under ``PYTHONPATH=pythonpath`` if given); wall time (s), peak RSS (MB). Raises if it fails."""
    env = os.environ if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}: {stderr.strip()[-500:]}")
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def summarise(runs: list[dict[str, float]]) -> dict[str, float | list[float]]:
    """Median, min and max wall time, median peak RSS and every wall time of one case."""
    seconds = [run["seconds"] for run in runs]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "median_rss_mb": round(statistics.median(run["rss_mb"] for run in runs), 1),
        "runs_s": [round(value, 3) for value in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/startup.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--pythonpath", metavar="DIR", help="also run every case with PYTHONPATH=DIR, interleaved")
    parser.add_argument("--label", default="", help="free text stored with the results (e.g. 'before')")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trees = {"installed": None} | ({f"PYTHONPATH={args.pythonpath}": args.pythonpath} if args.pythonpath else {})
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(tree, name): [] for tree in trees for name in args.cases}
    for repeat in range(args.repeats):
        for (tree, name), done in runs.items():
            done.append(run_once(CASES[name], trees[tree]))
            logger.info("%d %s %-6s %.2f s %.0f MB", repeat, tree, name, done[-1]["seconds"], done[-1]["rss_mb"])
    results = {tree: {name: {"command": " ".join(CASES[name]), **summarise(runs[tree, name])} for name in args.cases}
               for tree in trees}
    for tree, cases in results.items():
        for name, result in cases.items():
            logger.info("%s %-6s median %.2f s, peak RSS %.0f MB", tree, name, result["median_s"], result["median_rss_mb"])
    report = {
        "label": args.label,
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other processes",
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trees": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
