"""``codecloss bench``: speed, memory and FLOPs of codec losses against VGG16-LPIPS and friends.

Examples::

    codecloss bench                                        # all networks, batch 4 x 256x256, CPU
    codecloss bench --networks bmshj2018-hyperprior-mse-q3 vgg16-lpips --modes forward_backward
    codecloss bench --modes forward_backward --batch 1 --resolution 64 128 256 512 1024 --plot time.png
    codecloss bench --device cpu cuda --dtype float32 bfloat16 --channels-last both --json result.json
    codecloss bench --networks codecloss-wide-mse vgg16-lpips --modes forward_backward --contend 1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from codecloss._progress import add_progress_argument

logger = logging.getLogger(__name__)

_BOTH = {"off": (False,), "on": (True,), "both": (False, True)}


HELP = "benchmark codec losses against VGG/AlexNet/piq/lpips (time, memory, FLOPs)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    from codecloss.bench import BASELINE, MODES, default_networks

    p = subparsers.add_parser(
        "bench",
        help=HELP,
        description=(
            "Measure forward, forward+backward (gradient w.r.t. the input) and content+style (Gram) loss "
            "steps of codec backbones and reference networks, with random weights (no download). Reports "
            f"median and IQR time, peak memory, FLOPs, GFLOP/s against a matmul peak, and speed-ups over {BASELINE} "
            "measured in the same run. Each network runs in its own subprocess."
        ),
    )
    p.add_argument("--networks", nargs="+", metavar="NAME", default=default_networks(),
                   help=f"codec backbone ids and/or reference networks (default: {' '.join(default_networks())})")
    p.add_argument("--list-networks", action="store_true", help="list the accepted network names and exit")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="what one timed step does")
    p.add_argument("--device", nargs="+", choices=("cpu", "cuda"), default=["cpu"], dest="devices",
                   help="devices (CUDA cells are skipped when no GPU is available)")
    p.add_argument("--dtype", nargs="+", choices=("float32", "bfloat16"), default=["float32"], dest="dtypes",
                   help="float32, or bfloat16 autocast")
    p.add_argument("--channels-last", choices=tuple(_BOTH), default="off",
                   help="NHWC model and inputs (codec backbones run NHWC on CPU either way)")
    p.add_argument("--compile", choices=tuple(_BOTH), default="off", help="wrap the loss in torch.compile")
    p.add_argument("--batch", nargs="+", type=int, default=[4], dest="batches", help="batch sizes (default 4)")
    p.add_argument("--resolution", nargs="+", type=int, default=[256], dest="resolutions",
                   help="square image sizes, e.g. 64 128 256 512 1024 (default 256)")
    p.add_argument("--reps", type=int, default=5, help="timed runs per cell and round (default 5)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the sweep this many times, networks alternating, and pool each cell's runs "
                        "(steadier ratios on a shared machine; default 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every network in this process instead of one subprocess each")
    p.add_argument("--malloc-keep", action="store_true",
                   help="glibc: keep freed memory in the heap in the worker processes (fewer page faults)")
    p.add_argument("--contend", type=int, default=0, metavar="N",
                   help="run N busy competitor processes during the measurements (CPU contention; default 0)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the full result as JSON to PATH (no PATH or '-': print it instead of the table)")
    p.add_argument("--csv", metavar="PATH", help="write one CSV row per measurement to PATH ('-': stdout)")
    p.add_argument("--plot", metavar="PATH", help="save a PNG of time vs resolution, one line per network")
    add_progress_argument(p)
    p.set_defaults(func=run)


def _write(text: str, path: str) -> None:
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        logger.info("wrote %s", path)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; exit code 1 when any cell failed with an error."""
    from codecloss import bench

    if args.list_networks:
        print("\n".join(bench.list_networks()))
        return 0
    config = bench.BenchConfig(
        networks=tuple(args.networks),
        modes=tuple(args.modes),
        devices=tuple(args.devices),
        dtypes=tuple(args.dtypes),
        channels_last=_BOTH[args.channels_last],
        compile=_BOTH[args.compile],
        batches=tuple(args.batches),
        resolutions=tuple(args.resolutions),
        reps=args.reps,
        rounds=args.rounds,
        warmup=args.warmup,
        threads=args.threads,
        isolate=args.isolate,
        malloc_keep=args.malloc_keep,
        contend=args.contend,
    )
    if config.reps < 5:
        logger.warning("reps=%d: fewer than 5 timed runs, median and IQR are only indicative", config.reps)
    result = bench.run(config, progress=args.progress)
    if args.json:
        _write(bench.to_json(result), args.json)
    if args.csv:
        _write(bench.to_csv(result), args.csv)
    if args.plot:
        bench.plot(result, args.plot)
        logger.info("wrote %s", args.plot)
    if args.json != "-" and args.csv != "-":
        print(bench.format_table(result))
    errors = [r for r in result.records if r.status.startswith("error")]
    for record in errors:
        print(f"codecloss bench: {record.network} {record.mode}: {record.status}", file=sys.stderr)
    return 1 if errors else 0
