"""Measurement primitives: step timing, peak memory, FLOPs, matmul peak and machine facts."""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import gc
import importlib.metadata
import logging
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from codecloss._dtype import fast_bf16_available

__all__ = [
    "MEMORY_METHODS",
    "count_flops",
    "machine_info",
    "matmul_peak_gflops",
    "minor_page_faults",
    "peak_memory_mb",
    "summarize_times",
    "time_steps",
]

logger = logging.getLogger(__name__)

Step = Callable[[], object]

#: What "peak memory" means per device type (also written into every result).
MEMORY_METHODS = {
    "cpu": (
        "peak resident set size (RSS) above the RSS just before one step, after warm-up: "
        "VmHWM from /proc/self/status after resetting it via /proc/self/clear_refs, with free heap "
        "returned to the OS (glibc malloc_trim) first; model and inputs are allocated before, so "
        "this is the step's working memory (activations, saved tensors, gradients, workspaces)"
    ),
    "cuda": "torch.cuda.max_memory_allocated() minus memory_allocated() before one step, after warm-up",
}

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, device: torch.device, reps: int) -> list[float]:
    """Wall time of ``reps`` calls of ``step`` in milliseconds.

    CPU: ``time.perf_counter`` around each call. CUDA: CUDA events around each call,
    read after ``torch.cuda.synchronize``.
    """
    if device.type == "cuda":
        pairs = []
        torch.cuda.synchronize(device)
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in pairs]
    times = []
    for _ in range(reps):
        begin = time.perf_counter()
        step()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (``getrusage``), or ``None`` where unavailable (Windows).

    On Linux a fresh tensor's pages fault on first touch: one fault per 4 KiB page touched, unless
    the allocator reuses memory it already holds.
    """
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def summarize_times(times_ms: list[float]) -> tuple[float, float]:
    """Median and inter-quartile range (inclusive quartiles; 0 for fewer than 2 runs)."""
    median = statistics.median(times_ms)
    if len(times_ms) < 2:
        return median, 0.0
    q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    return median, q3 - q1


def _rss_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in {_PROC_STATUS}")
    return int(match.group(1))


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name is not None:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def cpu_peak_measurable() -> bool:
    """Whether this OS lets :func:`peak_memory_mb` reset and read the RSS high-water mark (Linux)."""
    return _PROC_STATUS.is_file() and _CLEAR_REFS.exists() and os.access(_CLEAR_REFS, os.W_OK)


def peak_memory_mb(step: Step, device: torch.device) -> float | None:
    """Peak memory of one call of ``step`` in MiB, as described in :data:`MEMORY_METHODS`.

    Returns ``None`` on a CPU where the RSS high-water mark cannot be reset (non-Linux).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if not cpu_peak_measurable():
        return None
    _malloc_trim()
    base = _rss_kib("VmRSS")
    _CLEAR_REFS.write_text("5")  # reset VmHWM to the current RSS
    step()
    return (_rss_kib("VmHWM") - base) / 1024


def count_flops(step: Step) -> int:
    """FLOPs of one call of ``step`` counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Counts matmuls and convolutions (forward and backward), the operations that dominate;
    elementwise work is not counted.
    """
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int | None = None, reps: int = 5) -> dict[str, float]:
    """Achieved GFLOP/s of a large square matmul: the practical peak for this device and dtype.

    Args:
        device: where to run.
        dtype: ``torch.float32`` or ``torch.bfloat16``.
        size: matrix size; default 2048 on CPU, 8192 on CUDA.
        reps: timed runs after one warm-up; the median is used.

    Returns:
        ``{"gflops": ..., "size": ...}``.
    """
    size = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=generator).to(device, dtype)
    b = torch.rand(size, size, generator=generator).to(device, dtype)
    a @ b
    median, _ = summarize_times(time_steps(lambda: a @ b, device, reps))
    return {"gflops": 2 * size**3 / (median * 1e-3) / 1e9, "size": size}


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, object]:
    """Facts about this machine and software stack, written into every result."""
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "compressai": _version("compressai"),
        "piq": _version("piq"),
        "lpips": _version("lpips"),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fast_bf16_cpu": fast_bf16_available("cpu"),
        "cuda_available": cuda,
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_version": torch.version.cuda if cuda else None,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
