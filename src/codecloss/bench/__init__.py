"""Benchmark harness: speed, memory and FLOPs of codec losses against VGG / AlexNet / piq / lpips.

Used by ``codecloss bench`` and the scripts in ``benchmarks/``. All networks are randomly
initialised; nothing is downloaded.

Example:
    >>> from codecloss import bench
    >>> cfg = bench.BenchConfig(networks=("bmshj2018-hyperprior-mse-q3",), modes=("forward_backward",),
    ...                         batches=(4,), resolutions=(256,))  # doctest: +SKIP
    >>> result = bench.run(cfg)  # doctest: +SKIP
    >>> print(bench.format_table(result))  # doctest: +SKIP
"""

from codecloss.bench.measure import MEMORY_METHODS, machine_info, matmul_peak_gflops
from codecloss.bench.networks import (
    BASELINE,
    REFERENCE_NETWORKS,
    BenchNetwork,
    NetworkUnavailable,
    build_network,
    default_networks,
    list_networks,
)
from codecloss.bench.report import format_table, plot, to_csv, to_json
from codecloss.bench.runner import DTYPES, MODES, BenchConfig, BenchRecord, BenchResult, attach_speedups, run

__all__ = [
    "BASELINE",
    "DTYPES",
    "MEMORY_METHODS",
    "MODES",
    "REFERENCE_NETWORKS",
    "BenchConfig",
    "BenchNetwork",
    "BenchRecord",
    "BenchResult",
    "NetworkUnavailable",
    "attach_speedups",
    "build_network",
    "default_networks",
    "format_table",
    "list_networks",
    "machine_info",
    "matmul_peak_gflops",
    "plot",
    "run",
    "to_csv",
    "to_json",
]
