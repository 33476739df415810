"""Peak memory and time of ``codecloss metric`` on large image pairs, untiled and tiled.

Makes a reference and a distorted PNG per size (a Kodak image upscaled bicubically, plus uniform
noise of +-8 levels on the distorted one), then runs ``python -m codecloss metric REF OUT`` in a
child process per setting and records its wall time, its peak RSS (``ru_maxrss`` of the child) and
the distance it printed. A child whose RSS passes ``--rss-cap`` (sampled every 50 ms) is killed and
reported as such, so that an untiled 8K run cannot take the machine down.

Usage::

    python benchmarks/tiled_metric.py --out benchmarks/results/tiled_metric.json
    python benchmarks/tiled_metric.py --sizes 4096 --tiles 512 1024 --data /tmp/tiled_bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "kodak" / "kodim23.png"


def make_pair(source: Path, size: int, folder: Path) -> tuple[Path, Path]:
    """``ref_{size}.png`` and ``out_{size}.png`` in ``folder`` (made once, reused afterwards)."""
    ref, out = folder / f"ref_{size}.png", folder / f"out_{size}.png"
    if not (ref.is_file() and out.is_file()):
        with Image.open(source) as image:
            big = image.convert("RGB").resize((size, size), Image.BICUBIC)
        big.save(ref, compress_level=1)
        noisy = np.asarray(big).astype(np.int16)
        noisy += np.random.default_rng(size).integers(-8, 9, noisy.shape, dtype=np.int16)
        del big
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, compress_level=1)
    return ref, out


def run_metric(ref: Path, out: Path, options: list[str], rss_cap_gb: float) -> dict:
    """Run ``codecloss metric`` once; wall time, peak RSS, the distance or what went wrong."""
    command = [sys.executable, "-m", "codecloss", "metric", str(ref), str(out), "--json", *options]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, capped, sampled_peak = psutil.Process(child.pid), False, 0
    while True:  # reap with wait4 (not Popen.poll, which would take the child's resource usage with it)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            rss = watched.memory_info().rss
        except psutil.NoSuchProcess:
            rss = 0
        sampled_peak = max(sampled_peak, rss)
        if rss > rss_cap_gb * 2**30 and not capped:
            child.kill()
            capped = True
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stdout, stderr = child.stdout.read(), child.stderr.read()
    record = {"command": " ".join(["codecloss", *command[3:]]), "seconds": round(seconds, 2),
              "peak_rss_gb": round(max(usage.ru_maxrss * 1024, sampled_peak) / 2**30, 3)}
    if capped:
        record["outcome"] = f"killed when its RSS passed the {rss_cap_gb:g} GB cap"
    elif os.waitstatus_to_exitcode(status) != 0:
        record["outcome"] = f"exit code {os.waitstatus_to_exitcode(status)}: {stderr.strip()[-300:]}"
    else:
        record["outcome"] = "ok"
        record["distance"] = json.loads(stdout)["pairs"][0]["distance"]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], help="image sides (default 4096 8192)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[1024], help="tile sides to run (default 1024)")
    parser.add_argument("--no-untiled", dest="untiled", action="store_false", help="skip the untiled runs")
    parser.add_argument("--rss-cap", type=float, default=14.0, help="kill a run above this RSS in GB (default 14)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="image to upscale (default kodim23)")
    parser.add_argument("--data", type=Path, help="folder for the generated PNGs (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    folder = args.data or Path(tempfile.mkdtemp(prefix="codecloss-tiled-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                           "load_average_at_start": os.getloadavg()},
               "runs": []}
    for size in args.sizes:
        ref, out = make_pair(args.source, size, folder)
        settings = ([("untiled", ["--max-pixels", str(size * size)])] if args.untiled else []) + [
            (f"tile {tile}", ["--max-pixels", "0", "--tile", str(tile)]) for tile in args.tiles
        ]
        for label, options in settings:
            record = {"size": size, "setting": label, **run_metric(ref, out, options, args.rss_cap)}
            results["runs"].append(record)
            print(json.dumps(record), flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
