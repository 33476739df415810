"""The CPU benchmark behind docs/benchmarks.md: six sweeps with codecloss.bench, one JSON each.

Run from the repository root (takes about 25 minutes on a 2-core CPU; keep the machine idle)::

    python benchmarks/cpu_suite.py --out benchmarks/results

Writes OUT/{reference,reference-malloc-keep,table,sweep,variants,compile}.json and .txt, and OUT/benchmarks_cpu.png
(time vs resolution).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from codecloss import DEFAULT_BACKBONE, bench

CODEC = "bmshj2018-hyperprior-mse-q3"

# The target cell (fwd+bwd, batch 4 x 256x256, fp32, NCHW inputs): codec against VGG16-LPIPS
# and plain CompressAI, 5 rounds with the networks alternating, so machine drift hits all alike.
REFERENCE = bench.BenchConfig(
    networks=(CODEC, "vgg16-lpips", "compressai-plain"),
    modes=("forward_backward",),
    batches=(4,),
    resolutions=(256,),
    rounds=5,
)

SUITES = {
    "reference": REFERENCE,
    # The same with glibc keeping freed memory in the heap (``--malloc-keep``), for every network alike:
    # no page faults on the 32 MiB feature maps that the default allocator maps afresh on every step.
    "reference-malloc-keep": dataclasses.replace(REFERENCE, malloc_keep=True),
    # Every network, every mode, the same setting, one round.
    "table": bench.BenchConfig(batches=(4,), resolutions=(256,), warmup=0),
    # Time vs resolution for the plot: forward+backward, batch 1.
    "sweep": bench.BenchConfig(
        networks=(DEFAULT_BACKBONE, CODEC, "vgg16-lpips", "alexnet-lpips"),
        modes=("forward_backward",),
        batches=(1,),
        resolutions=(64, 128, 256, 512, 1024),
        warmup=0,
    ),
    # Settings that change speed: channels_last, bf16 autocast, torch.compile.
    "variants": bench.BenchConfig(
        networks=(CODEC, "vgg16-lpips", "alexnet-lpips"),
        modes=("forward_backward",),
        dtypes=("float32", "bfloat16"),
        channels_last=(False, True),
        batches=(4,),
        resolutions=(256,),
        warmup=0,
    ),
    "compile": bench.BenchConfig(
        networks=(CODEC, "vgg16-lpips"),
        modes=("forward_backward",),
        channels_last=(True,),
        compile=(True,),
        batches=(4,),
        resolutions=(256,),
        warmup=1,
    ),
}


def main() -> None:
    """Run the chosen suites and write their results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--suites", nargs="+", choices=tuple(SUITES), default=list(SUITES))
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default OUT/benchmarks_cpu.png)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.suites:
        result = bench.run(SUITES[name])
        (args.out / f"{name}.json").write_text(bench.to_json(result))
        table = bench.format_table(result)
        (args.out / f"{name}.txt").write_text(table + "\n")
        print(f"== {name}\n{table}\n", flush=True)
        if name == "sweep":
            bench.plot(result, args.plot or args.out / "benchmarks_cpu.png")


if __name__ == "__main__":
    main()
